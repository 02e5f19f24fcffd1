"""rlkit's STORM against the STORM authors' code (Zhang et al. 2023), side by side in one run.

The reference is not part of rlkit: fetch it into a folder outside the repository and point ``--ref`` at it

    git clone https://github.com/weipu-zhang/STORM /tmp/storm-ref   # needs einops; yacs/tensorboardX optional
    python bench/storm_reference.py --ref /tmp/storm-ref           # CPU, fp32, 2 threads, 3 rounds
    python bench/storm_reference.py --ref /tmp/storm-ref --device cuda

Both sides: the paper's model (transformer 2 layers x 512, 8 heads; 2x512 actor and critic; A = 6),
**fp32** (the reference's bfloat16 autocast and grad scaler switched off), world-model batch 4 x 64,
imagination 128 contexts x (8 context + 16 imagined steps).  Three figures per side: one world-model update,
one imagination rollout (no gradients), one imagination + actor-critic update.  Every side and round is a
fresh process (rlkit, reference, rlkit, ...); each figure is the median of ``--repeats`` calls after one
warm-up call (CPU time of the process on the CPU, so that other tenants of shared cores do not count; wall
clock on CUDA); the ratio ``reference time / rlkit time`` is taken per round and its median printed.

The reference hard-codes ``device="cuda"``; on CPU this script maps those allocations to the CPU
(``torch.zeros(..., device="cuda")`` inside the reference's modules, ``Tensor.cuda()`` while it runs) and stubs
its logging-only imports (tensorboardX, yacs) when they are not installed, as the fidelity check does
(:func:`bench.fidelity.storm.import_storm_reference`).  The reference's context images
are handed over as float ``(B, T, C, H, W)`` in [0, 1] (what its replay buffer returns); rlkit's as uint8
``(B, T, H, W, C)`` (what rlkit's buffer stores), so rlkit pays the conversion inside the timed call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.fidelity
from bench.fidelity.storm import cuda_calls_to, import_storm_reference, reference_fp32  # noqa: E402

WM_BATCH, WM_LEN, IM_BATCH, IM_CTX, IM_HORIZON, ACTIONS = 4, 64, 128, 8, 16, 6
FIGURES = ("world_model_update", "imagination", "imagination_actor_critic")


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds per call: wall clock on CUDA, CPU time of this process on the CPU (robust to other
    processes on shared cores; with one thread it is the call's compute time)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    clock = time.perf_counter if device.type == "cuda" else time.process_time
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------- rlkit side
def rlkit_side(device: torch.device, repeats: int) -> dict[str, float]:
    import gymnasium as gym
    import numpy as np

    from rlkit.algorithms.world_models.storm import STORM

    algo = STORM(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(ACTIONS), device=device,
                 wm_batch_size=WM_BATCH, imagine_batch_size=IM_BATCH)
    g = torch.Generator(device="cpu").manual_seed(0)
    wm = {"obs": torch.randint(0, 256, (WM_BATCH, WM_LEN, 64, 64, 3), dtype=torch.uint8, generator=g),
          "action": torch.randint(0, ACTIONS, (WM_BATCH, WM_LEN), generator=g),
          "reward": torch.randn(WM_BATCH, WM_LEN, generator=g),
          "terminated": (torch.rand(WM_BATCH, WM_LEN, generator=g) < 0.01).float(),
          "life_loss": torch.zeros(WM_BATCH, WM_LEN)}
    wm = {k: v.to(device) for k, v in wm.items()}
    ctx = {"obs": torch.randint(0, 256, (IM_BATCH, IM_CTX, 64, 64, 3), dtype=torch.uint8, generator=g),
           "action": torch.randint(0, ACTIONS, (IM_BATCH, IM_CTX), generator=g)}
    ctx = {k: v.to(device) for k, v in ctx.items()}
    return {"world_model_update": timed(lambda: algo.update_world_model(wm), repeats, device),
            "imagination": timed(lambda: algo.imagine(ctx["obs"], ctx["action"]), repeats, device),
            "imagination_actor_critic": timed(lambda: algo.update_agent(ctx), repeats, device)}


# ------------------------------------------------------------------------------------------- reference
def reference_side(ref: Path, device: torch.device, repeats: int) -> dict[str, float]:
    import warnings

    warnings.filterwarnings("ignore")
    modules = import_storm_reference(ref, device)
    agents, world_models = modules["agents"], modules["sub_models.world_models"]
    wm = world_models.WorldModel(in_channels=3, action_dim=ACTIONS, transformer_max_length=64,
                                 transformer_hidden_dim=512, transformer_num_layers=2,
                                 transformer_num_heads=8).to(device)
    agent = agents.ActorCriticAgent(feat_dim=32 * 32 + 512, num_layers=2, hidden_dim=512, action_dim=ACTIONS,
                                    gamma=0.985, lambd=0.95, entropy_coef=3e-4).to(device)
    reference_fp32(wm, agent)  # fp32: no bfloat16 autocast, no loss scaling
    g = torch.Generator(device="cpu").manual_seed(0)
    obs = torch.rand(WM_BATCH, WM_LEN, 3, 64, 64, generator=g).to(device)
    action = torch.randint(0, ACTIONS, (WM_BATCH, WM_LEN), generator=g).to(device)
    reward = torch.randn(WM_BATCH, WM_LEN, generator=g).to(device)
    term = (torch.rand(WM_BATCH, WM_LEN, generator=g) < 0.01).float().to(device)
    ctx_obs = torch.rand(IM_BATCH, IM_CTX, 3, 64, 64, generator=g).to(device)
    ctx_action = torch.randint(0, ACTIONS, (IM_BATCH, IM_CTX), generator=g).to(device)

    @torch.no_grad()
    def imagine():
        wm.eval()
        agent.eval()
        return wm.imagine_data(agent, ctx_obs, ctx_action, imagine_batch_size=IM_BATCH,
                               imagine_batch_length=IM_HORIZON, log_video=False, logger=None)

    def imagine_and_update():
        latent, act, rew, done = imagine()
        agent.update(latent=latent, action=act, old_logprob=None, old_value=None, reward=rew, termination=done)

    with cuda_calls_to(device):
        return {"world_model_update": timed(lambda: wm.update(obs, action, reward, term), repeats, device),
                "imagination": timed(imagine, repeats, device),
                "imagination_actor_critic": timed(imagine_and_update, repeats, device)}


# ------------------------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="folder holding the STORM authors' code")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", choices=("rlkit", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ref = Path(args.ref).resolve()

    if args.worker:
        torch.manual_seed(0)
        if args.worker == "rlkit":
            from rlkit.runtime import configure_runtime

            configure_runtime(args.threads)
            out = rlkit_side(device, args.repeats)
        else:
            out = reference_side(ref, device, args.repeats)
        print(json.dumps(out))
        return

    if not (ref / "sub_models" / "world_models.py").exists():
        sys.exit(f"--ref {ref} does not hold the STORM authors' code (sub_models/world_models.py)")
    print(f"device={device} threads={args.threads} torch={torch.__version__} fp32; world model {WM_BATCH}x"
          f"{WM_LEN}, imagination {IM_BATCH}x({IM_CTX}+{IM_HORIZON}); load average {os.getloadavg()}", flush=True)
    times: dict[str, dict[str, list[float]]] = {side: {f: [] for f in FIGURES} for side in ("rlkit", "reference")}
    for r in range(args.rounds):
        for side in ("rlkit", "reference"):
            cmd = [sys.executable, __file__, "--worker", side, "--ref", str(ref), "--device", args.device,
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
            for figure, seconds in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                times[side][figure].append(seconds)
        print(f"round {r + 1} (load {os.getloadavg()[0]:.1f}): " + "; ".join(
            f"{f} rlkit {times['rlkit'][f][-1]:.3f}s ref {times['reference'][f][-1]:.3f}s" for f in FIGURES),
            flush=True)
    summary = {}
    print(f"\n{'figure':26s} {'rlkit s':>9s} {'ref s':>9s} {'ref/rlkit':>10s}  per round")
    for f in FIGURES:
        ratios = [b / a for a, b in zip(times["rlkit"][f], times["reference"][f])]
        summary[f] = {"rlkit_s": statistics.median(times["rlkit"][f]),
                      "reference_s": statistics.median(times["reference"][f]),
                      "speedup": statistics.median(ratios), "per_round": ratios}
        print(f"{f:26s} {summary[f]['rlkit_s']:9.3f} {summary[f]['reference_s']:9.3f} "
              f"{summary[f]['speedup']:9.2f}x  " + " ".join(f"{x:.2f}" for x in ratios))
    print(f"load average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "threads": args.threads, "times": times,
                                               "summary": summary, "load": os.getloadavg(),
                                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                                              indent=1))


if __name__ == "__main__":
    main()
