"""ReplayBuffer: batch dtypes and shapes, priorities from torch, exact resume, n-step returns."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rlkit.data import Dataset
from rlkit.errors import CheckpointError, ConfigError
from rlkit.replay import (
    Batch,
    ColumnarStorage,
    PrioritizedSampler,
    ReplayBuffer,
    SequenceSampler,
    UniformSampler,
    WeightedSampler,
    make_sampler,
    nstep_targets,
    transition_columns,
)


def random_rows(rng: np.random.Generator, n: int, obs_dim: int = 3, episode_len: int = 7) -> dict:
    t = rng.integers(0, episode_len, n)
    return {
        "obs": rng.standard_normal((n, obs_dim)),
        "action": rng.standard_normal((n, 2)).astype(np.float32),
        "reward": rng.standard_normal(n),
        "next_obs": rng.standard_normal((n, obs_dim)),
        "terminated": (t == 0).astype(np.float32),
        "truncated": (t == 1).astype(np.float32),
    }


def make_buffer(sampler, capacity: int = 50, fill: int = 80, seed: int = 0, **kwargs) -> ReplayBuffer:
    buffer = ReplayBuffer(ColumnarStorage(capacity, transition_columns((3,), (2,))), sampler, **kwargs)
    rng = np.random.default_rng(seed)
    for _ in range(fill // 10):
        buffer.add(**random_rows(rng, 10))
    return buffer


def test_batch_attribute_access_and_to():
    batch = Batch(obs=torch.zeros(2, 3), indices=torch.arange(2))
    assert batch.obs is batch["obs"]
    batch.weights = torch.ones(2)
    assert "weights" in batch and batch.batch_size == 2
    with pytest.raises(AttributeError, match="batch has no column 'reward'"):
        _ = batch.reward
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.keys() == batch.keys()
    assert "obs: (2, 3) float32" in repr(batch)


def test_batch_dtypes_and_shapes():
    columns = {
        "obs": ((4, 4), np.uint8),
        "action": ((), np.int32),
        "reward": ((), np.float64),
        "terminated": ((), np.bool_),
    }
    buffer = ReplayBuffer(ColumnarStorage(10, columns), UniformSampler(seed=0))
    buffer.add(
        obs=np.zeros((5, 4, 4), np.uint8),
        action=np.arange(5, dtype=np.int32),
        reward=np.ones(5),
        terminated=np.array([0, 1, 0, 0, 1], bool),
    )
    batch = buffer.sample(8)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (8, 4, 4)
    assert batch.action.dtype == torch.int64
    assert batch.reward.dtype == torch.float32
    assert batch.terminated.dtype == torch.float32 and set(batch.terminated.tolist()) <= {0.0, 1.0}
    assert batch.indices.dtype == torch.int64 and batch.weights.dtype == torch.float32
    np.testing.assert_array_equal(batch.weights.numpy(), np.ones(8))
    np.testing.assert_array_equal(batch.action.numpy(), batch.indices.numpy())  # row i holds action i
    assert len(buffer) == 5
    assert buffer.sample(3, keys=["reward"]).keys() == {"reward", "indices", "weights"}


def test_sequence_batch_shapes():
    buffer = make_buffer(SequenceSampler(5, seed=0))
    batch = buffer.sample(4)
    assert batch.obs.shape == (4, 5, 3) and batch.reward.shape == (4, 5)
    assert batch.indices.shape == (4, 5) and batch.weights.shape == (4,)


def test_update_priorities_accepts_torch_and_changes_sampling():
    buffer = make_buffer(PrioritizedSampler(alpha=1.0, seed=0), capacity=20, fill=20)
    batch = buffer.sample(20)
    td = torch.zeros(20, requires_grad=True) + torch.where(batch.indices == 7, 100.0, 0.0)
    buffer.update_priorities(batch.indices, td.abs())
    counts = np.bincount(buffer.sample(1000).indices.numpy(), minlength=20)
    assert counts[7] > 900  # (100 + eps) / (100 + 20 eps) of the mass
    with pytest.raises(ConfigError, match="no priorities to update"):
        make_buffer(UniformSampler()).update_priorities(batch.indices, td.abs())


def test_extra_samplers_share_the_storage():
    p = np.zeros(30)
    p[5] = 1.0
    storage = ColumnarStorage.from_arrays(random_rows(np.random.default_rng(0), 30), device=None)
    buffer = ReplayBuffer(
        storage, WeightedSampler(p, seed=0), extra_samplers={"uniform": UniformSampler(seed=1)}
    )
    assert (buffer.sample(16).indices == 5).all()
    assert len(set(buffer.sample(64, sampler="uniform").indices.tolist())) > 10
    with pytest.raises(ConfigError, match="unknown sampler 'critic'"):
        buffer.sample(4, sampler="critic")


SAMPLER_FACTORIES = {
    "uniform": lambda: UniformSampler(seed=11),
    "per": lambda: PrioritizedSampler(alpha=0.6, beta=0.4, beta_steps=10, seed=12),
    "sequence": lambda: SequenceSampler(4, seed=13),
    "sequence_cross": lambda: SequenceSampler(4, cross_episodes=True, seed=14),
}


def run_steps(buffer: ReplayBuffer, rng: np.random.Generator, steps: int) -> list[Batch]:
    out = []
    for _ in range(steps):
        batch = buffer.sample(8)
        out.append(batch)
        out.append(buffer.sample(8, sampler="aux"))
        if isinstance(buffer.sampler, PrioritizedSampler):
            buffer.update_priorities(batch.indices, torch.from_numpy(rng.random(8)))
        buffer.add(**random_rows(rng, 3))
    return out


@pytest.mark.parametrize("kind", sorted(SAMPLER_FACTORIES))
def test_exact_resume(kind):
    def fresh() -> ReplayBuffer:
        return make_buffer(SAMPLER_FACTORIES[kind](), extra_samplers={"aux": UniformSampler(seed=21)})

    original = fresh()
    run_steps(original, np.random.default_rng(1), 5)
    buf = io.BytesIO()
    torch.save(original.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    expected = run_steps(original, np.random.default_rng(2), 6)

    resumed = make_buffer(SAMPLER_FACTORIES[kind](), fill=0, extra_samplers={"aux": UniformSampler(seed=0)})
    resumed.load_state_dict(state)
    got = run_steps(resumed, np.random.default_rng(2), 6)
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_of_weighted_sampler_and_mismatches():
    storage = ColumnarStorage.from_arrays(random_rows(np.random.default_rng(0), 40))
    p = np.random.default_rng(1).random(40)
    a = ReplayBuffer(storage, WeightedSampler(p, mode="reweight", seed=3))
    a.sample(5)
    state = a.state_dict()
    b = ReplayBuffer(
        ColumnarStorage.from_arrays(random_rows(np.random.default_rng(5), 40)),
        WeightedSampler(mode="reweight"),
    )
    b.load_state_dict(state)
    for _ in range(3):
        x, y = a.sample(16), b.sample(16)
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="mode"):
        ReplayBuffer(
            ColumnarStorage.from_arrays(random_rows(np.random.default_rng(5), 40)), WeightedSampler()
        ).load_state_dict(state)
    with pytest.raises(CheckpointError, match="extra samplers"):
        ReplayBuffer(
            storage, WeightedSampler(mode="reweight"), extra_samplers={"u": UniformSampler()}
        ).load_state_dict(state)
    with pytest.raises(CheckpointError, match="PrioritizedSampler"):
        make_buffer(UniformSampler()).load_state_dict(make_buffer(PrioritizedSampler()).state_dict())


def reference_nstep(x: dict, start: int, size: int, n: int, gamma: float):
    """Python loop over insertion-ordered arrays ``x`` (oldest first)."""
    ret, k = 0.0, 0
    while True:
        ret += gamma**k * x["reward"][start + k]
        last = start + k
        k += 1
        if k == n or x["terminated"][last] or x["truncated"][last] or last + 1 >= size:
            break
    return ret, gamma**k * (1 - x["terminated"][last]), x["next_obs"][last]


@pytest.mark.parametrize("nstep", [1, 3, 5])
def test_nstep_targets_match_a_python_loop(nstep):
    gamma = 0.9
    buffer = make_buffer(UniformSampler(seed=0), capacity=40, fill=70, nstep=nstep, gamma=gamma)
    storage = buffer.storage
    order = storage.logical_to_physical(np.arange(storage.size))
    x = {k: v[order] for k, v in storage.arrays.items()}  # oldest first
    batch = buffer.sample(200)
    if nstep == 1:
        assert "discount" not in batch
        return
    for i, phys in enumerate(batch.indices.tolist()):
        start = int(storage.physical_to_logical(phys))
        ret, disc, nxt = reference_nstep(x, start, storage.size, nstep, gamma)
        assert batch.reward[i].item() == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.discount[i].item() == pytest.approx(disc, rel=1e-6)
        np.testing.assert_allclose(batch.next_obs[i].numpy(), nxt, rtol=1e-6)
        np.testing.assert_array_equal(batch.obs[i].numpy(), x["obs"][start])
    # every stored row as a start, the newest (no successor stored) and wrapped ones included
    last, returns, discounts = nstep_targets(storage, order, nstep, gamma)
    for start in range(storage.size):
        ret, disc, nxt = reference_nstep(x, start, storage.size, nstep, gamma)
        assert returns[start] == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert discounts[start] == pytest.approx(disc, rel=1e-6)
        np.testing.assert_array_equal(storage.arrays["next_obs"][last[start]], nxt)


def test_nstep_stops_at_the_newest_row():
    buffer = make_buffer(UniformSampler(seed=0), capacity=10, fill=0, nstep=3, gamma=0.5)
    rows = random_rows(np.random.default_rng(0), 2)
    rows["terminated"][:] = 0
    rows["truncated"][:] = 0
    rows["reward"] = np.array([1.0, 2.0])
    buffer.add(**rows)
    batch = buffer.sample(50)
    first = batch.indices == 0
    assert torch.all(batch.reward[first] == 2.0) and torch.all(batch.discount[first] == 0.25)
    assert torch.all(batch.reward[~first] == 2.0) and torch.all(batch.discount[~first] == 0.5)


def test_from_dataset_and_mirror_path_match_numpy_path():
    rng = np.random.default_rng(0)
    n = 60
    dataset = Dataset(
        observations=rng.standard_normal((n, 3)),
        actions=rng.uniform(-1, 1, (n, 2)),
        rewards=rng.standard_normal(n),
        terminals=rng.random(n) < 0.05,
        timeouts=rng.random(n) < 0.05,
        next_observations=rng.standard_normal((n, 3)),
    )
    plain = ReplayBuffer.from_dataset(dataset, make_sampler("per", seed=5), nstep=3)
    mirrored = ReplayBuffer.from_dataset(dataset, make_sampler("per", seed=5), mirror=True, nstep=3)
    assert plain.storage.mirror is None and mirrored.storage.mirror is not None
    assert np.shares_memory(plain.storage.arrays["obs"], dataset.observations)
    for _ in range(3):
        a, b = plain.sample(32), mirrored.sample(32)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        plain.update_priorities(a.indices, a.reward.abs())
        mirrored.update_priorities(b.indices, b.reward.abs())


def test_buffer_config_errors():
    storage = ColumnarStorage(5, {"obs": ((2,), "float32")})
    with pytest.raises(ConfigError, match="n-step returns need a 'reward' column"):
        ReplayBuffer(storage, UniformSampler(), nstep=3)
    with pytest.raises(ConfigError, match="expected a Sampler"):
        ReplayBuffer(storage, "uniform")
