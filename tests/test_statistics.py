"""Aggregate statistics against hand-computed cases."""

import numpy as np
import pytest

from rlkit.evaluation import statistics as st
from rlkit.evaluation.scores import normalize, reference


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 values: the 25%-trimmed mean drops the 2 lowest and 2 highest
    x = np.array([[0.0, 100.0, 1.0, 2.0], [3.0, 4.0, -50.0, 5.0]])
    assert st.iqm(x) == pytest.approx(np.mean([1.0, 2.0, 3.0, 4.0]))


def test_optimality_gap_counts_only_the_shortfall():
    x = np.array([[0.5, 1.5], [1.0, 0.0]])
    # shortfalls below 1: 0.5, 0, 0, 1 -> mean 0.375
    assert st.optimality_gap(x) == pytest.approx(0.375)
    assert st.optimality_gap(x * 100, threshold=100) == pytest.approx(37.5)


def test_median_is_over_task_means():
    x = np.array([[1.0, 10.0, 3.0], [3.0, 20.0, 5.0]])  # task means 2, 15, 4 -> median 4
    assert st.median(x) == pytest.approx(4.0)


def test_bootstrap_ci_degenerate_and_coverage():
    same = np.full((5, 3), 0.7)
    point, low, high = st.stratified_bootstrap_ci(same, st.mean, reps=200)
    assert point == low == high == pytest.approx(0.7)
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 0.2, size=(20, 4))
    point, low, high = st.stratified_bootstrap_ci(data, st.mean, reps=1000)
    assert low < point < high
    # the CI of the mean of 80 draws with sd 0.2 has half-width about 1.96 * 0.2 / sqrt(80) = 0.044
    assert 0.02 < (high - low) / 2 < 0.07


def test_bootstrap_is_stratified_by_task():
    # task 0 always 0, task 1 always 1: resampling within tasks keeps the mean exactly 0.5
    x = np.stack([np.zeros(6), np.ones(6)], axis=1)
    _, low, high = st.stratified_bootstrap_ci(x, st.mean, reps=300)
    assert low == high == pytest.approx(0.5)


def test_performance_profile():
    x = np.array([[0.1, 0.5], [0.9, 1.2]])
    assert st.performance_profile(x, np.array([0.0, 0.5, 1.0])).tolist() == [1.0, 0.5, 0.25]


def test_score_tables():
    low, high = reference("d4rl", "hopper")
    assert normalize("d4rl", "hopper-medium", [low, high]).tolist() == pytest.approx([0.0, 100.0])
    assert normalize("atari", "pong", [14.6])[0] == pytest.approx(1.0)
    assert normalize("atari", "ms_pacman", [307.3])[0] == pytest.approx(0.0)
    assert normalize("urlb", "walker_run", [398.0])[0] == pytest.approx(0.5)
    assert normalize(None, None, [1.0]) is None
