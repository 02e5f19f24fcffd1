"""SPR / VCR costs, measured in one run: seconds per update of SPR vs VCR-discrete (Atari 100k, paper size: batch
32, K = 5, 84x84x4) and of DrQ (VCR with weight 0) vs VCR-continuous (DMC pixels, paper size: batch 512, hidden
1024, K = 5, N = 10), each ratio against its base measured here; seconds per environment step of the SPR
Atari protocol and of a DMC pixel task (EGL rendering); and what one 100k-step Atari run / 500k-frame DMC run
costs on this machine (updates per env step: 2 on Atari, 1 on DMC). Transformer rows: the same VCR updates with
``algo.transition=transformer`` (``configs/algo/vcr.yaml``'s transformer block; softmax and gla attention), each
against the conv (Atari) or MLP (DMC) transition model.

``--learn``: VCR with the conv transition vs the transformer transition (softmax and one linear kind) trained
end to end at CPU size on one Atari 100k game (SPR protocol), several seeds at the same budget; per variant the
final evaluation score and the seconds per update (timed inside the runs), mean with a 95% bootstrap CI over
seeds. Each finished run is appended to ``--out`` (JSON lines), so an interrupted sweep keeps what it measured;
``--report`` prints the table from that file.

Usage: ``python bench/spr_vcr.py [--updates 5] [--env-steps 200] [--threads 1] [--device cpu|cuda] [--size paper|cpu]``;
``python bench/spr_vcr.py --learn --game boxing --seeds 0 1 2 --steps 500 --warmup 200 --episodes 2 --out F``;
``python bench/spr_vcr.py --transition-timing 8 32 --updates 3 --rounds 3`` (update time only, interleaved).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlkit import envs
from rlkit.algorithms.world_models.spr import SPR
from rlkit.algorithms.world_models.vcr import VCR, VCRDiscrete
from rlkit.config import compose
from rlkit.evaluation.statistics import mean, stratified_bootstrap_ci

ATARI_OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
DMC_OBS = gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)


def discrete_batch(b: int, k: int, device: str) -> dict:
    obs = torch.randint(0, 256, (b, k + 1, 4, 84, 84), dtype=torch.uint8, device=device)
    return {"obs": obs[:, 0], "window_obs": obs, "window_action": torch.randint(0, 6, (b, k), device=device),
            "window_valid": torch.ones(b, k + 1, device=device), "action": torch.randint(0, 6, (b,), device=device),
            "reward": torch.randn(b, device=device), "discount": torch.full((b,), 0.9, device=device),
            "weights": torch.ones(b, device=device), "next_obs": obs[:, 1]}


def continuous_batch(b: int, k: int, device: str) -> dict:
    obs = torch.randint(0, 256, (b, max(k + 1, 2), 9, 84, 84), dtype=torch.uint8, device=device)
    return {"obs": obs[:, 0], "next_obs": obs[:, 1], "action": torch.rand(b, 6, device=device) * 2 - 1,
            "reward": torch.rand(b, device=device), "terminated": torch.zeros(b, device=device),
            "weights": torch.ones(b, device=device), "window_obs": obs[:, :k + 1],
            "window_action": torch.rand(b, k + 1, 6, device=device) * 2 - 1,
            "window_valid": torch.ones(b, k + 1, device=device)}


def seconds_per_update(algo, batch: dict, updates: int) -> float:
    algo.update(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(updates):
        algo.update(batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / updates


def seconds_per_env_step(name: str, steps: int, **kwargs) -> float:
    env = envs.make(name, **kwargs)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return (time.perf_counter() - start) / steps


def transformer_keys(attention: str) -> dict:
    """``algo.transformer`` of configs/algo/vcr.yaml with ``attention`` (the sizes the defaults give)."""
    return {**compose(["algo=vcr"]).algo.transformer, "attention": attention}


VARIANTS = {"conv": [], "softmax": ["algo.transition=transformer", "algo.transformer.attention=softmax"],
            "gla": ["algo.transition=transformer", "algo.transformer.attention=gla"]}


def learn_run(game: str, variant: str, seed: int, steps: int, warmup: int, batch: int, episodes: int,
              ratio: float = 1.0) -> dict:
    """One VCR run on atari100k-<game> (SPR protocol) with the variant's transition; update seconds timed."""
    from rlkit import trainer

    times: list[float] = []
    original = VCRDiscrete.update

    def timed(self, b):
        start = time.perf_counter()
        out = original(self, b)
        times.append(time.perf_counter() - start)
        return out

    VCRDiscrete.update = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose(["algo=vcr", f"env=atari100k-{game}", f"seed={seed}", f"train.steps={steps}",
                           f"train.warmup_steps={warmup}", f"train.updates_per_step={ratio}",
                           f"algo.discrete.batch_size={batch}", f"eval.episodes={episodes}",
                           f"eval.num_envs={episodes}", "checkpoint.interval=0", "logging.progress=false",
                           "logging.tensorboard=false", "num_threads=1", f"run_dir={tmp}/run", *VARIANTS[variant]])
            summary = trainer.run(cfg)
    finally:
        VCRDiscrete.update = original
    return {"game": game, "variant": variant, "seed": seed, "steps": steps, "warmup": warmup, "ratio": ratio,
            "batch": batch, "episodes": episodes, "score": summary["final_return"], "updates": len(times),
            "update_s": float(np.mean(times)) if times else float("nan")}


def ci(values: list[float]) -> str:
    point, low, high = stratified_bootstrap_ci(np.asarray(values)[:, None], statistic=mean, reps=2000)
    return f"{point:9.3f} [{low:.3f}, {high:.3f}]"


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        print("no finished runs")
        return
    r0 = rows[0]
    print(f"VCR on atari100k-{r0['game']} (SPR protocol), {r0['steps']} steps ({r0['warmup']} random), "
          f"batch {r0['batch']}, {r0['ratio']} update/step, {r0['episodes']} eval episodes; "
          "mean [95% bootstrap CI] over seeds")
    print(f"{'transition':12s} {'seeds':>5s} {'score':>28s} {'s/update':>28s}")
    for variant in VARIANTS:
        vs = [r for r in rows if r["variant"] == variant]
        if vs:
            print(f"{variant:12s} {len(vs):5d} {ci([r['score'] for r in vs]):>28s} "
                  f"{ci([r['update_s'] for r in vs]):>28s}")


def transition_timing(batches: list[int], updates: int, rounds: int, dev: str) -> None:
    """Seconds per VCR-discrete update (K = 5, 84x84x4) with each transition, interleaved in rounds so that the
    machine's load hits every variant alike; median over rounds and the ratio to the conv model."""
    import statistics

    for b in batches:
        def build(v: str, b: int = b) -> VCR:
            switch = {} if v == "conv" else {"transition": "transformer", "transformer": transformer_keys(v)}
            return VCR(observation_space=ATARI_OBS, action_space=gym.spaces.Discrete(6), device=dev,
                       discrete={"batch_size": b}, **switch)

        algos = {v: build(v) for v in VARIANTS}
        batch = discrete_batch(b, 5, dev)
        times: dict[str, list[float]] = {v: [] for v in algos}
        for _ in range(rounds):
            for v, algo in algos.items():
                times[v].append(seconds_per_update(algo, batch, updates))
        base = statistics.median(times["conv"])
        for v, ts in times.items():
            med = statistics.median(ts)
            print(f"VCR-discrete batch {b:3d} transition {v:8s} {med * 1e3:8.1f} ms/update  ratio vs conv "
                  f"{med / base:.2f}x  ({rounds} rounds x {updates} updates)")


def learn(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seed-major: an interrupted sweep has every variant at the same seeds
        for variant in args.variants:
            row = learn_run(args.game, variant, seed, args.steps, args.warmup, args.batch, args.episodes,
                            args.updates_per_step)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    report(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--env-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="paper", choices=("paper", "cpu"))
    parser.add_argument("--learn", action="store_true", help="train conv vs transformer VCR end to end")
    parser.add_argument("--report", action="store_true", help="print the --learn table of --out")
    parser.add_argument("--transition-timing", type=int, nargs="*", metavar="BATCH",
                        help="only the interleaved VCR-discrete update timing of each transition at these batches")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--game", default="boxing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--updates-per-step", type=float, default=1.0)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--out", default="runs/bench_spr_vcr_transition.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.report:
        return report(Path(args.out))
    if args.transition_timing:
        return transition_timing(args.transition_timing, args.updates, args.rounds, args.device)
    if args.learn:
        return learn(args)
    dev = args.device
    cont = {} if args.size == "paper" else {"batch_size": 128, "hidden": [256, 256], "transition_hidden": [256],
                                            "target_augs": 1, "q_augs": 1}
    b_cont = cont.get("batch_size", 512)
    spr = SPR(ATARI_OBS, gym.spaces.Discrete(6), device=dev)
    vcr = VCR(observation_space=ATARI_OBS, action_space=gym.spaces.Discrete(6), device=dev)
    batch = discrete_batch(32, 5, dev)
    t_spr, t_vcr = seconds_per_update(spr, batch, args.updates), seconds_per_update(vcr, batch, args.updates)
    t_tf = {kind: seconds_per_update(VCR(observation_space=ATARI_OBS, action_space=gym.spaces.Discrete(6), device=dev,
                                         transition="transformer", transformer=transformer_keys(kind)),
                                     batch, args.updates) for kind in ("softmax", "gla")}
    box = gym.spaces.Box(-1, 1, (6,), np.float32)
    drq = VCR(observation_space=DMC_OBS, action_space=box, device=dev, vcr_weight=0.0,
              continuous={**cont, "prediction_depth": 0})
    vcrc = VCR(observation_space=DMC_OBS, action_space=box, device=dev, continuous=cont)
    t_drq = seconds_per_update(drq, continuous_batch(b_cont, 0, dev), args.updates)
    t_vcrc = seconds_per_update(vcrc, continuous_batch(b_cont, 5, dev), args.updates)
    vcrc_tf = VCR(observation_space=DMC_OBS, action_space=box, device=dev, continuous=cont, transition="transformer",
                  transformer=transformer_keys("softmax"))
    t_vcrc_tf = seconds_per_update(vcrc_tf, continuous_batch(b_cont, 5, dev), args.updates)
    e_atari = seconds_per_env_step("atari100k-pong", args.env_steps, protocol="spr", training=True)
    e_dmc = seconds_per_env_step("dmc-cheetah_run", args.env_steps // 4, obs_type="pixels", action_repeat=4)
    print(f"device {dev}, {args.threads} thread(s), size {args.size}")
    print(f"SPR update            {t_spr * 1e3:9.1f} ms   (batch 32, K=5)")
    print(f"VCR-discrete update   {t_vcr * 1e3:9.1f} ms   ratio vs SPR {t_vcr / t_spr:.2f}x")
    for kind, t in t_tf.items():
        print(f"  transformer {kind:9s} {t * 1e3:9.1f} ms   ratio vs VCR-discrete (conv) {t / t_vcr:.2f}x")
    print(f"DrQ update            {t_drq * 1e3:9.1f} ms   (batch {b_cont})")
    print(f"VCR-continuous update {t_vcrc * 1e3:9.1f} ms   ratio vs DrQ {t_vcrc / t_drq:.2f}x")
    print(f"  transformer softmax {t_vcrc_tf * 1e3:9.1f} ms   ratio vs VCR-continuous (MLP) {t_vcrc_tf / t_vcrc:.2f}x")
    print(f"env step: atari100k-pong protocol=spr {e_atari * 1e3:.2f} ms; dmc-cheetah_run pixels (repeat 4) "
          f"{e_dmc * 1e3:.1f} ms")
    atari_run = 100_000 * (e_atari + 2 * t_vcr)
    dmc_run = 125_000 * (e_dmc + t_vcrc)
    print(f"per env step: VCR Atari {(e_atari + 2 * t_vcr) * 1e3:.0f} ms -> 100k steps {atari_run / 3600:.1f} h; "
          f"VCR DMC cheetah {(e_dmc + t_vcrc) * 1e3:.0f} ms -> 500k frames {dmc_run / 3600:.1f} h")


if __name__ == "__main__":
    main()
