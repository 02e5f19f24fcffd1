"""STORM update throughput: seconds per world-model update and per imagination + actor-critic update,
with the KV-cached imagination against re-running the token history at every imagined step (same run).

    python bench/storm.py                      # paper model, reduced and paper batch, CPU (1 thread)
    python bench/storm.py --device cuda        # GPU (bf16 autocast, as the paper)
    python bench/storm.py --batches reduced --repeats 5

"paper" batch: world model 16 x 64, imagination 1024 x (8 context + 16 horizon) (STORM's released config);
"reduced": world model 4 x 64, imagination 128 x (8 + 16). The model is the paper's (A = 6, Pong's
minimal action set) in both. Each figure is the median of ``--repeats`` timed calls after one warm-up
call. The last lines estimate a 100k-step run: (100,000 - 1,024) x (world-model + agent update) at the
paper batch (the env steps and acting are not included; they are small next to the updates).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from rlkit.algorithms.world_models.storm import STORM

BATCHES = {"reduced": (4, 128), "paper": (16, 1024)}  # (world-model sequences, imagination contexts)


def timed(fn, repeats: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_batch(algo: STORM, n: int, length: int, device: torch.device, with_targets: bool) -> dict:
    h, w, c = algo.wm_cfg.obs_shape
    batch = {"obs": torch.randint(0, 256, (n, length, h, w, c), dtype=torch.uint8, device=device),
             "action": torch.randint(0, algo.wm_cfg.action_dim, (n, length), device=device)}
    if with_targets:
        batch.update(reward=torch.randn(n, length, device=device),
                     terminated=(torch.rand(n, length, device=device) < 0.01).float(),
                     life_loss=torch.zeros(n, length, device=device))
    return batch


def bench_batch(name: str, device: torch.device, repeats: int) -> float:
    """Print the figures of one batch setting; return seconds per env step (world model + agent update)."""
    wm_b, im_b = BATCHES[name]
    obs_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    algo = STORM(obs_space, gym.spaces.Discrete(6), device=device, wm_batch_size=wm_b, imagine_batch_size=im_b)
    wm_batch = make_batch(algo, wm_b, algo.wm_seq_len, device, True)
    ctx = make_batch(algo, im_b, algo.imagine_context, device, False)
    t_wm = timed(lambda: algo.update_world_model(wm_batch), repeats, device)
    rows = {}
    for cached in (True, False):
        algo.imagine_kv_cache = cached
        t_im = timed(lambda: algo.imagine(ctx["obs"], ctx["action"]), repeats, device)
        t_ag = timed(lambda: algo.update_agent(ctx), repeats, device)
        rows[cached] = (t_im, t_ag)
    (im_c, ag_c), (im_r, ag_r) = rows[True], rows[False]
    print(f"\n[{name} batch] world model {wm_b}x{algo.wm_seq_len}, imagination {im_b}x"
          f"({algo.imagine_context}+{algo.imagine_horizon})")
    print(f"  world-model update                    {t_wm:9.3f} s")
    print(f"  imagination only      cached {im_c:9.3f} s   re-run {im_r:9.3f} s   ratio {im_r / im_c:5.2f}x")
    print(f"  imagination + AC upd. cached {ag_c:9.3f} s   re-run {ag_r:9.3f} s   ratio {ag_r / ag_c:5.2f}x")
    return t_wm + ag_c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", nargs="+", default=list(BATCHES), choices=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    per_step = {name: bench_batch(name, device, args.repeats) for name in args.batches}
    if "paper" in per_step:
        updates = 100_000 - 1_024
        hours = per_step["paper"] * updates / 3600
        print(f"\nestimated 100k-step run at the paper batch on {device}: {per_step['paper']:.2f} s per env step "
              f"x {updates} updates = {hours:.1f} h ({hours / 24:.1f} days); paper: 4.3 h on an RTX 3090")


if __name__ == "__main__":
    main()
