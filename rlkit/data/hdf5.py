"""Read and write the raw D4RL hdf5 layout.

A D4RL file holds one row per environment step, in the order the steps were collected::

    observations        (N, obs_dim)   float32   s_t
    actions             (N, act_dim)   float32   a_t
    rewards             (N,)           float32   r_t
    terminals           (N,)           bool      the episode ended at s_{t+1} (true termination)
    timeouts            (N,)           bool      episode cut after step t (time limit); absent in old files
    next_observations   (N, obs_dim)   float32   s_{t+1}; optional (v2 locomotion files have it)
    infos/*             (N, ...)                 per-step extras (qpos, qvel, action_log_probs, goal)
    metadata/*          scalars or arrays        collection metadata (algorithm, policy weights, ...)

Row ``t+1`` of ``observations`` is the state after row ``t`` unless row ``t`` ended an episode, in which
case it is the first state of the next episode.  This module only moves arrays between numpy and disk;
D4RL's q-learning transform lives in :mod:`rlkit.data.d4rl`.  Local collection writes its episodes with
:func:`write_d4rl`, so a collected dataset can be re-read exactly like a downloaded one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.errors import DatasetError
from rlkit.utils import atomic_path

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations")
PROVENANCE_KEY = "metadata/rlkit_provenance"


def _h5py():
    import h5py  # a core dependency; imported lazily so `import rlkit.data` stays cheap

    return h5py


def _unreadable(path: Path, dataset_id: str | None, err: Exception) -> DatasetError:
    fix = f"run `rlkit data download {dataset_id}`" if dataset_id else "download or write it again"
    return DatasetError(
        f"'{path}' is not a readable HDF5 file (truncated download?) ({type(err).__name__}: {err}); "
        f"delete it and {fix}"
    )


@contextmanager
def open_hdf5(path: str | os.PathLike, dataset_id: str | None = None) -> Iterator[Any]:
    """Open ``path`` read-only; a missing, truncated or corrupt file becomes one :class:`DatasetError`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file '{path}' does not exist")
    h5py = _h5py()
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise _unreadable(path, dataset_id, err) from err
    try:
        yield handle
    finally:
        handle.close()


def _visit_datasets(handle: Any) -> dict[str, Any]:
    h5py = _h5py()
    found: dict[str, Any] = {}

    def visitor(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            found[name] = item

    handle.visititems(visitor)
    return found


def list_keys(
    path: str | os.PathLike, dataset_id: str | None = None
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every array in the file (nested names such as ``infos/qpos``) with its shape and dtype."""
    with open_hdf5(path, dataset_id) as handle:
        return {name: (tuple(ds.shape), str(ds.dtype)) for name, ds in _visit_datasets(handle).items()}


def _read_dataset(ds: Any) -> Any:
    value = ds[()]  # arrays and scalars alike (D4RL reads arrays with [:] and scalars with [()])
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def read_raw(
    path: str | os.PathLike,
    keys: Iterable[str] | None = None,
    dataset_id: str | None = None,
) -> dict[str, Any]:
    """Read arrays from a D4RL-layout file.

    ``keys=None`` reads every array (including ``infos/*`` and ``metadata/*``); otherwise only the named
    keys that exist are read (absent optional keys are simply left out, so callers can test membership
    the way D4RL does with ``'timeouts' in dataset``).
    """
    path = Path(path)
    with open_hdf5(path, dataset_id) as handle:
        available = _visit_datasets(handle)
        wanted = list(available) if keys is None else [k for k in keys if k in available]
        out: dict[str, Any] = {}
        for key in wanted:
            try:
                out[key] = _read_dataset(available[key])
            except OSError as err:  # truncated data blocks surface only when read
                raise _unreadable(path, dataset_id, err) from err
        return out


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance dict rlkit stored in ``metadata/rlkit_provenance`` (files it wrote), else ``None``."""
    raw = read_raw(path, [PROVENANCE_KEY])
    if PROVENANCE_KEY not in raw:
        return None
    try:
        value = json.loads(raw[PROVENANCE_KEY])
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_raw(path: str | os.PathLike, data: Mapping[str, Any], compression: str | None = None) -> Path:
    """Write ``{key: array}`` to ``path`` atomically (temp file in the same directory, then ``os.replace``).

    Keys containing ``/`` become nested groups (``infos/qpos`` -> group ``infos``, dataset ``qpos``), exactly
    as in D4RL files.  Strings are stored as UTF-8 scalars; ``compression`` applies to arrays only.
    """
    h5py = _h5py()
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for key, value in data.items():
            if isinstance(value, str):
                handle.create_dataset(key, data=value, dtype=h5py.string_dtype("utf-8"))
                continue
            arr = np.asarray(value)
            if arr.ndim == 0:
                handle.create_dataset(key, data=arr)
            else:
                handle.create_dataset(key, data=arr, compression=compression)
    return path


def write_d4rl(
    path: str | os.PathLike,
    *,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    next_observations: np.ndarray | None = None,
    infos: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> Path:
    """Write step-ordered episodes in the exact D4RL layout (the writer local collection uses).

    Rows follow D4RL's convention: one row per environment step; ``terminals[t]`` marks a true
    termination, ``timeouts[t]`` marks the last step of an episode cut by the time limit (D4RL's
    q-learning transform drops that row, since its successor is not stored).  ``provenance`` is stored
    as JSON in ``metadata/rlkit_provenance`` and restored by :func:`rlkit.data.sources.load`.
    """
    obs = np.asarray(observations, dtype=np.float32)
    arrays: dict[str, Any] = {
        "observations": obs,
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32).reshape(-1),
        "terminals": np.asarray(terminals).reshape(-1).astype(bool),
        "timeouts": np.asarray(timeouts).reshape(-1).astype(bool),
    }
    if next_observations is not None:
        arrays["next_observations"] = np.asarray(next_observations, dtype=np.float32)
    for name, value in (infos or {}).items():
        arrays[f"infos/{name}"] = np.asarray(value)
    n = len(arrays["rewards"])
    for key, arr in arrays.items():
        if arr.shape[0] != n:
            raise DatasetError(
                f"dataset key '{key}' has {arr.shape[0]} rows but 'rewards' has {n}; "
                "every array needs one row per step"
            )
    for key in ("observations", "actions"):
        if arrays[key].ndim < 2:
            raise DatasetError(
                f"dataset key '{key}' must be 2-D (rows, features), got shape {arrays[key].shape}"
            )
    for name, value in (metadata or {}).items():
        arrays[f"metadata/{name}"] = value
    if provenance is not None:
        arrays[PROVENANCE_KEY] = json.dumps(dict(provenance), sort_keys=True, default=str)
    return write_raw(path, arrays, compression=compression)
