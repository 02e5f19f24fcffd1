"""FamO2O vs plain offline-to-online fine-tuning at the same budget (FamO2O, Wang et al. 2023, Table 1).

Runs ``algo=famo2o algo.base=<base>`` and ``algo=<base> regime=offline_to_online`` on one dataset for
several seeds (``train.offline_steps`` gradient steps, then ``train.online_steps`` environment steps with
one update each), then prints, per method, the mean normalised score at the end of each phase and the
online gain with 95% stratified-bootstrap confidence intervals over seeds, plus the FamO2O-minus-base
difference of the final scores.  Runs already finished under ``--out`` are reused.

CPU-sized check (minutes per run)::

    python bench/famo2o.py --offline-steps 2500 --online-steps 2500 --seeds 0 1 2

The paper's setting on a GPU (1M + 1M steps, 6 seeds, IQL, D4RL hopper-medium-replay-v2)::

    python bench/famo2o.py --offline-steps 1000000 --online-steps 1000000 --seeds 0 1 2 3 4 5 \\
        --device cuda --eval-interval 100000 --eval-episodes 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rlkit.evaluation import statistics as st


def method_overrides(method: str, base: str) -> list[str]:
    if method == "famo2o":
        return ["algo=famo2o", f"algo.base={base}"]
    return [f"algo={base}", "regime=offline_to_online"]


def run_one(method: str, seed: int, ns: argparse.Namespace) -> dict:
    run_dir = Path(ns.out) / f"{method}-{ns.base}" / f"seed{seed}"
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("finished"):
        return json.loads(summary.read_text())
    resume = ["resume=true"] if (run_dir / "checkpoints").exists() else []
    cmd = ["rlkit", "train", *method_overrides(method, ns.base), f"env={ns.env}", f"seed={seed}",
           f"train.steps={ns.offline_steps}", f"train.online_steps={ns.online_steps}",
           f"eval.interval={ns.eval_interval}", f"eval.episodes={ns.eval_episodes}",
           f"eval.final_episodes={ns.final_episodes}", f"device={ns.device}", f"num_threads={ns.threads}",
           f"checkpoint.interval={ns.checkpoint_interval}", "logging.progress=false", "logging.tensorboard=false",
           f"run_dir={run_dir}", *resume, *ns.extra]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(summary.read_text())


def ci_text(values: np.ndarray, reps: int = 2000) -> str:
    point, lo, hi = st.stratified_bootstrap_ci(values[:, None], statistic=st.mean, reps=reps)
    return f"{point:7.2f} [{lo:7.2f}, {hi:7.2f}]"


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| method | seeds | offline phase | after online | online gain |", "|---|---|---|---|---|"]
    finals = {}
    for method, summaries in results.items():
        off = np.array([s["phases"]["offline"] for s in summaries], dtype=float)
        on = np.array([s["phases"]["online"] for s in summaries], dtype=float)
        finals[method] = on
        lines.append(f"| {method} | {len(summaries)} | {ci_text(off)} | {ci_text(on)} | {ci_text(on - off)} |")
    if len(finals) == 2:
        (a, fa), (b, fb) = finals.items()
        n = min(len(fa), len(fb))
        lines.append(f"\n{a} - {b} after online (paired by seed, {n} seeds): {ci_text(fa[:n] - fb[:n])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="iql", choices=["iql", "awac", "cql"])
    parser.add_argument("--env", default="hopper-medium-replay")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--offline-steps", type=int, default=2500)
    parser.add_argument("--online-steps", type=int, default=2500)
    parser.add_argument("--eval-interval", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--final-episodes", type=int, default=10)
    parser.add_argument("--checkpoint-interval", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["famo2o", "base"], choices=["famo2o", "base"])
    parser.add_argument("--out", default="runs/bench-famo2o")
    parser.add_argument("--report-only", action="store_true", help="only tabulate the finished runs")
    parser.add_argument("extra", nargs="*", help="more overrides for every run (key=value)")
    ns = parser.parse_args()
    results: dict[str, list[dict]] = {}
    for method in ns.methods:
        label = f"{ns.base}+famo2o" if method == "famo2o" else f"{ns.base} -> online"
        summaries = []
        for seed in ns.seeds:
            path = Path(ns.out) / f"{method}-{ns.base}" / f"seed{seed}" / "summary.json"
            if ns.report_only:
                if path.exists() and json.loads(path.read_text()).get("finished"):
                    summaries.append(json.loads(path.read_text()))
                continue
            summaries.append(run_one(method, seed, ns))
        if summaries:
            results[label] = summaries
    source = {s.get("dataset_provenance", {}).get("source") for runs in results.values() for s in runs}
    print(f"\n{ns.env}: {ns.offline_steps} offline + {ns.online_steps} online steps; dataset source: "
          f"{', '.join(sorted(map(str, source)))}; normalised score, mean [95% bootstrap CI over seeds]\n")
    print(table(results))


if __name__ == "__main__":
    main()
