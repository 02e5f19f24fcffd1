"""OAP vs TD3+BC and OAP's ablations at equal gradient steps (OAP, Yang et al. ICML 2023, Table 2 and Sec. 5.3).

Variants (each ``rlkit train`` in its own process; runs finished under ``--out`` are reused):

* ``td3bc``          -- the base;
* ``oap``            -- OAP-Interval with the shipped expert critic: ``--limit`` queries in rounds every ``--period``
                        updates, RankNet pseudo-labels for the other rows;
* ``oap_noranknet``  -- queried rows only (``algo.ranknet=false``);
* ``oap_ft``         -- OAP-FT: one round of ``--limit`` queries ``--period`` updates before the end
                        (``algo.schedule=end``);
* ``oap_unlimited``  -- OAP(∞): every row queried at every round (``algo.query_limit=null``);
* ``oap_env_return`` -- OAP with simulator rollouts as the oracle (``algo.oracle=env_return``; the dataset's
                        ``infos/qpos``/``qvel``);
* ``oap_live``       -- a policy-preferred row targets the current ``π(s)`` instead of the labelling round's action
                        (``algo.target=live``).

Score: mean D4RL-normalised return over a run's last 3 evaluations (the paper: last 10); printed per variant with
a 95% stratified-bootstrap CI over seeds, and the paired difference to ``td3bc``.  The data: ``--steps-data``
steps collected with rlkit's shipped hopper "medium" policy (not D4RL's file, which cannot be downloaded here).

CPU-sized check (a few minutes per run)::

    python bench/oap.py --variants td3bc oap oap_noranknet oap_ft oap_unlimited --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rlkit.evaluation import statistics as st

VARIANTS = {
    "td3bc": ["algo=td3bc"],
    "oap": ["algo=oap"],
    "oap_noranknet": ["algo=oap", "algo.ranknet=false"],
    "oap_ft": ["algo=oap", "algo.schedule=end"],
    "oap_unlimited": ["algo=oap", "algo.query_limit=null"],
    "oap_env_return": ["algo=oap", "algo.oracle=env_return"],
    "oap_live": ["algo=oap", "algo.target=live"],
}


def last_evaluations(run_dir: Path, k: int = 3) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scores = [r["eval/normalized_score"] for r in records if "eval/normalized_score" in r]
    return float(np.mean(scores[-k:]))


def overrides(variant: str, data: Path, seed: int, run_dir: Path, ns: argparse.Namespace) -> list[str]:
    out = [*VARIANTS[variant], f"env={ns.env}", f"env.dataset.path={data}", "env.dataset.source=file",
           f"seed={seed}", f"train.steps={ns.steps}", f"eval.interval={ns.steps // 5}",
           f"eval.episodes={ns.eval_episodes}", "checkpoint.interval=0", f"num_threads={ns.threads}",
           "logging.progress=false", "logging.tensorboard=false", f"run_dir={run_dir}"]
    if variant.startswith("oap"):
        out += [f"algo.query_period={ns.period}", f"algo.ranknet_epochs={ns.epochs}"]
        if variant != "oap_unlimited":
            out.append(f"algo.query_limit={ns.limit}")
    return out


def run_one(variant: str, seed: int, data: Path, ns: argparse.Namespace) -> dict:
    run_dir = Path(ns.out) / variant / f"seed{seed}"
    summary = run_dir / "summary.json"
    if not (summary.exists() and json.loads(summary.read_text()).get("finished")):
        cmd = ["rlkit", "train", *overrides(variant, data, seed, run_dir, ns)]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    queries = max((r.get("oap/queries", 0) for r in records), default=0)
    preferred = [r["oap/policy_preferred"] for r in records if "oap/policy_preferred" in r]
    return {"score": last_evaluations(run_dir), "queries": queries,
            "policy_preferred": preferred[-1] if preferred else None}


def ci_text(values: np.ndarray) -> str:
    point, lo, hi = st.stratified_bootstrap_ci(values[:, None], statistic=st.mean, reps=2000)
    return f"{point:6.1f} [{lo:6.1f}, {hi:6.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["td3bc", "oap"], choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env", default="hopper-medium")
    parser.add_argument("--steps-data", type=int, default=30_000)
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--limit", type=int, default=3_000, help="algo.query_limit (10%% of the rows, as 1e5/1e6)")
    parser.add_argument("--period", type=int, default=1_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/oap_runs")
    ns = parser.parse_args()
    from rlkit.data.collect import collect_to_file

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"{ns.env}-{ns.steps_data}.hdf5"
    if not data.exists():
        collect_to_file(f"{ns.env}-v2", steps=ns.steps_data, seed=0, num_envs=8, out=data)
    results = {v: [run_one(v, s, data, ns) for s in ns.seeds] for v in ns.variants}
    scores = {v: np.array([r["score"] for r in rs]) for v, rs in results.items()}
    print(f"{'variant':16s} {'last-3 score [95% CI]':24s} per seed                 queries  policy-preferred")
    for v, rs in results.items():
        per_seed = ", ".join(f"{r['score']:.1f}" for r in rs)
        pref = [r["policy_preferred"] for r in rs if r["policy_preferred"] is not None]
        pref_text = f"{np.mean(pref):.2f}" if pref else "-"
        print(f"{v:16s} {ci_text(scores[v]):24s} {per_seed:24s} {rs[0]['queries']:>7}  {pref_text}")
    if "td3bc" in scores:
        for v in scores:
            if v != "td3bc":
                print(f"{v + ' - td3bc':28s} {ci_text(scores[v] - scores['td3bc'])}")
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
