"""The measurements of Self-Reference (Zhao et al., Neural Networks 2025) logged by the URLB regimes, and the rliable
report (Agarwal et al. 2021) with and without the add-on: state coverage, probe rewards that leave the agent
unchanged, the finetuning KL to the pretrained policy and normalised intrinsic reward, and the aggregate table,
side-by-side table and PNG figures of ``rlkit report``."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.unsupervised import RND
from rlkit.evaluation import statistics as st
from rlkit.evaluation.coverage import StateCoverage
from rlkit.evaluation.report import build_report
from rlkit.evaluation.rliable_plots import TAUS, aggregates, profile_bands, urlb_matrices
from rlkit.evaluation.scores import URLB_EXPERT
from rlkit.replay import Batch

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_state_coverage_counts_distinct_projected_cells():
    cov = StateCoverage(obs_dim=2, seed=0, dims=2, cell_size=1.0)
    cov.projection = np.eye(2)  # identity projection: cells are unit squares of the state plane
    cov.add(np.array([[0.1, 0.2], [0.9, 0.5], [1.5, 0.1], [-0.5, 3.2]]))
    assert cov.metrics() == {"urlb/coverage_cells": 3.0, "urlb/coverage_recent_cells": 3.0}
    cov.add(np.array([[0.3, 0.3], [5.0, 5.0]]))
    assert cov.metrics() == {"urlb/coverage_cells": 4.0, "urlb/coverage_recent_cells": 2.0}
    again = StateCoverage(obs_dim=2, seed=0, dims=2, cell_size=1.0)
    again.load_state_dict(cov.state_dict())
    assert again.cells == cov.cells and again.recent == cov.recent


def probe() -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch({"obs": torch.randn(64, 5, generator=g), "next_obs": torch.randn(64, 5, generator=g),
                  "action": torch.rand(64, 2, generator=g) * 2 - 1, "reward": torch.zeros(64)})


def test_probe_reward_leaves_the_reward_statistics_untouched():
    agent = RND(OBS, ACT, hidden_dim=16, rnd_rep_dim=8)
    agent.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    batch = probe()
    stats = {k: v.clone() for k, v in agent.reward_stats.state_dict().items()}
    first = agent.probe_intrinsic_reward(batch)
    torch.testing.assert_close(agent.probe_intrinsic_reward(batch), first)
    assert all(torch.equal(stats[k], v) for k, v in agent.reward_stats.state_dict().items())
    torch.testing.assert_close(first, agent.intrinsic_reward(batch, batch.obs, batch.next_obs))  # same reward


def test_finetuning_kl_to_the_pretrained_policy_and_normalised_intrinsic_reward():
    pre = RND(OBS, ACT, hidden_dim=16, rnd_rep_dim=8)
    pre.setup_urlb(reward_free=True, seed_steps=0, episode_steps=100)
    batch = probe()
    pre.intrinsic_reward_stats.update(torch.full((10,), 2.0))  # mean pretraining intrinsic reward ~ 2
    fine = RND(OBS, ACT, hidden_dim=16, rnd_rep_dim=8, stddev_schedule=0.5)
    fine.setup_urlb(reward_free=False, seed_steps=0, episode_steps=100)
    fine.init_from_snapshot(pre.state_dict())
    metrics = fine.probe_metrics(batch)
    assert metrics["urlb/kl_to_pretrained"] == 0  # the actor it received
    with torch.no_grad():
        fine.actor.policy[-1].bias.add_(0.1)
    mu_ft, mu_pre = fine.actor(batch.obs), pre.actor(batch.obs)
    expected = ((mu_ft - mu_pre) ** 2).sum(-1).mean() / (2 * 0.5**2)
    metrics = fine.probe_metrics(batch)
    torch.testing.assert_close(metrics["urlb/kl_to_pretrained"], expected.detach())
    reward = pre.probe_intrinsic_reward(batch).mean()  # the pretrained RND module came along
    torch.testing.assert_close(metrics["urlb/normalized_intrinsic_reward"], reward / pre.intrinsic_reward_stats.mean[0])


def write_runs(root, scores: dict) -> None:
    for (algo, addon, task, seed), s in scores.items():
        run = root / f"{algo}-{addon}" / task / str(seed)
        run.mkdir(parents=True)
        summary = {"algo": algo, "addon": addon, "env": f"urlb-{task}", "seed": seed, "steps": 100000,
                   "wall_time_s": 1.0, "final_normalized_score": s, "final_return": s * URLB_EXPERT[task],
                   "best_score": s, "score_table": "urlb", "urlb_domain": task.split("_")[0]}
        (run / "summary.json").write_text(json.dumps(summary))


def test_report_gives_rliable_aggregates_profiles_and_the_side_by_side_table(tmp_path):
    rng = np.random.default_rng(0)
    tasks = ("walker_run", "walker_flip", "quadruped_walk")
    scores = {(a, addon, t, s): float(rng.uniform(0.2, 1.1) + (0.1 if addon else 0.0))
              for a in ("rnd", "apt") for addon in (None, "self_reference") for t in tasks for s in range(3)}
    write_runs(tmp_path, scores)
    from rlkit.evaluation.report import find_runs, load_summaries

    matrices = urlb_matrices(load_summaries(find_runs([str(tmp_path)])))
    assert list(matrices) == ["apt", "apt+self_reference", "rnd", "rnd+self_reference"]  # base beside +SR
    x = np.array([[scores[("rnd", "self_reference", t, s)] for t in sorted(tasks)] for s in range(3)])
    np.testing.assert_allclose(matrices["rnd+self_reference"], x)
    agg = aggregates(matrices, reps=200)
    assert agg["rnd+self_reference"]["iqm"][0] == pytest.approx(st.iqm(x))
    assert agg["rnd+self_reference"]["optimality_gap"][0] == pytest.approx(st.optimality_gap(x))
    assert agg["rnd+self_reference"]["median"][0] == pytest.approx(st.median(x))
    low, point, high = agg["rnd"]["mean"][1], agg["rnd"]["mean"][0], agg["rnd"]["mean"][2]
    assert low <= point <= high
    prof, band_low, band_high = profile_bands(x, reps=100)
    np.testing.assert_allclose(prof, [(x.reshape(-1) > t).mean() for t in TAUS])
    assert (band_low <= prof + 1e-12).all() and (prof <= band_high + 1e-12).all()

    text = build_report([str(tmp_path)], reps=200)
    assert "## URLB aggregates" in text and "| rnd+self_reference | 3 x 3 |" in text
    base_iqm = st.iqm(np.array([[scores[("rnd", None, t, s)] for t in sorted(tasks)] for s in range(3)]))
    change = 100 * (st.iqm(x) - base_iqm) / base_iqm
    assert f"| rnd+self_reference | {base_iqm:.3f} | {st.iqm(x):.3f} | {change:+.1f}% |" in text
    assert (tmp_path / "urlb_aggregates.png").stat().st_size > 0 and (tmp_path / "urlb_profiles.png").exists()
