"""OAP vs its base and OAP's ablations at equal gradient steps (OAP, Yang et al. ICML 2023, Table 2 and Sec. 5.3).

Variants (each ``rlkit train`` in its own process; runs finished under ``--out`` are reused); each OAP variant
named ``oap_iql...`` runs on IQL and is paired with ``iql``, the others run on TD3+BC and are paired with ``td3bc``:

* ``td3bc``, ``iql``  -- the bases;
* ``oap``            -- rlkit's default: relaxed BC on confidently policy-preferred rows, ``--limit`` queries in
                        5 rounds over the second half of the run, gated RankNet pseudo-labels, the shipped expert
                        critic (``--accept-weak`` adds ``algo.min_oracle_agreement=0`` when its agreement check
                        would refuse it);
* ``oap_coinflip``   -- the default with a label file of random preferences for every row (``algo.oracle=file``):
                        an oracle that is always confident and right half of the time;
* ``oap_expert_action`` -- the positive control: prefer the action closer to the shipped expert's action;
* ``oap_expert_action_frozen`` -- the same oracle with the paper's redirected BC target (``algo.target=frozen``:
                        a policy-preferred row's BC target becomes the labelling round's policy action, which
                        this oracle found closer to the expert's) instead of the relaxed default;
* ``oap_paper``      -- the paper's readings: frozen targets, OAP-Interval every ``--period`` updates, no gates;
* ``oap_noranknet``  -- queried rows only (``algo.ranknet=false``);
* ``oap_ft``         -- OAP-FT: one round of ``--limit`` queries ``--period`` updates before the end
                        (``algo.schedule=end``);
* ``oap_unlimited``  -- OAP(∞): every row queried at every round (``algo.query_limit=null``);
* ``oap_env_return`` -- OAP with simulator rollouts as the oracle (``algo.oracle=env_return``; the dataset's
                        ``infos/qpos``/``qvel``);
* ``oap_live``       -- a policy-preferred row targets the current ``π(s)`` instead of the labelling round's action
                        (``algo.target=live``).

The paired difference of each OAP variant to its base (same seeds, same data) is printed with a 95% bootstrap CI.

Score: mean D4RL-normalised return over a run's last 3 evaluations (the paper: last 10); printed per variant with
a 95% stratified-bootstrap CI over seeds, and the paired difference to ``td3bc``.  The data: ``--steps-data``
steps collected with rlkit's shipped hopper "medium" policy (not D4RL's file, which cannot be downloaded here).

CPU-sized check (a few minutes per run)::

    python bench/oap.py --variants td3bc oap oap_coinflip oap_expert_action --seeds 0 1 2 3 4 --accept-weak
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rlkit.evaluation import statistics as st

PAPER = ["algo.target=frozen", "algo.schedule=interval", "algo.confidence=0", "algo.ranknet_holdout=0",
         "algo.ranknet_confidence=0.5", "algo.ranknet_min_agreement=0", "algo.min_oracle_agreement=0"]
VARIANTS = {
    "td3bc": ["algo=td3bc"],
    "iql": ["algo=iql"],
    "oap": ["algo=oap"],
    "oap_coinflip": ["algo=oap", "algo.oracle=file"],
    "oap_expert_action": ["algo=oap", "algo.oracle=expert_action"],
    "oap_expert_action_frozen": ["algo=oap", "algo.oracle=expert_action", "algo.target=frozen"],
    "oap_paper": ["algo=oap", *PAPER],
    "oap_iql": ["algo=oap_iql"],
    "oap_iql_coinflip": ["algo=oap_iql", "algo.oracle=file"],
    "oap_iql_expert_action": ["algo=oap_iql", "algo.oracle=expert_action"],
    "oap_noranknet": ["algo=oap", "algo.ranknet=false"],
    "oap_ft": ["algo=oap", "algo.schedule=end"],
    "oap_unlimited": ["algo=oap", "algo.query_limit=null"],
    "oap_env_return": ["algo=oap", "algo.oracle=env_return"],
    "oap_live": ["algo=oap", "algo.target=live"],
}


def base_of(variant: str) -> str:
    """The base a variant is paired with."""
    return "iql" if variant.startswith(("iql", "oap_iql")) else "td3bc"


def coin_flip_file(out: Path, rows: int, seed: int) -> Path:
    """A label file of uniformly random preferences for every row (seeded)."""
    path = out / f"coinflip-{rows}-seed{seed}.csv"
    if not path.exists():
        rng = np.random.default_rng(seed)
        labels = rng.choice(["dataset", "policy"], rows)
        path.write_text("row,preferred\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)))
    return path


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
        if variant.endswith("coinflip"):
            from rlkit.data.d4rl import load_d4rl_file

            rows = load_d4rl_file(data, f"{ns.env}-v2").size
            out.append(f"algo.oracle_file={coin_flip_file(Path(ns.out), rows, seed)}")
        if ns.accept_weak:
            out.append("algo.min_oracle_agreement=0")
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
    relaxed = [r["oap/relaxed_rows"] for r in records if "oap/relaxed_rows" in r]
    agreement = [r["oap/oracle_agreement"] for r in records if "oap/oracle_agreement" in r]
    return {"score": last_evaluations(run_dir), "queries": queries,
            "policy_preferred": preferred[-1] if preferred else None, "relaxed_rows": relaxed[-1] if relaxed else None,
            "oracle_agreement": agreement[0] if agreement else None}


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
    parser.add_argument("--accept-weak", action="store_true",
                        help="algo.min_oracle_agreement=0: run OAP even where its oracle check would refuse it")
    ns = parser.parse_args()
    from rlkit.data.collect import collect_to_file

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"{ns.env}-{ns.steps_data}.hdf5"
    if not data.exists():
        collect_to_file(f"{ns.env}-v2", steps=ns.steps_data, seed=0, num_envs=8, out=data)
    # seed by seed, so that an interrupted sweep leaves complete pairs
    runs = {(v, s): run_one(v, s, data, ns) for s in ns.seeds for v in ns.variants}
    results = {v: [runs[v, s] for s in ns.seeds] for v in ns.variants}
    scores = {v: np.array([r["score"] for r in rs]) for v, rs in results.items()}
    print(f"{'variant':22s} {'last-3 score [95% CI]':24s} {'per seed':34s} queries  relaxed  agreement")
    for v, rs in results.items():
        per_seed = ", ".join(f"{r['score']:.1f}" for r in rs)
        relaxed = [r["relaxed_rows"] for r in rs if r.get("relaxed_rows") is not None]
        agree = [r["oracle_agreement"] for r in rs if r.get("oracle_agreement") is not None]
        print(f"{v:22s} {ci_text(scores[v]):24s} {per_seed:34s} {rs[0]['queries']:>7}  "
              f"{np.mean(relaxed) if relaxed else float('nan'):7.0f}  {np.mean(agree) if agree else float('nan'):.2f}")
    for v in scores:
        base = base_of(v)
        if v != base and base in scores:
            print(f"{v + ' - ' + base:34s} {ci_text(scores[v] - scores[base])}")
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
