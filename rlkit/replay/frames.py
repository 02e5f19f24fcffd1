"""Pixel replay that stores each frame once: :class:`FrameStorage`, a :class:`ColumnarStorage` whose ``obs`` and
``next_obs`` columns are rebuilt from a shared pool of frames.

A stacked pixel observation ``o_t`` (``C x H x W`` uint8, ``k`` frames of ``C / k`` channels) shares ``k - 1``
frames with ``o_{t+1}``, and ``next_obs_t`` is ``o_{t+1}`` while an episode runs, so storing both stacks per
row (as a plain columnar buffer does) keeps every frame ``2k`` times. Here each row keeps, per pixel column,
the ids of its ``C`` channel planes (``U = C`` "units" of ``H x W``; an observation that is not channel-first
is one unit), and the units live once in a ring ``pool`` (slot = id mod pool size), as SPR's and DrQ-v2's
buffers rebuild stacks from indices. Which units are shared is decided by exact equality, never assumed:

* ``obs`` of a row reuses the unit ids of the previous row of the same env slot (the previous ``add`` call's
  row at the same position) when its ``next_obs`` equals this ``obs`` -- an episode continuing;
* ``next_obs`` reuses ``obs``'s units ``s..C-1`` for the smallest shift ``s`` with ``next_obs[:C-s] ==
  obs[s:]`` (the frame stack moving by one frame) and pushes its last ``s`` units;
* anything else (an episode's first stack, whose ``k`` copies of the reset frame collapse to one frame's
  units) pushes each unit that does not equal an earlier unit of the same stack.

So sampled batches are bit-identical to a plain storage's, and a row costs one frame plus ``2 U`` int64 ids
(plus one frame per episode start). Pool slots are reused once no stored row refers to them; the pool grows
(copying the live units) only when more units are live than it holds. The pool and the id columns are
mirrored on the device like every other column (``device``/``mirror`` as :class:`ColumnarStorage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from rlkit.errors import CheckpointError, ConfigError
from rlkit.replay.storage import ColumnarStorage, _parse_spec, _to_numpy, _to_tensor

FRAME_KEYS = ("obs", "next_obs")


def is_pixel_pair(columns: Mapping[str, Any]) -> bool:
    """Whether ``columns`` hold uint8 ``obs`` and ``next_obs`` of one image shape (2-D or 3-D) that
    :class:`FrameStorage` can store frame by frame."""
    if not all(key in columns for key in FRAME_KEYS):
        return False
    specs = [_parse_spec(key, columns[key]) for key in FRAME_KEYS]
    shape, dtype = specs[0]
    return specs[0] == specs[1] and dtype == np.uint8 and len(shape) in (2, 3)


def _units_of(shape: tuple[int, ...]) -> int:
    """Channel planes per observation: ``C`` for channel-first ``C x H x W`` (C smaller than H and W), else 1
    (the whole observation is one unit, e.g. channels-last ``H x W x 3``)."""
    if len(shape) == 3 and shape[0] < min(shape[1], shape[2]):
        return shape[0]
    return 1


class FrameStorage(ColumnarStorage):
    """:class:`ColumnarStorage` with ``obs`` / ``next_obs`` rebuilt from a pool of unique frames (module doc)."""

    def __init__(self, capacity: int, columns: Mapping[str, Any], device: str | torch.device | None = None,
                 mirror: bool | None = None) -> None:
        if not is_pixel_pair(columns):
            raise ConfigError("FrameStorage needs uint8 'obs' and 'next_obs' columns of one image shape; use "
                              "ColumnarStorage for other observations")
        user = {name: _parse_spec(name, spec) for name, spec in columns.items()}
        self.obs_shape = user["obs"][0]
        self.units = _units_of(self.obs_shape)
        self.unit_shape = self.obs_shape[1:] if self.units > 1 else self.obs_shape
        stored = {k: v for k, v in user.items() if k not in FRAME_KEYS}
        stored.update({self._ids(k): ((self.units,), np.dtype(np.int64)) for k in FRAME_KEYS})
        super().__init__(capacity, stored, device=device, mirror=mirror)
        self.columns = user
        self.pool = np.zeros((0, *self.unit_shape), np.uint8)
        self.pool_mirror = self._mirror_pool()
        self.next_id = 0          # ids handed out so far
        self.low = 0              # every live id is >= low
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # previous add's next_obs rows and their ids

    @classmethod
    def from_arrays(cls, *args: Any, **kwargs: Any) -> FrameStorage:
        raise ConfigError("FrameStorage is filled by add() (it needs each row's predecessor); build datasets with "
                          "ColumnarStorage.from_arrays")

    @staticmethod
    def _ids(key: str) -> str:
        return f"{key}__ids"

    def _mirror_pool(self) -> torch.Tensor | None:
        if self.mirror is None:
            return None
        return torch.from_numpy(self.pool).to(self.device)

    # ------------------------------------------------------------------ memory
    def nbytes(self) -> int:
        """Host bytes: the frame pool, the id columns and every other column."""
        return super().nbytes() + int(self.pool.nbytes)

    # ------------------------------------------------------------------ writing
    def add(self, **columns: Any) -> np.ndarray:
        values, n = self._validate_rows(columns)
        obs, nxt = values.pop("obs"), values.pop("next_obs")
        U = self.units
        obs_u = obs.reshape(n, U, *self.unit_shape)
        nxt_u = nxt.reshape(n, U, *self.unit_shape)
        obs_ids = np.empty((n, U), np.int64)
        nxt_ids = np.empty((n, U), np.int64)
        last = self._last if self._last is not None and len(self._last[0]) == n else None
        for i in range(n):
            self._reserve(2 * U, pending=[obs_ids[:i], nxt_ids[:i]], rows_written=i)
            if last is not None and np.array_equal(last[0][i], obs[i]):
                obs_ids[i] = last[1][i]
            else:
                obs_ids[i] = self._push_stack(obs_u[i])
            nxt_ids[i] = self._push_next(obs_u[i], obs_ids[i], nxt_u[i])
        self._last = (nxt.copy(), nxt_ids.copy())
        values[self._ids("obs")], values[self._ids("next_obs")] = obs_ids, nxt_ids
        return self._write_rows(values, n)

    def _push(self, units: np.ndarray) -> np.ndarray:
        m = len(units)
        ids = self.next_id + np.arange(m, dtype=np.int64)
        slots = ids % len(self.pool)
        self.pool[slots] = units
        if self.pool_mirror is not None:
            self.pool_mirror[torch.from_numpy(slots).to(self.device)] = torch.from_numpy(
                np.ascontiguousarray(units)).to(self.device)
        self.next_id += m
        return ids

    def _push_stack(self, units: np.ndarray) -> np.ndarray:
        """Ids of a stack with no known predecessor: each unit equal to an earlier one reuses its id."""
        ids = np.empty(len(units), np.int64)
        for j in range(len(units)):
            same = next((p for p in range(j) if np.array_equal(units[p], units[j])), None)
            ids[j] = ids[same] if same is not None else self._push(units[j : j + 1])[0]
        return ids

    def _push_next(self, obs: np.ndarray, obs_ids: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        U = len(obs)
        for s in range(1, U):
            if np.array_equal(nxt[: U - s], obs[s:]):
                return np.concatenate([obs_ids[s:], self._push(nxt[U - s :])])
        if U == 1 or not np.array_equal(nxt, obs):
            return self._push_stack(nxt)
        return obs_ids.copy()

    def _reserve(self, m: int, pending: list[np.ndarray], rows_written: int) -> None:
        """Make room for ``m`` more units: advance ``low`` to the oldest id still referenced, grow if full."""
        if self.next_id + m - self.low <= len(self.pool):
            return
        filled = min(self.capacity, self.size + rows_written)
        refs = [self.arrays[self._ids(k)][:filled] for k in FRAME_KEYS] + [p for p in pending if p.size]
        # rows about to be overwritten by this add no longer count once their new ids are written; keeping
        # them here only delays reuse (never frees a live unit)
        if self._last is not None:
            refs.append(self._last[1])
        self.low = min([int(r.min()) for r in refs if r.size], default=self.next_id)
        live = self.next_id - self.low
        if live + m <= len(self.pool):
            return
        rows = max(filled, 1)
        per_row = max(live / rows, 1.0)
        size = int(np.ceil(per_row * self.capacity * 1.01)) + m
        self._resize(max(size, live + m))

    def _resize(self, size: int) -> None:
        ids = np.arange(self.low, self.next_id, dtype=np.int64)
        pool = np.zeros((size, *self.unit_shape), np.uint8)
        if len(ids):
            pool[ids % size] = self.pool[ids % len(self.pool)]
        self.pool = pool
        self.pool_mirror = self._mirror_pool()

    # ------------------------------------------------------------------ reading
    def _frames(self, key: str, indices: np.ndarray) -> np.ndarray:
        ids = np.take(self.arrays[self._ids(key)], indices, axis=0)
        units = np.take(self.pool, ids % len(self.pool), axis=0)
        return units.reshape(*indices.shape, *self.obs_shape)

    def _gather(self, indices: np.ndarray, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        names = list(self.columns) if keys is None else self._check_keys(keys)
        out = {}
        for name in names:
            if name in FRAME_KEYS:
                out[name] = self._frames(name, indices)
            else:
                out[name] = np.take(self.arrays[name], indices, axis=0)
        return out

    def gather_torch(self, indices: torch.Tensor, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        if self.mirror is None:
            raise ConfigError("this storage has no device mirror; create it with device='cuda' (or mirror=True)")
        names = list(self.columns) if keys is None else self._check_keys(keys)
        out = {}
        for name in names:
            if name in FRAME_KEYS:
                ids = self.mirror[self._ids(name)][indices]
                units = self.pool_mirror[ids % len(self.pool)]
                out[name] = units.reshape(*indices.shape, *self.obs_shape)
            else:
                out[name] = self.mirror[name][indices]
        return out

    def __repr__(self) -> str:
        return (f"FrameStorage(size={self.size}/{self.capacity}, cursor={self.cursor}, pool={len(self.pool)} units "
                f"of {self.unit_shape}, columns={list(self.columns)})")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """:meth:`ColumnarStorage.state_dict` plus the live pool units (in id order) and the id counters."""
        state = super().state_dict()
        ids = np.arange(self.low, self.next_id, dtype=np.int64)
        state["frames"] = {
            "pool_size": len(self.pool), "low": self.low, "next_id": self.next_id,
            "units": _to_tensor(self.pool[ids % len(self.pool)] if len(self.pool) else self.pool),
            "last": None if self._last is None else [_to_tensor(a) for a in self._last],
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            frames = state["frames"]
            pool_size, low, next_id = int(frames["pool_size"]), int(frames["low"]), int(frames["next_id"])
            units = _to_numpy(frames["units"])
            last = frames["last"]
            columns = {k: (tuple(v["shape"]), np.dtype(v["dtype"])) for k, v in state["columns"].items()}
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"frame replay state is malformed ({err!r}); the checkpoint is corrupt") from None
        if columns != self.columns:
            raise CheckpointError(f"checkpoint replay columns {columns} differ from this buffer's {self.columns}; "
                                  "use the run's original environment and replay config")
        if units.shape != (next_id - low, *self.unit_shape):
            raise CheckpointError(f"checkpoint frame pool has shape {units.shape}, expected "
                                  f"{(next_id - low, *self.unit_shape)}; corrupt checkpoint")
        user = self.columns
        self.columns = {name: spec for name, spec in self._stored_columns().items()}
        try:
            super().load_state_dict({**state, "columns": {
                name: {"shape": list(shape), "dtype": dtype.str} for name, (shape, dtype) in self.columns.items()}})
        finally:
            self.columns = user
        self.low, self.next_id = low, next_id
        self.pool = np.zeros((pool_size, *self.unit_shape), np.uint8)
        if pool_size:
            self.pool[np.arange(low, next_id) % pool_size] = units
        self.pool_mirror = self._mirror_pool()
        self._last = None if last is None else (_to_numpy(last[0]).copy(), _to_numpy(last[1]).copy())

    def _stored_columns(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {name: (arr.shape[1:], arr.dtype) for name, arr in self.arrays.items()}
