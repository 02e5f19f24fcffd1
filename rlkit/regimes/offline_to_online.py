"""The offline-to-online regime: pre-train on a dataset, then fine-tune online, with one replay buffer.

Phase 1 (``offline``): ``train.offline_steps`` gradient steps on batches from the buffer, which holds the
whole dataset.  Phase 2 (``online``): ``train.online_steps`` agent steps exactly as in the online regime
(:class:`~rlkit.regimes.online.OnlineRegime`, whose step and update code this regime reuses): the policy
acts from its first step (no random warm-up), every transition is appended to the same buffer, and every
agent step earns ``train.updates_per_step`` updates.  The buffer (``train.buffer_capacity`` rows, 2e6 by
default) is initialised with the dataset and sampled uniformly, with no offline/online ratio -- the
protocol of IQL's fine-tuning code (Kostrikov et al. 2021) and of FamO2O's released code (Wang et al.
2023).  The algorithm hears ``begin_phase("offline" | "online")`` when a phase starts (and after a
resume).

The step counter runs over both phases (``offline_steps + online_steps`` in all).  Every log record
carries ``phase``; the end of the offline phase is scored with ``eval.final_episodes`` and checkpointed,
and ``summary.json`` holds both phase scores under ``phases.offline`` / ``phases.online``.  Resume is
exact in either phase and across the boundary: offline checkpoints hold the samplers' state (the dataset
is reloaded), online ones the whole buffer as the online regime does.
"""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.errors import ConfigError
from rlkit.evaluation.evaluate import EvalResult
from rlkit.regimes.offline import check_dataset_matches_env
from rlkit.regimes.online import OnlineRegime, default_columns
from rlkit.regimes.sampling import load_dataset
from rlkit.replay import ReplayBuffer

PHASES = ("offline", "online")


class OfflineToOnlineRegime(OnlineRegime):
    name = "offline_to_online"
    #: FamO2O's released code (``replay_buffer_size``)
    default_capacity = 2_000_000

    def setup(self) -> None:
        cfg = self.cfg
        spec = cfg.env.get("dataset")
        if not spec or not spec.get("id"):
            raise ConfigError(f"regime=offline_to_online pre-trains on the env's dataset, but env={cfg.env.name} "
                              "names none; pick an env with a dataset (e.g. env=hopper-medium-replay)")
        train = cfg.train
        self.offline_steps = int(train.steps if train.get("offline_steps") is None else train.offline_steps)
        self.online_steps = int(train.online_steps)
        if self.offline_steps < 0 or self.online_steps < 0:
            raise ConfigError(f"train.offline_steps={self.offline_steps} and train.online_steps={self.online_steps} "
                              "must be >= 0")
        if self.offline_steps + self.online_steps == 0:
            raise ConfigError("train.offline_steps + train.online_steps is 0; give either phase some steps")
        if self.online_steps == 0:
            print(f"rlkit: train.online_steps=0: offline phase only ({self.offline_steps} gradient steps on the "
                  "dataset), no online fine-tuning", file=sys.stderr)
        self.dataset = load_dataset(cfg)
        self.provenance = self.dataset.provenance
        super().setup()  # envs, algorithm, buffer (build_buffer below), acting state: as the online regime
        self.warmup = 0
        self.phase_scores: dict[str, float | None] = {p: None for p in PHASES}
        self.online_started = False
        self.step_increment = 1
        self.algo.begin_phase("offline")
        if self.offline_steps == 0:
            self.start_online()

    def build_buffer(self, obs_space: gym.Space, act_space: gym.Space) -> ReplayBuffer:
        """The online regime's buffer with the dataset appended first (the algorithm sees the dataset too)."""
        cfg, dataset = self.cfg, self.dataset
        check_dataset_matches_env(dataset, obs_space, act_space, cfg.env.name)
        if self.algo.replay_spec(int(cfg.seed)).columns is not None:
            raise ConfigError(f"algo={cfg.algo.get('name')} stores its own replay columns, which a dataset cannot "
                              "fill; regime=offline_to_online needs the standard transition columns")
        self.algo.on_dataset(dataset)
        buffer = super().build_buffer(obs_space, act_space)
        if buffer.storage.capacity < dataset.size:
            raise ConfigError(f"train.buffer_capacity={buffer.storage.capacity} is smaller than the dataset "
                              f"({dataset.size} transitions); raise it (default 2e6)")
        columns = default_columns(obs_space, act_space)
        buffer.add(**{k: np.asarray(v, dtype=columns[k][1]) for k, v in dataset.columns().items()})
        return buffer

    # ------------------------------------------------------------------ phases
    def total_steps(self) -> int:
        return self.offline_steps + self.online_steps

    def phase(self) -> str:
        return "online" if self.online_started else "offline"

    def phase_ends(self, prev: int) -> bool:
        return prev < self.offline_steps <= self.step and self.online_steps > 0

    def end_phase(self, result: EvalResult) -> None:
        self.phase_scores["offline"] = _score(result)
        self.start_online()

    def start_online(self) -> None:
        self.online_started = True
        self.step_increment = self.num_envs
        self.algo.begin_phase("online")

    def train_step(self) -> dict[str, Any]:
        if not self.online_started:
            return self.update_once()
        return super().train_step()

    def summary_extra(self) -> dict[str, Any]:
        scores = dict(self.phase_scores)
        if self.last_eval is not None and self.step >= self.total_steps():  # the final evaluation
            scores[self.phase()] = _score(self.last_eval)
        return {"phases": scores, "offline_steps": self.offline_steps, "online_steps": self.online_steps}

    # ------------------------------------------------------------------ checkpoints
    def buffer_state(self) -> dict[str, Any]:
        buf = self.buffer
        if buf.storage.added_total > self.dataset.size:
            return super().buffer_state()
        # nothing appended yet: the buffer is the dataset, which resume reloads; keep the samplers only
        return {"dataset_only": True, "sampler": buf.sampler.state_dict(),
                "extra_samplers": {name: s.state_dict() for name, s in buf.extra_samplers.items()}}

    def load_buffer_state(self, state: dict[str, Any]) -> None:
        if not state.get("dataset_only"):
            return super().load_buffer_state(state)
        self.buffer.sampler.load_state_dict(state["sampler"])
        for name, sampler in self.buffer.extra_samplers.items():
            sampler.load_state_dict(state["extra_samplers"][name])

    def regime_state(self) -> dict[str, Any]:
        return {**super().regime_state(), "phase_scores": dict(self.phase_scores),
                "online_started": self.online_started}

    def load_regime_state(self, state: dict[str, Any]) -> None:
        super().load_regime_state(state)
        self.phase_scores = dict(state["phase_scores"])
        if state["online_started"]:
            self.start_online()


def _score(result: EvalResult) -> float:
    return result.normalized_mean if result.normalized is not None else result.return_mean
