"""The offline regime: a fixed dataset, one gradient step per training step.

``loop: batch = buffer.sample(B); metrics = algo.update(batch)`` with periodic evaluation on the env
named by the dataset, normalised scores, logging and checkpoints (base class).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlkit.algorithm import UpdateResult
from rlkit.errors import DatasetError
from rlkit.regimes.base import Regime, build_algorithm
from rlkit.regimes.sampling import (
    build_buffer_from_dataset,
    enable_priority_feedback,
    load_dataset,
    priority_metrics,
)


class OfflineRegime(Regime):
    name = "offline"
    #: a population of members can train in this regime (next_batch / apply_update)
    population = True

    def setup(self) -> None:
        cfg = self.cfg
        self.eval_env = self.make_eval_env()
        obs_space = self.eval_env.single_observation_space
        act_space = self.eval_env.single_action_space
        # the algorithm first: what its constructor refuses (a bad option, an add-on) costs no data loading
        self.algo = build_algorithm(cfg, obs_space, act_space, self.device)
        dataset = load_dataset(cfg)
        check_dataset_matches_env(dataset, obs_space, act_space, cfg.env.name)
        self.dataset = dataset
        self.provenance = dataset.provenance
        self.algo.on_dataset(dataset)
        self.buffer = build_buffer_from_dataset(cfg, dataset, self.device)
        self.batch_size = int(cfg.train.batch_size)
        self.prioritized = enable_priority_feedback(cfg, self.algo, self.buffer)
        self.decoupled = "policy" in self.buffer.extra_samplers

    def train_step(self) -> dict[str, Any]:
        batch = self.next_batch()
        return self.apply_update(batch, self.algo.update(batch))

    # a population (rlkit.regimes.population) draws every member's batch, updates the members as one and hands
    # each member its result
    def next_batch(self):
        """The batch of the next update (with the decoupled policy batch when the sampler makes one)."""
        batch = self.buffer.sample(self.batch_size)
        if self.decoupled:  # decoupled resampling: the policy terms get their own prioritized batch
            batch.policy_batch = self.buffer.sample(self.batch_size, sampler="policy")
        return batch

    def apply_update(self, batch, result: UpdateResult) -> dict[str, Any]:
        """Feed the update's priorities back to the sampler; returns its metrics."""
        if self.prioritized:
            self.buffer.update_priorities(batch.indices, result.priorities)
        return result.metrics

    def interval_metrics(self) -> dict[str, float]:
        return priority_metrics(self.buffer) if self.prioritized else {}

    def regime_state(self) -> dict[str, Any]:
        # the dataset is rebuilt from its source on resume; only the samplers' RNG/priorities are saved
        buf = self.buffer
        return {"sampler": buf.sampler.state_dict(),
                "extra_samplers": {name: s.state_dict() for name, s in buf.extra_samplers.items()}}

    def load_regime_state(self, state: dict[str, Any]) -> None:
        self.buffer.sampler.load_state_dict(state["sampler"])
        for name, sampler in self.buffer.extra_samplers.items():
            sampler.load_state_dict(state["extra_samplers"][name])


def check_dataset_matches_env(dataset, obs_space, act_space, env_name: str) -> None:
    obs_dim = int(np.prod(obs_space.shape))
    act_dim = int(np.prod(act_space.shape))
    if dataset.observation_dim != obs_dim:
        raise DatasetError(f"dataset '{dataset.provenance.get('id')}' has {dataset.observation_dim}-dim "
                           f"observations but env '{env_name}' has {obs_dim}; pick the matching env")
    if dataset.action_dim != act_dim:
        raise DatasetError(f"dataset '{dataset.provenance.get('id')}' has {dataset.action_dim}-dim actions "
                           f"but env '{env_name}' has {act_dim}; pick the matching env")
