"""Samplers: which storage rows a minibatch uses, and with what importance weights.

A sampler draws physical row indices of a :class:`~rlkit.replay.storage.ColumnarStorage` with its own
``numpy.random.Generator`` (PCG64), whose state is part of :meth:`Sampler.state_dict`, so a resumed run
draws exactly the batches the uninterrupted run would have drawn.

* :class:`UniformSampler` -- ``i ~ U{0, ..., N-1}``.
* :class:`PrioritizedSampler` -- proportional PER (Schaul et al. 2016, eq. 1 and section 3.4):
  ``P(i) = p_i^alpha / sum_k p_k^alpha`` with ``p_i = |delta_i| + eps``, importance weights
  ``w_i = (N P(i))^-beta / max_j w_j``, beta annealed linearly to ``beta_final``.
* :class:`WeightedSampler` -- static probabilities ``p`` over the rows (OPER-A / OPER-R, Yue et al. 2023;
  ReD, Yue et al. 2022): resampling ``i ~ p`` or reweighting (uniform ``i``, ``w_i = N p_i``).
* :class:`SequenceSampler` -- windows of ``T`` consecutive rows in insertion order (world models,
  STORM's released replay buffer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlkit.errors import CheckpointError, ConfigError, choices_hint
from rlkit.replay.storage import ColumnarStorage, _to_numpy, _to_tensor
from rlkit.replay.sumtree import SumTree


class Sampler:
    """Base class: an own PCG64 generator, hooks for adds and priority updates, and a state dict."""

    #: Short name used by :func:`make_sampler` and in error messages.
    name = "base"
    #: whether the sampler learns priorities from the learner (``update_priorities``): the regime then
    #: asks the algorithm for per-row TD-error priorities, and refuses algorithms that cannot give them
    learns_priorities: bool = False

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def bind(self, storage: ColumnarStorage) -> None:
        """Called once by the replay buffer with its storage (validation, lazy allocation)."""

    def sample(self, n: int, storage: ColumnarStorage) -> tuple[np.ndarray, np.ndarray | None]:
        """``n`` physical row indices (int64) and importance weights (float32, or None for all ones)."""
        raise NotImplementedError

    def on_add(self, indices: np.ndarray) -> None:
        """Rows at ``indices`` were just (over)written."""

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Only prioritized samplers have priorities to update; the others refuse clearly."""
        raise ConfigError(
            f"the '{self.name}' sampler has no priorities to update; use sampler=per for prioritized "
            "replay (static OPER/ReD priorities go through WeightedSampler.set_priorities)"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("type") != type(self).__name__:
            raise CheckpointError(
                f"checkpoint holds a {state.get('type')} sampler but this run uses {type(self).__name__}; "
                "use the run's original sampler config"
            )
        self.rng.bit_generator.state = state["rng"]

    @staticmethod
    def _check_n(n: int, storage: ColumnarStorage) -> int:
        n = int(n)
        if n < 1:
            raise ConfigError(f"batch size must be positive, got {n}")
        if storage.size == 0:
            raise ConfigError("cannot sample from an empty replay buffer; add transitions first")
        return n


class UniformSampler(Sampler):
    """Rows uniformly at random with replacement: ``i ~ U{0, ..., N-1}``, no weights."""

    name = "uniform"

    def sample(self, n: int, storage: ColumnarStorage) -> tuple[np.ndarray, None]:
        n = self._check_n(n, storage)
        return self.rng.integers(0, storage.size, n, dtype=np.int64), None


WEIGHT_NORMS = ("buffer_min", "batch_max")


class PrioritizedSampler(Sampler):
    """Proportional prioritized experience replay (Schaul et al. 2016) on a vectorized :class:`SumTree`.

    * ``P(i) = p_i^alpha / sum_k p_k^alpha`` (eq. 1), ``p_i = |delta_i| + eps`` from
      :meth:`update_priorities`; new rows get the largest ``p`` seen so far (Algorithm 1, line 6; 1.0 at
      first) so that every transition is replayed at least once soon after it arrives.
    * Importance weights ``w_i = (N P(i))^-beta / max_j (N P(j))^-beta = (p_i^alpha / min_j p_j^alpha)^-beta``
      (section 3.4): normalised by the largest weight over the whole buffer (the min tree), so weights
      only scale updates down.  ``weight_norm="batch_max"`` normalises by the largest weight in the sampled
      batch instead, ``w_i = (p_i^alpha + 1e-5)^-beta / max_{j in batch} (p_j^alpha + 1e-5)^-beta`` (rlpyt's
      prioritized replay as mila-iqia/spr's ``src/rlpyt_buffer.py`` samples it, 1e-5 included).
    * ``initial_priority``: a fixed ``p`` for new rows instead of the running maximum (rlpyt's
      ``default_priority``, which SPR leaves at ``delta_clip = 1``: new rows enter with leaf ``1^alpha``).
    * ``beta`` goes linearly from ``beta`` to ``beta_final`` over ``beta_steps`` calls to :meth:`sample`
      (``beta_steps = 0``: constant ``beta``).
    * Stratified sampling (Appendix B.2.1): the mass is cut into ``n`` equal segments, one draw in each;
      the returned indices are therefore sorted.  ``stratified=False`` draws i.i.d. (also returned in
      increasing order, see :meth:`SumTree.sample`).

    Priorities of rows that were overwritten between ``sample`` and ``update_priorities`` are set anyway
    (as in the reference implementations); the regimes update right after sampling.
    """

    name = "per"
    learns_priorities = True

    def __init__(
        self,
        capacity: int | None = None,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_final: float = 1.0,
        beta_steps: int = 0,
        eps: float = 1e-6,
        seed: int | None = None,
        stratified: bool = True,
        weight_norm: str = "buffer_min",
        initial_priority: float | None = None,
    ) -> None:
        super().__init__(seed)
        if weight_norm not in WEIGHT_NORMS:
            raise ConfigError(f"PER weight_norm={weight_norm!r}; use one of {' | '.join(WEIGHT_NORMS)}")
        if not alpha >= 0:
            raise ConfigError(f"PER alpha must be >= 0, got {alpha}")
        if not (0 <= beta <= 1 and 0 <= beta_final <= 1):
            raise ConfigError(f"PER beta and beta_final must lie in [0, 1], got {beta} and {beta_final}")
        if int(beta_steps) < 0:
            raise ConfigError(f"PER beta_steps must be >= 0 (0 = constant beta), got {beta_steps}")
        if not eps > 0:
            raise ConfigError(f"PER eps must be > 0 so that every row keeps a chance, got {eps}")
        self.alpha = float(alpha)
        self.beta_initial = float(beta)
        self.beta_final = float(beta_final)
        self.beta_steps = int(beta_steps)
        self.eps = float(eps)
        self.stratified = bool(stratified)
        self.weight_norm = weight_norm
        if initial_priority is not None and not initial_priority > 0:
            raise ConfigError(f"PER initial_priority must be > 0 (null: the running maximum), got {initial_priority}")
        self.initial_priority = None if initial_priority is None else float(initial_priority)
        self.max_priority = 1.0
        self.sample_calls = 0
        self.tree: SumTree | None = None
        if capacity is not None:
            self.tree = SumTree(int(capacity), track_min=True)

    @property
    def capacity(self) -> int | None:
        return None if self.tree is None else self.tree.capacity

    @property
    def beta(self) -> float:
        """The current importance-sampling exponent."""
        if self.beta_steps == 0:
            return self.beta_initial
        frac = min(1.0, self.sample_calls / self.beta_steps)
        return self.beta_initial + frac * (self.beta_final - self.beta_initial)

    def bind(self, storage: ColumnarStorage) -> None:
        if self.tree is None:
            self.tree = SumTree(storage.capacity, track_min=True)
        elif self.tree.capacity != storage.capacity:
            raise ConfigError(
                f"PER sampler capacity {self.tree.capacity} differs from the storage capacity "
                f"{storage.capacity}; leave the sampler's capacity unset to take the storage's"
            )
        if storage.size and self.tree.total == 0:  # rows that were there before the sampler
            self.on_add(np.arange(storage.size))

    def _require_tree(self) -> SumTree:
        if self.tree is None:
            raise ConfigError(
                "PrioritizedSampler has no capacity yet; give capacity= or use it in a ReplayBuffer"
            )
        return self.tree

    def on_add(self, indices: np.ndarray) -> None:
        p = self.max_priority if self.initial_priority is None else self.initial_priority
        self._require_tree().update(indices, p**self.alpha, positive=True)

    def sample(self, n: int, storage: ColumnarStorage) -> tuple[np.ndarray, np.ndarray]:
        n = self._check_n(n, storage)
        tree = self._require_tree()
        if self.stratified:
            indices, leaf = tree.sample_stratified(n, self.rng)
        else:
            indices, leaf = tree.sample(n, self.rng)
        beta = self.beta
        self.sample_calls += 1
        if self.weight_norm == "batch_max":
            w = np.power(leaf + 1e-5, -beta)
            return indices, (w / w.max()).astype(np.float32)
        # w_i / max_j w_j = (P(i) / min_j P(j))^-beta; N and the total cancel.
        weights = np.power(leaf * (1.0 / tree.min), -beta).astype(np.float32)
        return indices, weights

    def priority_stats(self, size: int) -> tuple[float, float]:
        """``(mean_i p_i, max_i p_i)`` over the first ``size`` rows (``p = leaf^(1/alpha)``; O(size))."""
        leaves = self._require_tree().leaves[:size]
        if self.alpha == 0 or not leaves.size:
            return self.max_priority, self.max_priority
        p = np.power(leaves, 1.0 / self.alpha)
        return float(p.mean()), float(p.max())

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``p_i = priorities_i + eps`` (pass ``|TD error|``, >= 0) for the sampled ``indices``."""
        tree = self._require_tree()
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if priorities.shape != indices.shape:
            raise ConfigError(
                f"update_priorities got {indices.size} indices but {priorities.size} priorities; pass one "
                "priority per sampled row"
            )
        if indices.size == 0:
            return
        lowest, highest = priorities.min(), priorities.max()
        if not (lowest >= 0 and highest < np.inf):  # also catches NaN
            bad = int(np.flatnonzero(~(np.isfinite(priorities) & (priorities >= 0)))[0])
            raise ConfigError(
                f"priorities must be finite and >= 0 (got {priorities[bad]} at position {bad}); "
                "pass |TD error|"
            )
        p = priorities + self.eps
        self.max_priority = max(self.max_priority, float(highest) + self.eps)
        tree.update(indices, np.power(p, self.alpha, out=p), positive=True)

    def state_dict(self) -> dict[str, Any]:
        tree = self._require_tree()
        state = super().state_dict()
        state.update(
            capacity=tree.capacity,
            alpha=self.alpha,
            max_priority=self.max_priority,
            sample_calls=self.sample_calls,
            leaves=_to_tensor(tree.leaves.copy()),
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if self.tree is None:
            self.tree = SumTree(int(state["capacity"]), track_min=True)
        if int(state["capacity"]) != self.tree.capacity or float(state["alpha"]) != self.alpha:
            raise CheckpointError(
                f"checkpoint PER sampler (capacity {state['capacity']}, alpha {state['alpha']}) does not "
                "match "
                f"this one (capacity {self.tree.capacity}, alpha {self.alpha}); use the run's original config"
            )
        leaves = _to_numpy(state["leaves"]).astype(np.float64)
        if leaves.shape != (self.tree.capacity,):
            raise CheckpointError(f"checkpoint PER priorities have shape {leaves.shape}; corrupt checkpoint")
        self.tree.set_all(leaves)
        self.max_priority = float(state["max_priority"])
        self.sample_calls = int(state["sample_calls"])


class WeightedSampler(Sampler):
    """Static probabilities ``p`` over the storage rows (``sum p = 1``), computed once before training.

    For OPER-A/OPER-R (Yue et al. 2023, released code) and ReD.  ``p`` is indexed by physical row, which is
    the dataset row for a storage built with :meth:`ColumnarStorage.from_arrays`.

    * ``mode="resample"``: ``i ~ p`` i.i.d. with replacement (returned in increasing row order); no
      weights (ones).
    * ``mode="reweight"``: ``i`` uniform, ``w_i = N p_i`` (mean 1 over the rows).

    Sampling is ``O(n log N)``: :meth:`set_priorities` builds a static :class:`SumTree` over ``p`` once,
    and each call descends it for all ``n`` draws at once (about twice as fast as ``searchsorted`` on
    the CDF at 1M rows, whose per-query binary searches miss the cache one after another).  Rows added
    after :meth:`set_priorities` make the priorities stale, which :meth:`sample` refuses: static
    priorities describe one fixed dataset.
    """

    name = "weighted"
    MODES = ("resample", "reweight")

    def __init__(
        self, priorities: np.ndarray | None = None, mode: str = "resample", seed: int | None = None
    ) -> None:
        super().__init__(seed)
        if mode not in self.MODES:
            raise ConfigError(
                f"unknown WeightedSampler mode '{mode}'; choose one of: {', '.join(self.MODES)}"
            )
        self.mode = mode
        self.probs: np.ndarray | None = None
        self._tree: SumTree | None = None
        self._stale = False
        self._storage: ColumnarStorage | None = None
        if priorities is not None:
            self.set_priorities(priorities)

    def bind(self, storage: ColumnarStorage) -> None:
        self._storage = storage
        if self.probs is not None:
            self._check_length(len(self.probs), storage.size)

    @staticmethod
    def _check_length(n_priorities: int, n_rows: int) -> None:
        if n_priorities != n_rows:
            raise ConfigError(
                f"WeightedSampler got {n_priorities} priorities but the storage holds {n_rows} rows; "
                "compute one priority per stored transition"
            )

    def set_priorities(self, priorities: np.ndarray) -> None:
        """Validate (1-D, finite, >= 0, positive sum, one per stored row) and normalise to probabilities."""
        p = _to_numpy(priorities).astype(np.float64)
        if p.ndim != 1 or p.size == 0:
            raise ConfigError(f"priorities must be a non-empty 1-D array (one per row), got shape {p.shape}")
        finite = np.isfinite(p)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ConfigError(f"priorities must be finite; got {p[bad]} at row {bad}")
        if (p < 0).any():
            bad = int(np.flatnonzero(p < 0)[0])
            raise ConfigError(f"priorities must be >= 0; got {p[bad]} at row {bad}")
        total = p.sum()
        if not total > 0:
            raise ConfigError("priorities sum to 0; at least one row needs a positive priority")
        if self._storage is not None:
            self._check_length(p.size, self._storage.size)
        self._set_probs(p / total)

    def _set_probs(self, probs: np.ndarray) -> None:
        self.probs = probs
        self._tree = SumTree(len(probs), track_min=False)
        self._tree.set_all(probs)
        self._stale = False

    def on_add(self, indices: np.ndarray) -> None:
        self._stale = self.probs is not None

    def sample(self, n: int, storage: ColumnarStorage) -> tuple[np.ndarray, np.ndarray | None]:
        n = self._check_n(n, storage)
        if self.probs is None:
            raise ConfigError(
                "WeightedSampler has no priorities; call set_priorities(p) first (OPER/ReD compute them "
                "from the dataset)"
            )
        if self._stale:
            raise ConfigError(
                "rows were added after WeightedSampler.set_priorities; static priorities no longer match "
                "the storage, so call set_priorities again with one priority per row"
            )
        self._check_length(len(self.probs), storage.size)
        if self.mode == "resample":
            return self._tree.sample(n, self.rng)[0], None
        indices = self.rng.integers(0, len(self.probs), n, dtype=np.int64)
        return indices, (self.probs[indices] * len(self.probs)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(mode=self.mode, stale=self._stale)
        state["probs"] = None if self.probs is None else _to_tensor(self.probs)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if state["mode"] != self.mode:
            raise CheckpointError(
                f"checkpoint WeightedSampler mode '{state['mode']}' differs from this run's '{self.mode}'"
            )
        self.probs, self._tree = None, None
        if state["probs"] is not None:
            self._set_probs(_to_numpy(state["probs"]).astype(np.float64))
        self._stale = bool(state["stale"])


class SequenceSampler(Sampler):
    """Windows ``[s, s + T)`` of consecutive rows in insertion order: indices of shape ``(n, T)``.

    Windows lie between the oldest and the newest stored row, so they never cross the ring's write
    cursor (where the newest row meets the oldest, stale one).  With ``cross_episodes=False`` a window
    holds no episode end (any of ``done_keys`` nonzero) before its last row; starts are then uniform over
    the valid ones (rejection sampling with an exact fallback).  With ``cross_episodes=True`` starts are
    uniform over ``[0, N - T]`` in insertion order, which is STORM's reference sampler (its released code: sequences
    cross resets and the transformer attends across them).

    Rows must come from one stream in time order (one environment, or an env's rows added one step at a
    time); a vector env's interleaved rows need one storage per env.
    """

    name = "sequence"
    MAX_REJECTION_ROUNDS = 32

    def __init__(
        self,
        length: int,
        cross_episodes: bool = False,
        seed: int | None = None,
        done_keys: Sequence[str] = ("terminated", "truncated"),
    ) -> None:
        super().__init__(seed)
        if int(length) < 1:
            raise ConfigError(f"sequence length must be >= 1, got {length}")
        self.length = int(length)
        self.cross_episodes = bool(cross_episodes)
        self.done_keys = tuple(done_keys)

    def bind(self, storage: ColumnarStorage) -> None:
        if not self.cross_episodes:
            self._done_keys(storage)

    def _done_keys(self, storage: ColumnarStorage) -> list[str]:
        keys = [k for k in self.done_keys if k in storage.columns]
        if not keys:
            raise ConfigError(
                f"SequenceSampler(cross_episodes=False) needs an episode-end column {self.done_keys} in the "
                f"storage, which holds {choices_hint(storage.columns)}; add one or set cross_episodes=True"
            )
        return keys

    def sample(self, n: int, storage: ColumnarStorage) -> tuple[np.ndarray, None]:
        n = self._check_n(n, storage)
        T = self.length
        if storage.size < T:
            raise ConfigError(
                f"the buffer holds {storage.size} rows, fewer than the sequence length {T}; "
                "sample only after a warm-up of at least that many steps"
            )
        last_start = storage.size - T  # logical starts 0..last_start
        offsets = np.arange(T, dtype=np.int64)
        if self.cross_episodes or T == 1:
            starts = self.rng.integers(0, last_start + 1, n, dtype=np.int64)
        else:
            starts = self._valid_starts(n, storage, last_start)
        return storage.logical_to_physical(starts[:, None] + offsets), None

    def _ends_in_window(self, starts: np.ndarray, storage: ColumnarStorage) -> np.ndarray:
        """Whether logical rows ``s .. s+T-2`` of each window hold an episode end."""
        rows = storage.logical_to_physical(starts[:, None] + np.arange(self.length - 1))
        ends = np.zeros(rows.shape, dtype=bool)
        for key in self._done_keys(storage):
            ends |= np.take(storage.arrays[key], rows, axis=0).reshape(rows.shape + (-1,)).any(axis=-1)
        return ends.any(axis=1)

    def _valid_starts(self, n: int, storage: ColumnarStorage, last_start: int) -> np.ndarray:
        starts = np.empty(n, dtype=np.int64)
        todo = np.arange(n)
        for _ in range(self.MAX_REJECTION_ROUNDS):
            cand = self.rng.integers(0, last_start + 1, todo.size, dtype=np.int64)
            ok = ~self._ends_in_window(cand, storage)
            starts[todo[ok]] = cand[ok]
            todo = todo[~ok]
            if todo.size == 0:
                return starts
        # Few valid windows: enumerate them all (O(N)) and draw the rest uniformly among them.
        valid = self._all_valid_starts(storage, last_start)
        if valid.size == 0:
            raise ConfigError(
                f"no window of {self.length} consecutive rows without an episode end exists in the "
                f"{storage.size} stored rows; shorten the sequence length or set cross_episodes=True"
            )
        starts[todo] = valid[self.rng.integers(0, valid.size, todo.size)]
        return starts

    def _all_valid_starts(self, storage: ColumnarStorage, last_start: int) -> np.ndarray:
        rows = storage.logical_to_physical(np.arange(storage.size))
        ends = np.zeros(storage.size, dtype=bool)
        for key in self._done_keys(storage):
            ends |= np.take(storage.arrays[key], rows, axis=0).reshape(storage.size, -1).any(axis=-1)
        count = np.concatenate([[0], np.cumsum(ends)])  # count[k] = ends among logical rows < k
        s = np.arange(last_start + 1)
        return s[count[s + self.length - 1] == count[s]]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(length=self.length, cross_episodes=self.cross_episodes)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if (int(state["length"]), bool(state["cross_episodes"])) != (self.length, self.cross_episodes):
            raise CheckpointError(
                f"checkpoint SequenceSampler (length {state['length']}, cross_episodes "
                f"{state['cross_episodes']}) differs from this run's ({self.length}, {self.cross_episodes})"
            )


SAMPLERS: dict[str, type[Sampler]] = {
    "uniform": UniformSampler,
    "per": PrioritizedSampler,
    "prioritized": PrioritizedSampler,
    "weighted": WeightedSampler,
    "sequence": SequenceSampler,
}


def make_sampler(name: str, **kwargs: Any) -> Sampler:
    """Build a sampler by name: ``uniform``, ``per`` (alias ``prioritized``), ``weighted``, ``sequence``."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ConfigError(f"unknown sampler '{name}'; choose one of: {choices_hint(SAMPLERS)}") from None
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"bad arguments for sampler '{name}': {err}") from None
