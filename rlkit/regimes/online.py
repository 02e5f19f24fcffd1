"""The online regime: collect with the policy on a vector env, store in the replay buffer, and update
at a fixed train ratio.

One training step is one vector-env step (``num_envs`` agent steps; ``train.steps`` counts agent
steps).  Before ``train.warmup_steps`` actions are uniform random and nothing is updated.  After it,
every agent step earns ``train.updates_per_step`` updates (fractions accumulate), so the ratio of
gradient updates to environment steps is exact for any ``num_envs``.

Resume is exact: the checkpoint holds the buffer, the samplers' RNGs, the environments' simulator
state, the current observations and episode accumulators.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlkit import envs
from rlkit.regimes.base import Regime, build_algorithm, env_kwargs
from rlkit.regimes.sampling import build_samplers, enable_priority_feedback, priority_metrics
from rlkit.replay import ColumnarStorage, FrameStorage, ReplayBuffer, is_pixel_pair
from rlkit.utils import derive_seed


def default_columns(obs_space: gym.Space, act_space: gym.Space) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Replay columns of a transition: obs, action, reward, next_obs, terminated, truncated."""
    if isinstance(act_space, gym.spaces.Discrete):
        action = ((), np.int64)
    else:
        action = (tuple(act_space.shape), np.float32)
    obs_dtype = obs_space.dtype if obs_space.dtype == np.uint8 else np.float32
    return {
        "obs": (tuple(obs_space.shape), obs_dtype),
        "action": action,
        "reward": ((), np.float32),
        "next_obs": (tuple(obs_space.shape), obs_dtype),
        "terminated": ((), np.float32),
        "truncated": ((), np.float32),
    }


class OnlineRegime(Regime):
    name = "online"
    #: replay rows when ``train.buffer_capacity`` is null
    default_capacity = 1_000_000

    def setup(self) -> None:
        cfg = self.cfg
        self.num_envs = int(cfg.train.num_envs)
        self.step_increment = self.num_envs
        self.env = envs.make_vector(cfg.env.id, self.num_envs, autoreset=True, **env_kwargs(cfg))
        self.eval_env = self.make_eval_env()
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        self.algo = build_algorithm(cfg, obs_space, act_space, self.device)
        self.buffer = self.build_buffer(obs_space, act_space)
        self.prioritized = enable_priority_feedback(cfg, self.algo, self.buffer)
        self.rng = np.random.default_rng(derive_seed(int(cfg.seed), "warmup actions"))
        self.obs, _ = self.env.reset(seed=int(cfg.seed))
        self.act_state = None
        self.episode_return = np.zeros(self.num_envs)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.update_credit = 0.0
        self.updates_done = 0
        self.batch_size = int(cfg.train.batch_size)
        self.warmup = int(cfg.train.warmup_steps)
        self.ratio = float(cfg.train.updates_per_step)

    def build_buffer(self, obs_space: gym.Space, act_space: gym.Space) -> ReplayBuffer:
        """The empty replay buffer: the algorithm's columns (:meth:`~rlkit.algorithm.Algorithm.replay_spec`),
        ``train.buffer_capacity`` rows, the configured samplers."""
        cfg = self.cfg
        spec = self.algo.replay_spec(int(cfg.seed))
        columns = spec.columns if spec.columns is not None else default_columns(obs_space, act_space)
        capacity = int(cfg.train.buffer_capacity or self.default_capacity)
        kind = FrameStorage if is_pixel_pair(columns) else ColumnarStorage  # pixels: each frame stored once
        storage = kind(capacity, columns, device=self.device if self.device.type == "cuda" else None)
        sampler, extra = build_samplers(cfg)
        return ReplayBuffer(storage, sampler, device=self.device, extra_samplers={**extra, **spec.extra_samplers},
                            nstep=spec.nstep, gamma=spec.gamma)

    def update_once(self) -> dict[str, Any]:
        """One gradient update on a batch from the buffer (priorities fed back to a learning sampler)."""
        batch = self.algo.sample_batch(self.buffer, self.batch_size)
        result = self.algo.update(batch)
        if self.prioritized:
            self.buffer.update_priorities(batch.indices, result.priorities)
        self.updates_done += 1
        return result.metrics

    def random_actions(self) -> np.ndarray:
        space = self.env.single_action_space
        if isinstance(space, gym.spaces.Discrete):
            return self.rng.integers(0, space.n, size=self.num_envs)
        low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
        return self.rng.uniform(low, high, size=(self.num_envs, *space.shape)).astype(space.dtype)

    def train_step(self) -> dict[str, Any]:
        if self.step < self.warmup:
            action = self.random_actions()
        else:
            action, self.act_state = self.algo.act(self.obs, self.act_state, deterministic=False)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated | truncated
        real_next = next_obs
        if done.any():
            real_next = next_obs.copy()
            for i in np.flatnonzero(done):
                real_next[i] = info["final_obs"][i]
        transition = {
            "obs": self.obs, "action": action, "reward": reward, "next_obs": real_next,
            "terminated": terminated, "truncated": truncated,
        }
        if "life_loss" in self.buffer.storage.columns:
            # a sub-env that auto-reset in this step reports its reset info, which carries no life_loss
            transition["life_loss"] = info.get("life_loss", np.zeros(self.num_envs, dtype=bool))
        transition.update(self.extra_columns())
        self.last_transition = transition
        self.buffer.add(**{k: np.asarray(v) for k, v in transition.items() if k in self.buffer.storage.columns})
        metrics: dict[str, Any] = {}
        self.episode_return += reward
        self.episode_length += 1
        if done.any():
            metrics["train/episode_return"] = float(self.episode_return[done].mean())
            metrics["train/episode_length"] = float(self.episode_length[done].mean())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.act_state = self.algo.reset_state(self.act_state, done)
        self.obs = next_obs
        if self.step + self.num_envs > self.warmup:
            self.update_credit += self.num_envs * self.ratio
            while self.update_credit >= 1.0:
                self.update_credit -= 1.0
                metrics.update(self.update_once())
        return metrics

    def interval_metrics(self) -> dict[str, float]:
        return priority_metrics(self.buffer) if self.prioritized and len(self.buffer) else {}

    def extra_columns(self) -> dict[str, np.ndarray]:
        """Columns stored with every transition besides the env's (URLB: the skill active at ``s_t``)."""
        return {}

    def buffer_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the replay buffer (all of it: rows, counters, samplers)."""
        return self.buffer.state_dict()

    def load_buffer_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state)

    def regime_state(self) -> dict[str, Any]:
        from rlkit.envs.state import get_vector_env_state

        return {
            "buffer": self.buffer_state(),
            "env": get_vector_env_state(self.env),
            "obs": self.obs,
            "act_state": self.act_state,
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
            "update_credit": self.update_credit,
            "updates_done": self.updates_done,
            "rng": self.rng.bit_generator.state,
        }

    def load_regime_state(self, state: dict[str, Any]) -> None:
        from rlkit.envs.state import set_vector_env_state

        self.load_buffer_state(state["buffer"])
        set_vector_env_state(self.env, state["env"])
        self.obs = state["obs"]
        self.act_state = state["act_state"]
        self.episode_return = state["episode_return"]
        self.episode_length = state["episode_length"]
        self.update_credit = state["update_credit"]
        self.updates_done = state["updates_done"]
        self.rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        super().close()
        self.env.close()
