"""Samplers: sampling frequencies (chi-square), PER weights in closed form, sequence windows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from rlkit.errors import CheckpointError, ConfigError
from rlkit.replay.samplers import (
    PrioritizedSampler,
    SequenceSampler,
    UniformSampler,
    WeightedSampler,
    make_sampler,
)
from rlkit.replay.storage import ColumnarStorage

P_MIN = 1e-3  # chi-square acceptance threshold (fixed seeds: deterministic)


def storage_with(n: int, capacity: int | None = None, done: np.ndarray | None = None) -> ColumnarStorage:
    storage = ColumnarStorage(capacity or n, {"x": ((), "int64"), "terminated": ((), "float32")})
    storage.add(x=np.arange(n), terminated=np.zeros(n) if done is None else done)
    return storage


def draw_counts(sampler, storage, calls: int, n: int = 256) -> np.ndarray:
    counts = np.zeros(storage.size)
    for _ in range(calls):
        idx, _ = sampler.sample(n, storage)
        counts += np.bincount(idx, minlength=storage.size)
    return counts


def test_uniform_covers_rows_uniformly():
    storage = storage_with(50)
    counts = draw_counts(UniformSampler(seed=0), storage, calls=100)
    assert chisquare(counts).pvalue > P_MIN


def test_uniform_only_filled_rows():
    storage = storage_with(7, capacity=100)
    idx, w = UniformSampler(seed=1).sample(1000, storage)
    assert w is None and idx.min() >= 0 and idx.max() < 7 and idx.dtype == np.int64


# ------------------------------------------------------------------ PER
def per_with(priorities: np.ndarray, **kwargs) -> tuple[PrioritizedSampler, ColumnarStorage]:
    storage = storage_with(len(priorities))
    sampler = PrioritizedSampler(**kwargs)
    sampler.bind(storage)
    sampler.update_priorities(np.arange(len(priorities)), priorities)
    return sampler, storage


@pytest.mark.parametrize("stratified", [True, False])
def test_per_frequencies_match_priorities(stratified):
    rng = np.random.default_rng(0)
    priorities = rng.exponential(1.0, 40)
    priorities[3] = 0.0  # still drawable: p = (0 + eps)^alpha
    sampler, storage = per_with(priorities, alpha=0.6, eps=1e-2, seed=1, stratified=stratified)
    counts = draw_counts(sampler, storage, calls=200)
    probs = (priorities + 1e-2) ** 0.6
    probs /= probs.sum()
    assert chisquare(counts, probs * counts.sum()).pvalue > P_MIN
    assert counts[3] > 0


def test_per_frequencies_detect_wrong_exponent():
    """The chi-square test has power: the same draws are rejected against alpha = 1."""
    rng = np.random.default_rng(0)
    priorities = rng.exponential(1.0, 40)
    sampler, storage = per_with(priorities, alpha=0.6, seed=1)
    counts = draw_counts(sampler, storage, calls=200)
    wrong = (priorities + 1e-6) / (priorities + 1e-6).sum()
    assert chisquare(counts, wrong * counts.sum()).pvalue < 1e-10


def test_per_importance_weights_closed_form():
    priorities = np.array([1.0, 2.0, 3.0, 4.0])
    alpha, beta, eps = 0.7, 0.5, 1e-6
    sampler, storage = per_with(priorities, alpha=alpha, beta=beta, eps=eps, seed=0)
    idx, w = sampler.sample(64, storage)
    p = (priorities + eps) ** alpha
    P = p / p.sum()
    N = len(priorities)
    expected = (N * P) ** -beta / ((N * P) ** -beta).max()
    np.testing.assert_allclose(w, expected[idx], rtol=1e-6)
    assert w.dtype == np.float32 and w.max() <= 1.0


def test_per_new_rows_get_max_priority_and_beta_anneals():
    storage = ColumnarStorage(8, {"x": ((), "int64")})
    sampler = PrioritizedSampler(alpha=0.5, beta=0.4, beta_final=1.0, beta_steps=4, seed=0)
    sampler.bind(storage)
    sampler.on_add(storage.add(x=np.arange(3)))
    np.testing.assert_allclose(sampler.tree.leaves[:3], 1.0)  # 1.0 before any update
    sampler.update_priorities(np.array([0, 1]), np.array([8.0, 0.5]))
    sampler.on_add(storage.add(x=np.arange(2)))
    np.testing.assert_allclose(sampler.tree.leaves[3:5], (8.0 + 1e-6) ** 0.5)
    betas = []
    for _ in range(6):
        betas.append(sampler.beta)
        sampler.sample(4, storage)
    np.testing.assert_allclose(betas, [0.4, 0.55, 0.7, 0.85, 1.0, 1.0])


def test_per_update_with_duplicates_and_bad_input():
    sampler, storage = per_with(np.ones(6), alpha=1.0, eps=1e-6)
    sampler.update_priorities(np.array([2, 4, 2]), np.array([5.0, 1.0, 3.0]))  # last write wins
    assert sampler.tree.leaves[2] == pytest.approx(3.0 + 1e-6)
    with pytest.raises(ConfigError, match="finite and >= 0"):
        sampler.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(ConfigError, match="finite and >= 0"):
        sampler.update_priorities(np.array([0, 1]), np.array([1.0, -0.1]))
    with pytest.raises(ConfigError, match="2 indices but 1 priorities"):
        sampler.update_priorities(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ConfigError, match="capacity"):
        PrioritizedSampler(capacity=5).bind(storage)
    with pytest.raises(ConfigError):
        PrioritizedSampler(alpha=-1)


def test_per_binds_rows_already_stored():
    storage = storage_with(5, capacity=10)
    sampler = PrioritizedSampler(seed=0)
    sampler.bind(storage)
    assert sampler.tree.capacity == 10
    np.testing.assert_allclose(sampler.tree.leaves, [1.0] * 5 + [0.0] * 5)


# ------------------------------------------------------------------ weighted (OPER / ReD)
def test_weighted_resample_frequencies_match_p():
    rng = np.random.default_rng(2)
    p = rng.random(30)
    p[[4, 17]] = 0.0
    storage = storage_with(30)
    sampler = WeightedSampler(p, mode="resample", seed=3)
    sampler.bind(storage)
    counts = draw_counts(sampler, storage, calls=100)
    assert counts[[4, 17]].sum() == 0  # zero probability: never drawn
    keep = p > 0
    assert chisquare(counts[keep], p[keep] / p.sum() * counts.sum()).pvalue > P_MIN


def test_weighted_reweight_is_uniform_with_weights_n_p():
    rng = np.random.default_rng(4)
    p = rng.random(25)
    storage = storage_with(25)
    sampler = WeightedSampler(p, mode="reweight", seed=5)
    sampler.bind(storage)
    idx, w = sampler.sample(20_000, storage)
    probs = p / p.sum()
    np.testing.assert_allclose(w, 25 * probs[idx], rtol=1e-6)
    assert (25 * probs).mean() == pytest.approx(1.0)
    assert chisquare(np.bincount(idx, minlength=25)).pvalue > P_MIN


def test_weighted_validation():
    storage = storage_with(4)
    sampler = WeightedSampler(seed=0)
    sampler.bind(storage)
    with pytest.raises(ConfigError, match="no priorities"):
        sampler.sample(2, storage)
    for bad, message in [
        (np.array([1.0, np.nan, 1.0, 1.0]), "finite"),
        (np.array([1.0, -1.0, 1.0, 1.0]), ">= 0"),
        (np.zeros(4), "sum to 0"),
        (np.ones(5), "5 priorities but the storage holds 4 rows"),
        (np.ones((2, 2)), "1-D"),
    ]:
        with pytest.raises(ConfigError, match=message):
            sampler.set_priorities(bad)
    with pytest.raises(ConfigError, match="mode"):
        WeightedSampler(mode="both")
    sampler.set_priorities(np.ones(4))
    sampler.on_add(storage.add(x=np.arange(1), terminated=np.zeros(1)))
    with pytest.raises(ConfigError, match="added after"):
        sampler.sample(2, storage)
    with pytest.raises(ConfigError, match="no priorities to update"):
        sampler.update_priorities(np.array([0]), np.array([1.0]))


# ------------------------------------------------------------------ sequences
def episode_storage(lengths: list[int], capacity: int) -> ColumnarStorage:
    done = np.concatenate([np.eye(1, k, k - 1)[0] for k in lengths])
    storage = ColumnarStorage(capacity, {"x": ((), "int64"), "terminated": ((), "float32")})
    for start in range(0, len(done), 7):  # several adds, wrapping around
        chunk = done[start : start + 7]
        storage.add(x=np.arange(start, start + len(chunk)), terminated=chunk)
    return storage


def test_sequence_windows_respect_episode_ends_and_cursor():
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1, 30, 60))
    storage = episode_storage(lengths, capacity=500)  # ~900 rows: wrapped
    assert storage.added_total > storage.capacity
    T = 8
    idx, w = SequenceSampler(T, seed=1).sample(2000, storage)
    assert w is None and idx.shape == (2000, T)
    x = storage.arrays["x"][idx]
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # consecutive insertions: never crosses the cursor
    assert x.min() >= storage.added_total - storage.size  # only rows still stored
    ends = storage.arrays["terminated"][idx]
    assert ends[:, :-1].sum() == 0  # no episode end before the last row
    assert ends[:, -1].sum() > 0  # ... but windows may end exactly at an episode end


def test_sequence_starts_uniform_over_valid_windows():
    lengths = [5, 12, 3, 20, 9, 30]
    storage = episode_storage(lengths, capacity=100)
    T = 4
    sampler = SequenceSampler(T, seed=2)
    valid = sampler._all_valid_starts(storage, storage.size - T)
    counts = np.zeros(storage.size)
    for _ in range(50):
        idx, _ = sampler.sample(256, storage)
        counts += np.bincount(storage.physical_to_logical(idx[:, 0]), minlength=storage.size)
    assert counts[np.setdiff1d(np.arange(storage.size), valid)].sum() == 0
    assert chisquare(counts[valid]).pvalue > P_MIN


def test_sequence_cross_episodes_is_storm_sampler():
    storage = episode_storage([3] * 40, capacity=90)  # 120 rows, wrapped
    T = 6
    idx, _ = SequenceSampler(T, cross_episodes=True, seed=3).sample(4000, storage)
    x = storage.arrays["x"][idx]
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # still never across the cursor
    assert storage.arrays["terminated"][idx][:, :-1].sum() > 0  # windows do cross episode ends
    starts = storage.physical_to_logical(idx[:, 0])
    assert starts.min() == 0 and starts.max() == storage.size - T  # uniform over [0, N - T]
    assert chisquare(np.bincount(starts, minlength=storage.size - T + 1)).pvalue > P_MIN


def test_sequence_rare_valid_windows_use_exact_fallback():
    lengths = [1] * 300 + [10] + [1] * 300  # one valid window of length 10 among 600 single steps
    storage = episode_storage(lengths, capacity=700)
    idx, _ = SequenceSampler(10, seed=4).sample(64, storage)
    assert (storage.arrays["x"][idx[:, 0]] == 300).all()


def test_sequence_errors():
    storage = episode_storage([1] * 20, capacity=30)
    with pytest.raises(ConfigError, match="no window of 3"):
        SequenceSampler(3, seed=0).sample(4, storage)
    with pytest.raises(ConfigError, match="fewer than the sequence length 64"):
        SequenceSampler(64).sample(4, storage)
    no_done = ColumnarStorage(5, {"x": ((), "int64")})
    with pytest.raises(ConfigError, match="episode-end column"):
        SequenceSampler(2).bind(no_done)
    SequenceSampler(2, cross_episodes=True).bind(no_done)  # fine without one


# ------------------------------------------------------------------ common
def test_make_sampler_and_state():
    assert isinstance(make_sampler("per", alpha=0.5), PrioritizedSampler)
    assert isinstance(make_sampler("sequence", length=4), SequenceSampler)
    with pytest.raises(ConfigError, match="unknown sampler 'pre'"):
        make_sampler("pre")
    with pytest.raises(ConfigError, match="bad arguments"):
        make_sampler("uniform", alpha=0.5)
    storage = storage_with(100)
    a = UniformSampler(seed=7)
    a.sample(10, storage)
    b = UniformSampler(seed=99)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.sample(10, storage)[0], b.sample(10, storage)[0])
    with pytest.raises(CheckpointError, match="UniformSampler"):
        SequenceSampler(3).load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="empty"):
        UniformSampler().sample(3, ColumnarStorage(5, {"x": ((), "int64")}))
