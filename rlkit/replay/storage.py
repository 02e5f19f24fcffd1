"""Columnar ring storage: one preallocated numpy array per column, written in insertion order.

Row ``k`` of every column belongs to the same transition.  Rows are written at ``cursor`` and the cursor
wraps around at ``capacity``, so once full the storage keeps the newest ``capacity`` rows and overwrites
the oldest.  Row indices are *physical* positions in the arrays; the logical (insertion) order is
``oldest, oldest + 1, ..., cursor - 1`` modulo ``capacity`` with ``oldest = (cursor - size) % capacity``.
Samplers return physical indices; :meth:`ColumnarStorage.logical_to_physical` converts.

Device mirror.  With ``device`` set to an accelerator (e.g. ``"cuda"``) the storage also keeps a torch
copy of every column on that device, written on every :meth:`add` (a host->device copy of the new rows
only) and indexed on the device by :meth:`gather_torch`, so that sampled batches never travel
host->device: only the sampled index vector does.  The mirror holds each column in its batch dtype
(float columns as float32, bool as float32, ``uint8`` as ``uint8``, other integers as int64, see
:func:`batch_dtype`), and costs that much device memory on top of the host arrays.  On CPU there is no
mirror (``mirror=None`` decides by device type; ``mirror=True`` forces one, which tests use).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from rlkit.errors import CheckpointError, ConfigError, choices_hint

#: Names the Batch adds itself; a column may not use them.
RESERVED_NAMES = frozenset({"indices", "weights", "discount"})

ColumnSpec = tuple[tuple[int, ...], "np.dtype | str"]


def batch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype a storage column has in a :class:`~rlkit.replay.batch.Batch`.

    float* -> float32; bool -> float32 (0/1, ready for ``1 - terminated``); uint8 -> uint8 (pixels: eight
    times less memory than int64, scaled by the network); every other integer -> int64 (discrete actions,
    ids, usable as an index).
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return torch.float32
    if dtype.kind == "b":
        return torch.float32
    if dtype == np.uint8:
        return torch.uint8
    if dtype.kind in "iu":
        return torch.int64
    raise ConfigError(f"column dtype {dtype} is not supported; use a float, integer or bool dtype")


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """numpy -> torch without a copy (for state dicts, so that ``torch.load(weights_only=True)`` works)."""
    return torch.from_numpy(np.ascontiguousarray(array))


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class ColumnarStorage:
    """Preallocated ring arrays, one per column, plus the counters of the ring.

    Attributes: ``capacity``; ``size`` (rows filled, at most ``capacity``); ``cursor`` (next write
    position); ``added_total`` (rows ever added, counting overwritten ones); ``columns`` (name -> (row
    shape, numpy dtype)); ``arrays`` (name -> the numpy ring array, shape ``(capacity, *row_shape)``).
    """

    def __init__(
        self,
        capacity: int,
        columns: Mapping[str, ColumnSpec],
        device: str | torch.device | None = None,
        mirror: bool | None = None,
    ) -> None:
        capacity = int(capacity)
        if capacity < 1:
            raise ConfigError(f"replay capacity must be a positive number of rows, got {capacity}")
        if not columns:
            raise ConfigError("replay storage needs at least one column, e.g. {'obs': ((17,), 'float32')}")
        self.capacity = capacity
        self.columns: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, spec in columns.items():
            self.columns[name] = _parse_spec(name, spec)
        self.arrays: dict[str, np.ndarray] = {
            name: np.zeros((capacity, *shape), dtype=dtype) for name, (shape, dtype) in self.columns.items()
        }
        self.size = 0
        self.cursor = 0
        self.added_total = 0
        self._init_mirror(device, mirror)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_arrays(
        cls,
        columns: Mapping[str, np.ndarray],
        capacity: int | None = None,
        device: str | torch.device | None = None,
        mirror: bool | None = None,
    ) -> ColumnarStorage:
        """A full storage over existing arrays (e.g. an offline dataset's columns).

        When ``capacity`` is None or equals the number of rows, C-contiguous arrays are used as the ring
        arrays themselves, without a copy (the storage then writes into them on later ``add`` calls).
        A larger capacity copies the rows into fresh arrays and leaves room for more (offline-to-online).
        """
        if not columns:
            raise ConfigError("from_arrays needs at least one column")
        arrays = {name: np.asarray(arr) for name, arr in columns.items()}
        lengths = {name: (arr.shape[0] if arr.ndim else -1) for name, arr in arrays.items()}
        n = next(iter(lengths.values()))
        if n < 1 or any(v != n for v in lengths.values()):
            raise ConfigError(
                "from_arrays needs the same positive number of rows in every column, got "
                + ", ".join(f"{k}: {v}" for k, v in lengths.items())
            )
        capacity = n if capacity is None else int(capacity)
        if capacity < n:
            raise ConfigError(
                f"from_arrays got {n} rows but capacity {capacity}; use capacity >= {n} (or None)"
            )
        specs = {name: (arr.shape[1:], arr.dtype) for name, arr in arrays.items()}
        if capacity == n:
            storage = cls.__new__(cls)
            storage.capacity = capacity
            storage.columns = {name: _parse_spec(name, spec) for name, spec in specs.items()}
            storage.arrays = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
            storage.size = n
            storage.cursor = 0
            storage.added_total = n
            storage._init_mirror(device, mirror)
            storage._refresh_mirror()
            return storage
        storage = cls(capacity, specs, device=device, mirror=mirror)
        storage.add(**arrays)
        return storage

    def _init_mirror(self, device: str | torch.device | None, mirror: bool | None) -> None:
        self.device = torch.device(device) if device is not None else None
        if mirror is None:
            mirror = self.device is not None and self.device.type != "cpu"
        if mirror and self.device is None:
            raise ConfigError("a device mirror needs a device, e.g. device='cuda'")
        self.mirror: dict[str, torch.Tensor] | None = None
        if mirror:
            self.mirror = {
                name: torch.zeros((self.capacity, *shape), dtype=batch_dtype(dtype), device=self.device)
                for name, (shape, dtype) in self.columns.items()
            }

    def _refresh_mirror(self) -> None:
        if self.mirror is None:
            return
        for name, arr in self.arrays.items():
            self.mirror[name].copy_(torch.from_numpy(arr).to(self.mirror[name].dtype))

    # ------------------------------------------------------------------ writing
    def add(self, **columns: Any) -> np.ndarray:
        """Append rows (every column, leading dim ``n >= 1``; a single row may drop the leading dim).

        Returns the physical indices written, one per given row, in order (for ``n > capacity`` only the
        last ``capacity`` rows stay; the returned indices then repeat).  Unknown or missing columns,
        rows of the wrong shape, unequal row counts and lossy dtype casts raise :class:`ConfigError`.
        """
        values, n = self._validate_rows(columns)
        return self._write_rows(values, n)

    def _write_rows(self, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Write ``n`` validated rows of ``values`` at the cursor; advance the counters (see :meth:`add`)."""
        start = self.cursor
        indices = (start + np.arange(n, dtype=np.int64)) % self.capacity
        keep = min(n, self.capacity)
        first = (start + n - keep) % self.capacity  # where the kept rows begin
        head = min(keep, self.capacity - first)  # rows before the wrap
        for name, val in values.items():
            kept = val[n - keep :]
            self.arrays[name][first : first + head] = kept[:head]
            if keep > head:
                self.arrays[name][: keep - head] = kept[head:]
            if self.mirror is not None:
                dst = self.mirror[name]
                src = torch.from_numpy(np.ascontiguousarray(kept)).to(dst.device, dst.dtype)
                dst[first : first + head] = src[:head]
                if keep > head:
                    dst[: keep - head] = src[head:]
        self.cursor = (start + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.added_total += n
        return indices

    def _validate_rows(self, columns: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        unknown = set(columns) - set(self.columns)
        if unknown:
            raise ConfigError(
                f"unknown column(s) {sorted(unknown)} for this replay storage; its columns are: "
                f"{choices_hint(self.columns)}"
            )
        missing = set(self.columns) - set(columns)
        if missing:
            raise ConfigError(
                f"add() is missing column(s) {sorted(missing)}; every column needs a value per row"
            )
        values: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for name, value in columns.items():
            shape, dtype = self.columns[name]
            arr = _to_numpy(value)
            if arr.ndim == len(shape):
                arr = arr[None]  # a single row
            if arr.ndim != len(shape) + 1 or arr.shape[1:] != shape:
                got = arr.shape[1:] if arr.ndim == len(shape) + 1 else arr.shape
                raise ConfigError(f"column '{name}' expects rows of shape {shape}, got {tuple(got)}")
            if arr.shape[0] < 1:
                raise ConfigError(f"column '{name}' got 0 rows; add() needs at least one row")
            if arr.dtype != dtype and not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                raise ConfigError(
                    f"column '{name}' stores {dtype} but got {arr.dtype}; cast the values explicitly"
                )
            values[name] = arr
            counts[name] = arr.shape[0]
        n = next(iter(counts.values()))
        if any(c != n for c in counts.values()):
            raise ConfigError(
                "add() got different numbers of rows per column: "
                + ", ".join(f"{k}: {v}" for k, v in counts.items())
            )
        return values, n

    # ------------------------------------------------------------------ reading
    def get(self, indices: np.ndarray, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Rows at physical ``indices`` (any shape ``S``) of each column: arrays of shape ``(*S, *row)``."""
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            raise IndexError(
                f"row indices must lie in [0, {self.size}); got [{indices.min()}, {indices.max()}]"
            )
        return self._gather(indices, keys)

    def _gather(self, indices: np.ndarray, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """:meth:`get` without the bounds check (samplers only return valid rows)."""
        names = self.columns if keys is None else self._check_keys(keys)
        # np.take along axis 0 is about twice as fast as arr[indices] for 2-D arrays.
        return {name: np.take(self.arrays[name], indices, axis=0) for name in names}

    def gather_torch(
        self, indices: torch.Tensor, keys: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Rows of the device mirror at ``indices`` (a tensor on the mirror's device)."""
        if self.mirror is None:
            raise ConfigError(
                "this storage has no device mirror; create it with device='cuda' (or mirror=True)"
            )
        names = self.columns if keys is None else self._check_keys(keys)
        if indices.dim() == 1:
            return {name: self.mirror[name].index_select(0, indices) for name in names}
        return {name: self.mirror[name][indices] for name in names}

    def _check_keys(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        for key in keys:
            if key not in self.columns:
                raise ConfigError(f"unknown column '{key}'; the storage holds: {choices_hint(self.columns)}")
        return keys

    @property
    def oldest(self) -> int:
        """Physical index of the oldest row still stored."""
        return (self.cursor - self.size) % self.capacity

    def logical_to_physical(self, positions: np.ndarray) -> np.ndarray:
        """Insertion-order positions (0 = oldest stored row) -> physical row indices."""
        return (np.asarray(positions) + self.oldest) % self.capacity

    def physical_to_logical(self, indices: np.ndarray) -> np.ndarray:
        """Physical row indices -> insertion-order positions (0 = oldest stored row)."""
        return (np.asarray(indices) - self.oldest) % self.capacity

    def nbytes(self) -> int:
        """Host bytes of the ring arrays (the whole capacity, filled or not)."""
        return int(sum(a.nbytes for a in self.arrays.values()))

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        cols = ", ".join(f"{k}: {s} {d}" for k, (s, d) in self.columns.items())
        return f"ColumnarStorage(size={self.size}/{self.capacity}, cursor={self.cursor}, columns={{{cols}}})"

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Filled rows (``[:size]``, physical order) and counters; arrays as torch tensors sharing memory.

        Compact: an unfilled storage saves only its filled prefix.  The tensors alias the ring arrays, so
        save the dict before the next :meth:`add`.  ``torch.load(..., weights_only=True)`` can read it.
        """
        return {
            "capacity": self.capacity,
            "columns": {
                name: {"shape": list(shape), "dtype": dtype.str}
                for name, (shape, dtype) in self.columns.items()
            },
            "size": self.size,
            "cursor": self.cursor,
            "added_total": self.added_total,
            "data": {name: _to_tensor(arr[: self.size]) for name, arr in self.arrays.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore rows and counters saved by :meth:`state_dict` (same capacity and columns)."""
        try:
            capacity = int(state["capacity"])
            columns = {k: (tuple(v["shape"]), np.dtype(v["dtype"])) for k, v in state["columns"].items()}
            size, cursor, added = int(state["size"]), int(state["cursor"]), int(state["added_total"])
            data = {k: _to_numpy(v) for k, v in state["data"].items()}
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"replay storage state is malformed ({err!r}); the checkpoint is corrupt"
            ) from None
        if capacity != self.capacity:
            raise CheckpointError(
                f"checkpoint replay capacity {capacity} differs from this buffer's {self.capacity}; "
                "use the run's original replay config"
            )
        if columns != self.columns:
            raise CheckpointError(
                f"checkpoint replay columns {columns} differ from this buffer's {self.columns}; "
                "use the run's original environment and replay config"
            )
        if not (0 <= size <= capacity and 0 <= cursor < capacity and added >= size):
            raise CheckpointError(
                f"replay counters out of range (size={size}, cursor={cursor}); corrupt checkpoint"
            )
        for name, arr in data.items():
            if arr.shape != (size, *columns[name][0]):
                raise CheckpointError(
                    f"checkpoint column '{name}' has shape {arr.shape}, expected {(size, *columns[name][0])}"
                )
            self.arrays[name][:size] = arr
            self.arrays[name][size:] = 0
        self.size, self.cursor, self.added_total = size, cursor, added
        self._refresh_mirror()


def _parse_spec(name: str, spec: Any) -> tuple[tuple[int, ...], np.dtype]:
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"column name {name!r} must be a Python identifier (it becomes batch.{name})")
    if name in RESERVED_NAMES:
        raise ConfigError(
            f"column name '{name}' is reserved for the batch ({', '.join(sorted(RESERVED_NAMES))})"
        )
    try:
        shape, dtype = spec
        shape = tuple(int(d) for d in shape)
        dtype = np.dtype(dtype)
    except (TypeError, ValueError):
        raise ConfigError(
            f"column '{name}' spec must be (row_shape, dtype), e.g. ((17,), 'float32'); got {spec!r}"
        ) from None
    if any(d < 0 for d in shape):
        raise ConfigError(f"column '{name}' has a negative dimension in shape {shape}")
    batch_dtype(dtype)  # refuses unsupported dtypes early
    return shape, dtype
