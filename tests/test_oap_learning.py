"""Learning check of OAP (Yang et al. ICML 2023, Table 2's comparison) at CPU size (slow): OAP's default must not
make its base worse.

Data: 30k steps collected with rlkit's shipped hopper "medium" behaviour policy (not D4RL's hopper-medium-v2: no
D4RL file here). TD3+BC vs TD3+BC+OAP with rlkit's defaults (relaxed BC on confidently policy-preferred rows, 5
rounds over the second half, gated RankNet) at equal gradient steps (5k), 3 seeds; oracle: the shipped hopper
expert critic (trained together with the SAC expert), whose agreement check refuses it (one-action preferences on
hopper are decided by contact chaos: see the README), so the run accepts it with ``algo.min_oracle_agreement=0``; 3k
queries (10% of the rows, as 1e5 of D4RL's 1e6), 50 RankNet epochs per round (the paper: 100; CPU budget). Score:
mean D4RL-normalised return over the last 3 evaluations (the paper: last 10).  It asserts that both learn, that OAP
spent exactly its budget, and that the paired difference's mean is above -2 points (no harm).
``python bench/oap.py`` runs the 5-seed comparisons of the README (coin-flip oracle, positive control, IQL).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

STEPS, LIMIT, EPOCHS, SEEDS = 5_000, 3_000, 50, (0, 1, 2)


def last_evaluations(run_dir: str | Path, k: int = 3) -> float:
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    scores = [r["eval/normalized_score"] for r in records if "eval/normalized_score" in r]
    return float(np.mean(scores[-k:]))


def overrides(algo: str, data: str | Path, seed: int, run_dir: str | Path, steps: int = STEPS) -> list[str]:
    out = [f"algo={algo}", "env=hopper-medium", f"env.dataset.path={data}", "env.dataset.source=file",
           f"seed={seed}", f"train.steps={steps}", f"eval.interval={steps // 5}", "eval.episodes=10",
           "checkpoint.interval=0", "num_threads=1", "logging.progress=false", "logging.tensorboard=false",
           f"run_dir={run_dir}"]
    if algo == "oap":
        out += [f"algo.query_limit={LIMIT}", f"algo.ranknet_epochs={EPOCHS}", "algo.min_oracle_agreement=0"]
    return out


def compare(scores: dict[str, list[float]]) -> dict[str, tuple[float, float, float]]:
    from rlkit.evaluation.statistics import mean, stratified_bootstrap_ci

    out = {k: stratified_bootstrap_ci(np.asarray(v), statistic=mean) for k, v in scores.items()}
    out["oap - td3bc"] = stratified_bootstrap_ci(np.asarray(scores["oap"]) - np.asarray(scores["td3bc"]),
                                                 statistic=mean)
    return out


@pytest.mark.slow
def test_oap_vs_td3bc_on_collected_hopper_medium(compose_cfg, tmp_path):
    from rlkit import trainer
    from rlkit.data.collect import collect_to_file

    data = collect_to_file("hopper-medium-v2", steps=30_000, seed=0, num_envs=8, out=tmp_path / "hm.hdf5")
    scores: dict[str, list[float]] = {"td3bc": [], "oap": []}
    for algo in scores:
        for seed in SEEDS:
            run_dir = tmp_path / algo / str(seed)
            trainer.run(compose_cfg(*overrides(algo, data, seed, run_dir)))
            scores[algo].append(last_evaluations(run_dir))
            if algo == "oap":
                records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
                assert max(r.get("oap/queries", 0) for r in records) == LIMIT
                assert any("oap/relaxed_rows" in r for r in records)
                assert any("oap/oracle_agreement" in r for r in records)
    print({k: [round(x, 1) for x in v] for k, v in scores.items()}, compare(scores))
    assert min(np.mean(v) for v in scores.values()) > 10.0, scores
    assert np.mean(np.asarray(scores["oap"]) - np.asarray(scores["td3bc"])) > -2.0, scores
