"""The replay buffer: one :class:`ColumnarStorage`, one main :class:`Sampler` (plus named extra ones).

``sample(n)`` returns a :class:`Batch` of torch tensors on the buffer's device; ``update_priorities``
feeds new priorities back to a prioritized sampler.  Extra samplers share the storage, e.g. OPER's
decoupled training (Yue et al. 2023, released code's ``two_sampler``: the critic on uniform batches, the
actor on prioritized ones): ``ReplayBuffer(storage, WeightedSampler(p), extra_samplers={"uniform": UniformSampler()})``
and ``buffer.sample(256, sampler="uniform")``.

n-step returns (URLB, Laskin et al. 2021, released replay buffer).  With ``nstep > 1`` a sampled row ``t`` becomes the
n-step transition ``(s_t, a_t, R_t, Gamma_t, s_{t+m})``: ``R_t = sum_{k<m} gamma^k r_{t+k}`` and
``Gamma_t = gamma^m (1 - terminated_{t+m-1})``, where ``m <= n`` stops early at the first episode end
(terminated or truncated: a truncated episode bootstraps from its own ``next_obs``) and at the newest
stored row (whose successor is not stored yet).  The batch's ``reward`` holds ``R_t``, ``next_obs``,
``terminated`` and ``truncated`` come from row ``t + m - 1``, and ``discount`` holds ``Gamma_t``.  URLB
instead never starts a sample within ``n - 1`` steps of an episode's end; with its fixed-length DMC
episodes the two differ only in those last starts, which here get a shorter, still exact, return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from rlkit.data.dataset import Dataset
from rlkit.errors import CheckpointError, ConfigError, choices_hint
from rlkit.replay.batch import Batch
from rlkit.replay.samplers import Sampler, make_sampler
from rlkit.replay.storage import ColumnarStorage, batch_dtype

__all__ = ["ReplayBuffer", "make_sampler", "nstep_targets", "transition_columns", "window_rows"]


def transition_columns(
    obs_shape: tuple[int, ...],
    action_shape: tuple[int, ...],
    obs_dtype: str | np.dtype = "float32",
    action_dtype: str | np.dtype = "float32",
    extra: Mapping[str, tuple[tuple[int, ...], str | np.dtype]] | None = None,
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The standard transition columns: obs, action, reward, next_obs, terminated, truncated (+ extra).

    Discrete actions: ``action_shape=()`` and ``action_dtype="int64"``.
    """
    cols = {
        "obs": (tuple(obs_shape), np.dtype(obs_dtype)),
        "action": (tuple(action_shape), np.dtype(action_dtype)),
        "reward": ((), np.dtype(np.float32)),
        "next_obs": (tuple(obs_shape), np.dtype(obs_dtype)),
        "terminated": ((), np.dtype(np.float32)),
        "truncated": ((), np.dtype(np.float32)),
    }
    for name, (shape, dtype) in (extra or {}).items():
        cols[name] = (tuple(shape), np.dtype(dtype))
    return cols


def nstep_targets(
    storage: ColumnarStorage,
    indices: np.ndarray,
    nstep: int,
    gamma: float,
    done_keys: Iterable[str] = ("terminated", "truncated"),
    reward_key: str = "reward",
    terminal_key: str = "terminated",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step return of each start row (see the module docstring).

    Returns ``(last, R, Gamma)``: the physical index of the last row used (``t + m - 1``), the discounted
    reward sum ``R_t = sum_{k<m} gamma^k r_{t+k}`` (float32, shape of the reward rows) and
    ``Gamma_t = gamma^m (1 - terminated_last)`` (float32).
    """
    n = len(indices)
    steps = np.arange(nstep)
    # step k counts if it is stored and no episode ended at an earlier step (a prefix of the window)
    rows, included = window_rows(storage, indices, nstep, done_keys)
    m = included.sum(axis=1)  # >= 1: step 0 always counts
    discounts = np.where(included, gamma**steps, 0.0)
    rewards = np.take(storage.arrays[reward_key], rows, axis=0).astype(np.float64)
    returns = (rewards * discounts.reshape(discounts.shape + (1,) * (rewards.ndim - 2))).sum(axis=1)
    last = rows[np.arange(n), m - 1]
    terminal = (
        storage.arrays[terminal_key][last].reshape(n, -1).any(axis=-1)
        if terminal_key in storage.columns
        else 0
    )
    bootstrap = (gamma**m) * (1.0 - np.asarray(terminal, dtype=np.float64))
    return last, returns.astype(np.float32), bootstrap.astype(np.float32)


def window_rows(
    storage: ColumnarStorage,
    indices: np.ndarray,
    length: int,
    done_keys: Iterable[str] = ("terminated", "truncated"),
    end_inclusive: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``t, t+1, ..., t+length-1`` after each start row ``t`` and whether each lies in ``t``'s episode.

    Returns ``(rows, valid)`` of shape ``(n, length)``: physical indices (clamped to the newest row where the
    window runs past it) and ``valid[:, k]``, true iff row ``t+k`` is stored and no episode ends (any of
    ``done_keys`` nonzero) at rows ``t .. t+k-1``.  Multi-step latent losses (SPR, Schwarzer et al. 2021,
    Sec. 2.2: terms past a terminal are masked) multiply their step-``k`` terms by ``valid[:, k]``.
    ``end_inclusive``: the episode's last row (the one whose own done flag is set) is invalid too, i.e. step
    ``k`` needs no episode end at ``t .. t+k`` (mila-iqia/spr's ``src/algos.py``: ``1 - sign(cumsum(done))``).
    """
    n = len(indices)
    steps = np.arange(length)
    pos = storage.physical_to_logical(np.asarray(indices, dtype=np.int64))[:, None] + steps
    exists = pos < storage.size
    rows = storage.logical_to_physical(np.minimum(pos, storage.size - 1))
    done = np.zeros(rows.shape, dtype=bool)
    for key in done_keys:
        if key in storage.columns:
            done |= np.take(storage.arrays[key], rows, axis=0).reshape(n, length, -1).any(axis=-1)
    ended = np.cumsum(done, axis=1) - (0 if end_inclusive else done) > 0
    return rows, exists & ~ended


class ReplayBuffer:
    """Columnar storage + samplers -> torch batches on ``device``.

    ``device``: where batches go.  If the storage has a device mirror on that device, columns are gathered
    there (no host->device copy of the batch); otherwise they are gathered in numpy and moved.
    ``nstep``/``gamma``: n-step transitions (module docstring) for samplers of single rows; windows of a
    sequence sampler are returned as stored.
    """

    #: Columns that an n-step transition takes from its last row rather than its first.
    NEXT_KEYS = ("next_obs", "terminated", "truncated")

    def __init__(
        self,
        storage: ColumnarStorage,
        sampler: Sampler,
        device: str | torch.device = "cpu",
        extra_samplers: Mapping[str, Sampler] | None = None,
        nstep: int = 1,
        gamma: float = 0.99,
    ) -> None:
        self.storage = storage
        self.sampler = sampler
        self.extra_samplers = dict(extra_samplers or {})
        self.device = torch.device(device)
        self.nstep = int(nstep)
        self.gamma = float(gamma)
        if self.nstep < 1:
            raise ConfigError(f"nstep must be >= 1, got {nstep}")
        if self.nstep > 1:
            for key in ("reward", "next_obs"):
                if key not in storage.columns:
                    raise ConfigError(
                        f"n-step returns need a '{key}' column; the storage holds {list(storage.columns)}"
                    )
        for s in (sampler, *self.extra_samplers.values()):
            if not isinstance(s, Sampler):
                raise ConfigError(
                    f"expected a Sampler, got {type(s).__name__}; build one with make_sampler(name)"
                )
            s.bind(storage)
        self._dtypes = {name: batch_dtype(dtype) for name, (_, dtype) in storage.columns.items()}
        self._on_mirror = storage.mirror is not None and _same_device(storage.device, self.device)

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        sampler: Sampler,
        capacity: int | None = None,
        device: str | torch.device = "cpu",
        mirror: bool | None = None,
        **kwargs: Any,
    ) -> ReplayBuffer:
        """A buffer over an offline :class:`~rlkit.data.Dataset` (rows in dataset order, no copy when
        ``capacity`` is None); ``capacity`` larger than the dataset leaves room for online rows."""
        storage = ColumnarStorage.from_arrays(
            dataset.columns(), capacity=capacity, device=device, mirror=mirror
        )
        return cls(storage, sampler, device=device, **kwargs)

    # ------------------------------------------------------------------ writing
    def add(self, **columns: Any) -> np.ndarray:
        """Append rows to the storage and tell every sampler; returns the physical indices written."""
        indices = self.storage.add(**columns)
        self.sampler.on_add(indices)
        for s in self.extra_samplers.values():
            s.on_add(indices)
        return indices

    def __len__(self) -> int:
        return self.storage.size

    def _get_sampler(self, name: str | None) -> Sampler:
        if name is None:
            return self.sampler
        try:
            return self.extra_samplers[name]
        except KeyError:
            raise ConfigError(
                f"unknown sampler '{name}' for this buffer; its extra samplers are: "
                f"{choices_hint(self.extra_samplers) or '(none)'}"
            ) from None

    # ------------------------------------------------------------------ reading
    def sample(self, n: int, sampler: str | None = None, keys: Iterable[str] | None = None) -> Batch:
        """``n`` samples (or ``n`` windows of ``T`` rows from a sequence sampler) as a :class:`Batch`.

        Columns have shape ``(n, *row)`` (sequences: ``(n, T, *row)``); ``indices`` has the sampler's
        index shape and ``weights`` shape ``(n,)``.  ``keys`` restricts the columns returned.
        """
        indices, weights = self._get_sampler(sampler).sample(n, self.storage)
        keys = list(self.storage.columns) if keys is None else list(keys)
        nstep = self.nstep > 1 and indices.ndim == 1
        if nstep:
            last, returns, bootstrap = nstep_targets(self.storage, indices, self.nstep, self.gamma)
            first_keys = [k for k in keys if k not in self.NEXT_KEYS and k != "reward"]
            last_keys = [k for k in keys if k in self.NEXT_KEYS]
        else:
            first_keys, last_keys = keys, []
        batch = Batch(self._gather(indices, first_keys))
        if nstep:
            batch.update(self._gather(last, last_keys))
            if "reward" in keys:
                batch["reward"] = self._tensor(returns)
            batch["discount"] = self._tensor(bootstrap)
            batch = Batch({k: batch[k] for k in [*keys, "discount"]})  # column order as declared
        batch["indices"] = self._tensor(indices)
        if weights is None:
            batch["weights"] = torch.ones(indices.shape[0], dtype=torch.float32, device=self.device)
        else:
            batch["weights"] = self._tensor(weights)
        return batch

    def gather(self, rows: np.ndarray, keys: Iterable[str]) -> Batch:
        """The ``keys`` columns at physical ``rows`` (any shape) as a :class:`Batch` on the buffer's device."""
        return Batch(self._gather(np.asarray(rows, dtype=np.int64), list(keys)))

    def _gather(self, indices: np.ndarray, keys: list[str]) -> dict[str, torch.Tensor]:
        if not keys:
            return {}
        if self._on_mirror:
            return self.storage.gather_torch(self._tensor(indices), keys)
        out = {}
        for name, arr in self.storage._gather(indices, keys).items():
            t = torch.from_numpy(arr)
            dtype = self._dtypes[name]
            if t.dtype != dtype:
                t = t.to(dtype)
            out[name] = t if self.device.type == "cpu" else t.to(self.device)
        return out

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        return t if self.device.type == "cpu" else t.to(self.device)

    # ------------------------------------------------------------------ priorities
    def update_priorities(self, indices: Any, priorities: Any, sampler: str | None = None) -> None:
        """New priorities (e.g. ``|TD error|``) for sampled ``indices``; torch tensors are detached and
        brought to the CPU here (one device sync; do it after the optimizer step)."""
        self._get_sampler(sampler).update_priorities(_host(indices), _host(priorities))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Storage rows and counters, and every sampler's state including its RNG (exact resume)."""
        return {
            "storage": self.storage.state_dict(),
            "sampler": self.sampler.state_dict(),
            "extra_samplers": {name: s.state_dict() for name, s in self.extra_samplers.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next :meth:`sample` returns what the saved buffer's would."""
        try:
            extra = state["extra_samplers"]
            storage_state, sampler_state = state["storage"], state["sampler"]
        except (KeyError, TypeError):
            raise CheckpointError(
                "replay buffer state lacks 'storage'/'sampler'; corrupt checkpoint"
            ) from None
        if set(extra) != set(self.extra_samplers):
            raise CheckpointError(
                f"checkpoint has extra samplers {sorted(extra)} but this buffer has "
                f"{sorted(self.extra_samplers)}; use the run's original replay config"
            )
        self.storage.load_state_dict(storage_state)
        self.sampler.load_state_dict(sampler_state)
        for name, s in self.extra_samplers.items():
            s.load_state_dict(extra[name])

    def __repr__(self) -> str:
        extra = f", extra_samplers={sorted(self.extra_samplers)}" if self.extra_samplers else ""
        sampler = type(self.sampler).__name__
        return f"ReplayBuffer({self.storage!r}, sampler={sampler}{extra}, device={self.device})"


def _host(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _same_device(a: torch.device | None, b: torch.device) -> bool:
    if a is None or a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return True
