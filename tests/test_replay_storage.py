"""ColumnarStorage: ring wrap-around, validation messages, gathers, checkpoints, device mirror."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rlkit.errors import CheckpointError, ConfigError
from rlkit.replay.storage import ColumnarStorage, batch_dtype

COLUMNS = {"obs": ((11,), "float32"), "action": ((), "int64"), "done": ((), "bool")}


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    """Rows whose content encodes their insertion number."""
    k = np.arange(start, start + n)
    return {"obs": np.repeat(k[:, None], 11, axis=1).astype(np.float32), "action": k, "done": k % 3 == 0}


def stored_in_order(storage: ColumnarStorage) -> np.ndarray:
    """Insertion numbers of the stored rows, oldest first."""
    physical = storage.logical_to_physical(np.arange(storage.size))
    return storage.get(physical, ["action"])["action"]


@pytest.mark.parametrize("chunk", [1, 3, 7, 10, 25])
def test_wraparound_keeps_newest_rows_in_insertion_order(chunk):
    storage = ColumnarStorage(10, COLUMNS)
    added = 0
    for _ in range(6):
        written = storage.add(**rows(added, chunk))
        np.testing.assert_array_equal(written, (added + np.arange(chunk)) % 10)
        added += chunk
        newest = np.arange(max(0, added - 10), added)
        np.testing.assert_array_equal(stored_in_order(storage), newest)
        assert storage.size == min(added, 10)
        assert storage.cursor == added % 10
        assert storage.added_total == added
    # the content of each physical row is its newest writer
    phys = np.arange(storage.size)
    got = storage.get(phys)
    np.testing.assert_array_equal(got["obs"][:, 0], got["action"])
    np.testing.assert_array_equal(got["done"], got["action"] % 3 == 0)
    np.testing.assert_array_equal(storage.physical_to_logical(storage.logical_to_physical(phys)), phys)


def test_single_row_without_leading_dim():
    storage = ColumnarStorage(4, COLUMNS)
    storage.add(obs=np.ones(11), action=5, done=True)
    storage.add(obs=np.zeros((2, 11)), action=np.array([1, 2]), done=np.array([False, True]))
    assert storage.size == 3
    assert storage.get(np.array([0]))["action"].tolist() == [5]
    assert storage.arrays["obs"].dtype == np.float32  # float64 input cast to the column dtype


def test_add_errors_are_clear():
    storage = ColumnarStorage(4, COLUMNS)
    good = rows(0, 2)
    with pytest.raises(ConfigError, match=r"column 'obs' expects rows of shape \(11,\), got \(12,\)"):
        storage.add(**{**good, "obs": np.zeros((2, 12), np.float32)})
    with pytest.raises(ConfigError, match=r"column 'obs' expects rows of shape \(11,\), got \(12,\)"):
        storage.add(**{**good, "obs": np.zeros(12, np.float32)})
    with pytest.raises(ConfigError, match=r"unknown column\(s\) \['rewrd'\]"):
        storage.add(**good, rewrd=np.zeros(2))
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['done'\]"):
        storage.add(obs=good["obs"], action=good["action"])
    with pytest.raises(ConfigError, match="different numbers of rows"):
        storage.add(**{**good, "action": np.arange(3)})
    with pytest.raises(ConfigError, match="column 'action' stores int64 but got float64"):
        storage.add(**{**good, "action": np.array([0.5, 1.5])})
    assert storage.size == 0  # nothing was written by a failed add


@pytest.mark.parametrize(
    "columns, message",
    [
        ({}, "at least one column"),
        ({"indices": ((), "int64")}, "reserved"),
        ({"my obs": ((3,), "float32")}, "identifier"),
        ({"obs": (3, "float32")}, "spec must be"),
        ({"obs": ((3,), "U5")}, "not supported"),
    ],
)
def test_bad_column_specs(columns, message):
    with pytest.raises(ConfigError, match=message):
        ColumnarStorage(4, columns)


def test_get_shapes_and_bounds():
    storage = ColumnarStorage(8, COLUMNS)
    storage.add(**rows(0, 5))
    got = storage.get(np.array([[0, 1, 2], [2, 3, 4]]))
    assert got["obs"].shape == (2, 3, 11) and got["action"].shape == (2, 3)
    assert storage.get(np.array([4]), keys=["done"]).keys() == {"done"}
    with pytest.raises(IndexError):
        storage.get(np.array([5]))  # not filled yet
    with pytest.raises(ConfigError, match="unknown column 'rew'"):
        storage.get(np.array([0]), keys=["rew"])


def test_from_arrays_shares_memory_and_extends():
    obs = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    rew = np.arange(6, dtype=np.float32)
    storage = ColumnarStorage.from_arrays({"obs": obs, "reward": rew})
    assert np.shares_memory(storage.arrays["obs"], obs)
    assert (storage.size, storage.cursor, storage.added_total) == (6, 0, 6)
    bigger = ColumnarStorage.from_arrays({"obs": obs, "reward": rew}, capacity=10)
    assert not np.shares_memory(bigger.arrays["obs"], obs)
    bigger.add(obs=np.zeros((2, 3)), reward=np.zeros(2))
    assert bigger.size == 8
    np.testing.assert_array_equal(bigger.arrays["obs"][:6], obs)
    with pytest.raises(ConfigError, match="capacity >= 6"):
        ColumnarStorage.from_arrays({"obs": obs}, capacity=3)
    with pytest.raises(ConfigError, match="same positive number of rows"):
        ColumnarStorage.from_arrays({"obs": obs, "reward": rew[:5]})


def test_state_dict_round_trip_is_compact_and_weights_only_loadable():
    storage = ColumnarStorage(10, COLUMNS)
    storage.add(**rows(0, 4))
    state = storage.state_dict()
    assert state["data"]["obs"].shape == (4, 11)  # only the filled rows
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    other = ColumnarStorage(10, COLUMNS)
    other.add(**rows(100, 9))  # stale content that must disappear
    other.load_state_dict(loaded)
    assert (other.size, other.cursor, other.added_total) == (4, 4, 4)
    for name in COLUMNS:
        np.testing.assert_array_equal(other.arrays[name], storage.arrays[name])
    # wrapped storage
    storage.add(**rows(4, 13))
    other.load_state_dict(storage.state_dict())
    np.testing.assert_array_equal(stored_in_order(other), np.arange(7, 17))


def test_load_state_dict_refuses_mismatches():
    storage = ColumnarStorage(10, COLUMNS)
    storage.add(**rows(0, 3))
    state = storage.state_dict()
    with pytest.raises(CheckpointError, match="capacity"):
        ColumnarStorage(11, COLUMNS).load_state_dict(state)
    with pytest.raises(CheckpointError, match="columns"):
        ColumnarStorage(10, {**COLUMNS, "obs": ((12,), "float32")}).load_state_dict(state)
    with pytest.raises(CheckpointError, match="malformed"):
        ColumnarStorage(10, COLUMNS).load_state_dict({"capacity": 10})


def test_device_mirror_follows_the_ring():
    storage = ColumnarStorage(6, COLUMNS, device="cpu", mirror=True)
    assert storage.mirror is not None
    assert storage.mirror["done"].dtype == torch.float32 and storage.mirror["action"].dtype == torch.int64
    for start in range(0, 20, 3):
        storage.add(**rows(start, 3))
        for name, arr in storage.arrays.items():
            np.testing.assert_array_equal(
                storage.mirror[name].numpy(), arr.astype(np.float32 if name != "action" else np.int64)
            )
    idx = np.array([[0, 5], [3, 3]])
    got = storage.gather_torch(torch.from_numpy(idx))
    ref = storage.get(idx)
    for name in COLUMNS:
        np.testing.assert_array_equal(got[name].numpy(), ref[name].astype(got[name].numpy().dtype))
    plain = ColumnarStorage(6, COLUMNS)
    assert plain.mirror is None
    with pytest.raises(ConfigError, match="no device mirror"):
        plain.gather_torch(torch.zeros(1, dtype=torch.int64))


def test_batch_dtype_mapping():
    assert batch_dtype(np.float64) == torch.float32
    assert batch_dtype(np.float16) == torch.float32
    assert batch_dtype(np.bool_) == torch.float32
    assert batch_dtype(np.int32) == torch.int64
    assert batch_dtype(np.uint8) == torch.uint8
