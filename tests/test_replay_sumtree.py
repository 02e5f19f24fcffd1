"""SumTree: structural invariants under random updates (hypothesis), search against a reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlkit.errors import ConfigError
from rlkit.replay.sumtree import SumTree


def assert_invariants(tree: SumTree, reference: np.ndarray) -> None:
    """Every stored internal node is the sum (min) of its two children; leaves match the reference."""
    d = tree.depth
    np.testing.assert_array_equal(tree.leaves, reference)
    assert np.all(tree.sums[d][tree.capacity :] == 0)
    for k in range(tree.top, d):
        np.testing.assert_array_equal(tree.sums[k], tree.sums[k + 1][0::2] + tree.sums[k + 1][1::2])
    assert tree.total == pytest.approx(reference.sum(), rel=1e-12, abs=1e-300)
    if tree.track_min:
        for k in range(tree.min_top, d):
            np.testing.assert_array_equal(
                tree.mins[k], np.minimum(tree.mins[k + 1][0::2], tree.mins[k + 1][1::2])
            )
        positive = reference[reference > 0]
        assert tree.min == (positive.min() if positive.size else np.inf)


update_batches = st.lists(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from([0.0, 0.5, 1.0, 3.0]) | st.floats(0.0, 1e6)),
        min_size=1,
        max_size=40,
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 300),
    top_depth=st.integers(0, 10),
    min_top_depth=st.integers(0, 10),
    batches=update_batches,
)
def test_invariants_after_random_updates(capacity, top_depth, min_top_depth, batches):
    tree = SumTree(capacity, top_depth=top_depth, min_top_depth=min_top_depth)
    reference = np.zeros(capacity)
    for batch in batches:
        idx = np.array([i % capacity for i, _ in batch])
        val = np.array([v for _, v in batch])
        tree.update(idx, val)
        for i, v in zip(idx, val):  # sequential semantics: the last write wins
            reference[i] = v
        assert_invariants(tree, reference)


def test_duplicate_indices_last_write_wins():
    tree = SumTree(16)
    tree.update(np.array([3, 7, 3, 3, 1, 7]), np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0]))
    assert tree.get(np.array([1, 3, 7])).tolist() == [4.0, 5.0, 6.0]
    assert tree.total == 15.0
    tree.update(np.array([2, 2, 9]), np.array([8.0, 0.5, 1.0]))  # increasing with a repeat
    assert tree.get(np.array([2, 9])).tolist() == [0.5, 1.0]


def test_set_all_matches_incremental_updates():
    rng = np.random.default_rng(0)
    values = rng.random(1000) * (rng.random(1000) > 0.2)
    a, b = SumTree(1000), SumTree(1000)
    a.set_all(values)
    b.update(np.arange(1000), values)
    for k in range(a.top, a.depth + 1):
        np.testing.assert_array_equal(a.sums[k], b.sums[k])
    for k in range(a.min_top, a.depth + 1):
        np.testing.assert_array_equal(a.mins[k], b.mins[k])


def test_textbook_layout_has_root():
    tree = SumTree(10, top_depth=0, min_top_depth=0)
    tree.update(np.arange(10), np.arange(10, dtype=float))
    assert tree.sums[0].shape == (1,) and tree.sums[0][0] == 45.0
    assert tree.mins[0][0] == 1.0  # 0 has no mass: excluded from the min


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 3000),
    top_depth=st.integers(0, 12),
    zero_fraction=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31),
)
def test_find_matches_searchsorted_on_integer_leaves(capacity, top_depth, zero_fraction, seed):
    """Integer leaves make every partial sum exact, so the tree must agree with searchsorted exactly."""
    rng = np.random.default_rng(seed)
    leaves = rng.integers(1, 100, capacity).astype(float) * (rng.random(capacity) >= zero_fraction)
    leaves[rng.integers(capacity)] = 7.0  # at least one leaf with mass
    tree = SumTree(capacity, top_depth=top_depth)
    tree.update(np.arange(capacity), leaves)
    total = leaves.sum()
    cum = np.cumsum(leaves)
    # every boundary, just below it, and random points
    u = np.concatenate([cum[:-1], np.maximum(cum - 0.5, 0), rng.random(200) * total, [0.0, total - 1e-9]])
    idx, values = tree.find(u)
    expected = np.searchsorted(
        cum, np.minimum(u, np.nextafter(total, 0)), side="right"
    )  # u >= total: clipped
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(values, leaves[idx])
    assert np.all(values > 0)


def test_find_clips_out_of_range_queries_and_skips_zero_leaves():
    tree = SumTree(8)
    tree.update(np.arange(8), np.array([0, 2, 0, 0, 3, 0, 0, 0], dtype=float))
    idx, _ = tree.find(np.array([-5.0, 0.0, 1.999, 2.0, 4.9, 5.0, 1e9]))
    assert idx.tolist() == [1, 1, 1, 4, 4, 4, 4]


def test_guarded_descent_recovers_from_a_rounding_slip():
    """Simulate float rounding: a parent that claims slightly more mass than its children hold. The
    fast descent would step into the empty right half; the guard must return a leaf with mass."""
    tree = SumTree(4, top_depth=0, min_top_depth=0)
    tree.update(np.array([0]), np.array([1.0]))
    tree.sums[0][0] = 1.0 + 1e-12  # corrupted root
    idx, values = tree.find(np.array([1.0 + 5e-13]))
    assert idx.tolist() == [0] and values.tolist() == [1.0]


def test_stratified_sampling_one_draw_per_segment():
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 1.0, 1.0, 1.0]))
    idx, _ = tree.sample_stratified(4, np.random.default_rng(0))
    assert idx.tolist() == [0, 1, 2, 3]  # equal masses: segment k holds exactly leaf k


def test_errors():
    with pytest.raises(ConfigError):
        SumTree(0)
    tree = SumTree(5)
    with pytest.raises(IndexError):
        tree.update(np.array([5]), np.array([1.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([-1]), np.array([1.0]))
    with pytest.raises(ValueError):
        tree.update(np.array([0, 1]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="total mass is 0"):
        tree.sample(3, np.random.default_rng(0))
