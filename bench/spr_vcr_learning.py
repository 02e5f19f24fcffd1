"""CPU learning check of SPR and VCR on an Atari game that learns early (Boxing by default), several seeds, with
95% bootstrap CIs over seeds: the final evaluation return (SPR protocol, raw game score), the human-normalised
score, and the C51 TD loss of the first and last logged windows.

Usage: ``python bench/spr_vcr_learning.py --game boxing --seeds 0,1,2 --steps 1200 --warmup 400 --batch 8
[--eval-episodes 3] [--out DIR]``; each run is ``rlkit train algo=<spr|vcr> env=atari100k-<game>`` with one
update per agent step after the random warm-up, one thread.  Prints one line per run and a summary table, and
writes ``summary.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rlkit import trainer
from rlkit.config import compose
from rlkit.evaluation.statistics import mean, stratified_bootstrap_ci
from rlkit.logger import read_metrics


def run_one(algo: str, game: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    batch_key = "algo.batch_size" if algo == "spr" else "algo.discrete.batch_size"
    run_dir = out / f"{algo}-{game}-s{seed}"
    cfg = compose([f"algo={algo}", f"env=atari100k-{game}", f"seed={seed}", f"train.steps={args.steps}",
                   f"train.warmup_steps={args.warmup}", "train.updates_per_step=1.0", f"{batch_key}={args.batch}",
                   f"eval.episodes={args.eval_episodes}", "eval.num_envs=1", "logging.progress=false",
                   "logging.tensorboard=false", "num_threads=1", "checkpoint.interval=0",
                   f"train.log_interval={args.log_interval}", f"run_dir={run_dir}"])
    start = time.perf_counter()
    summary = trainer.run(cfg)
    records = read_metrics(run_dir / "metrics.jsonl")
    td = [r["train/rl_loss"] for r in records if "train/rl_loss" in r]
    return {"algo": algo, "game": game, "seed": seed, "final_return": summary["final_return"],
            "normalized": summary["final_normalized_score"], "td_first": td[0], "td_last": td[-1],
            "seconds": time.perf_counter() - start}


def ci(values: list[float]) -> str:
    point, low, high = stratified_bootstrap_ci(np.asarray(values, dtype=np.float64), statistic=mean, reps=5000)
    return f"{point:8.3f} [{low:8.3f}, {high:8.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--game", default="boxing")
    parser.add_argument("--algos", default="spr,vcr")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--log-interval", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/spr_vcr_learning"))
    args = parser.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for algo in args.algos.split(","):
            rows.append(run_one(algo, args.game, seed, args, args.out))
            print(json.dumps(rows[-1]), flush=True)
    print(f"{args.game}, {args.steps} steps ({args.warmup} random), batch {args.batch}: mean [95% bootstrap CI]")
    for algo in args.algos.split(","):
        mine = [r for r in rows if r["algo"] == algo]
        print(f"{algo:4s} final return {ci([r['final_return'] for r in mine])}   "
              f"normalised {ci([r['normalized'] for r in mine])}   "
              f"TD loss first {ci([r['td_first'] for r in mine])} last {ci([r['td_last'] for r in mine])}")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "summary.json.tmp"
    tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}, indent=1))
    tmp.replace(args.out / "summary.json")


if __name__ == "__main__":
    main()
