"""The one offline dataset type of rlkit.

A :class:`Dataset` holds transitions *after* D4RL's q-learning transform (``d4rl.qlearning_dataset``):
row ``i`` is ``(s_i, a_i, r_i, s'_i)`` with

* ``terminals[i]``  -- the episode truly ended at ``s'_i`` (no bootstrapping: ``mask = 1 - terminal``);
* ``timeouts[i]``   -- the episode was cut after row ``i`` without a terminal (time limit, or a
  discontinuity ``||s_{i+1} - s'_i|| > 1e-6`` in the stored order); bootstrapping still applies.

Episode boundaries follow the convention shared by the OPER, IQL and TD3+BC code bases
(the ``done_float`` flag of their released code): ``done_float[i] = terminals[i] or timeouts[i]``, and the last row is
always a boundary.  From the boundaries the dataset derives ``episode_ids`` and, per row, the
undiscounted return of the row's episode (``returns``), which return-based resampling (OPER-R, ReD) and
IQL's reward scaling use.

``sim_states`` (optional) holds the simulator state of each row's ``s_i`` -- MuJoCo ``qpos`` and ``qvel`` from a
D4RL file's ``infos/`` (or rlkit's collection, which writes them), float32 -- for rollout oracles that restore
the simulator to a dataset state (OAP's ``env_return``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlkit.errors import DatasetError

ARRAY_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
SIM_STATE_KEYS = ("qpos", "qvel")


@dataclass
class Dataset:
    """D4RL arrays after the q-learning transform, plus derived episode information and provenance."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    next_observations: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    sim_states: dict[str, np.ndarray] | None = None
    episode_ids: np.ndarray = field(init=False, repr=False)
    returns: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.terminals = np.asarray(self.terminals).reshape(-1).astype(bool)
        self.timeouts = np.asarray(self.timeouts).reshape(-1).astype(bool)
        if self.sim_states is not None:
            self.sim_states = {k: np.asarray(self.sim_states[k], dtype=np.float32) for k in SIM_STATE_KEYS}
        self.validate()
        self.episode_ids, self.returns = _episodes(self.rewards, self.done_float)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Refuse missing rows, mismatched lengths, wrong ranks and non-finite values, naming the key."""
        n = len(self.rewards)
        if n == 0:
            raise DatasetError("dataset has no transitions: key 'rewards' is empty")
        for key in ARRAY_KEYS:
            arr = getattr(self, key)
            if arr.shape[0] != n:
                raise DatasetError(
                    f"dataset key '{key}' has {arr.shape[0]} rows but 'rewards' has {n}; "
                    "all arrays must have one row per transition"
                )
        for key, arr in (self.sim_states or {}).items():
            if arr.ndim != 2 or arr.shape[0] != n:
                raise DatasetError(f"dataset key 'infos/{key}' has shape {arr.shape}; it needs one row per "
                                   f"transition ({n})")
        for key in ("observations", "next_observations", "actions"):
            if getattr(self, key).ndim < 2:
                raise DatasetError(f"dataset key '{key}' must be 2-D (rows, features), got shape "
                                   f"{getattr(self, key).shape}")
        if self.observations.shape[1:] != self.next_observations.shape[1:]:
            raise DatasetError(
                f"dataset key 'next_observations' has shape {self.next_observations.shape[1:]} per row but "
                f"'observations' has {self.observations.shape[1:]}"
            )
        for key in ("observations", "next_observations", "actions", "rewards"):
            arr = getattr(self, key)
            if not np.isfinite(arr).all():
                bad = int(np.flatnonzero(~np.isfinite(arr.reshape(n, -1)).all(axis=1))[0])
                raise DatasetError(f"dataset key '{key}' holds NaN or inf (first at row {bad}); "
                                   "clean or re-download the file")

    # ------------------------------------------------------------------ derived views
    @property
    def size(self) -> int:
        return len(self.rewards)

    def __len__(self) -> int:
        return self.size

    @property
    def observation_dim(self) -> int:
        return int(np.prod(self.observations.shape[1:]))

    @property
    def action_dim(self) -> int:
        return int(np.prod(self.actions.shape[1:]))

    @property
    def done_float(self) -> np.ndarray:
        """Episode-boundary flag: terminal or timeout; the last row always closes an episode."""
        done = self.terminals | self.timeouts
        done = done.copy()
        done[-1] = True
        return done

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ids[-1]) + 1

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, in episode-id order."""
        return np.bincount(self.episode_ids, weights=self.rewards.astype(np.float64)).astype(np.float32)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.bincount(self.episode_ids)

    def observation_stats(self, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and ``std + eps`` of the observations (TD3+BC's state standardisation)."""
        mean = self.observations.mean(axis=0)
        std = self.observations.std(axis=0) + eps
        return mean.astype(np.float32), std.astype(np.float32)

    def columns(self) -> dict[str, np.ndarray]:
        """The transition columns under the replay buffer's names."""
        return {
            "obs": self.observations,
            "action": self.actions,
            "reward": self.rewards,
            "next_obs": self.next_observations,
            "terminated": self.terminals.astype(np.float32),
            "truncated": self.timeouts.astype(np.float32),
        }

    def subset(self, rows: np.ndarray) -> Dataset:
        """A new dataset made of the given rows (kept in order; provenance notes the selection)."""
        rows = np.asarray(rows)
        prov = dict(self.provenance, subset_of=self.provenance.get("id"), subset_rows=int(len(rows)))
        sim = None if self.sim_states is None else {k: v[rows] for k, v in self.sim_states.items()}
        return Dataset(**{k: getattr(self, k)[rows] for k in ARRAY_KEYS}, provenance=prov, sim_states=sim)

    @staticmethod
    def concatenate(parts: list[Dataset], provenance: dict[str, Any] | None = None) -> Dataset:
        """Join datasets end to end; each part's last row keeps closing its final episode.  Simulator states
        are kept only when every part has them."""
        arrays = {}
        for key in ARRAY_KEYS:
            arrays[key] = np.concatenate([getattr(p, key) for p in parts])
        ends = np.cumsum([p.size for p in parts]) - 1
        timeouts = arrays["timeouts"].copy()
        timeouts[ends] |= ~arrays["terminals"][ends]
        arrays["timeouts"] = timeouts
        sim = None
        if all(p.sim_states is not None for p in parts):
            sim = {k: np.concatenate([p.sim_states[k] for p in parts]) for k in SIM_STATE_KEYS}
        return Dataset(**arrays, provenance=provenance or {"parts": [p.provenance for p in parts]}, sim_states=sim)

    def summary(self) -> dict[str, Any]:
        """Counts and return statistics, as printed by ``rlkit data info``."""
        ep_ret = self.episode_returns
        return {
            "transitions": self.size,
            "episodes": self.num_episodes,
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "observation_dim": self.observation_dim,
            "action_dim": self.action_dim,
            "return_mean": float(ep_ret.mean()),
            "return_std": float(ep_ret.std()),
            "return_min": float(ep_ret.min()),
            "return_max": float(ep_ret.max()),
            "reward_mean": float(self.rewards.mean()),
            "provenance": self.provenance,
        }


def _episodes(rewards: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Episode id per row (0, 1, ...) and the undiscounted return of that row's episode."""
    starts = np.concatenate([[0], np.flatnonzero(done[:-1]) + 1])
    episode_ids = np.zeros(len(rewards), dtype=np.int64)
    episode_ids[starts[1:]] = 1
    episode_ids = np.cumsum(episode_ids)
    ep_returns = np.bincount(episode_ids, weights=rewards.astype(np.float64))
    return episode_ids, ep_returns[episode_ids].astype(np.float32)
