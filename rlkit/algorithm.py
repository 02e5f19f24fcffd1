"""The small interface every algorithm implements.

An algorithm owns its networks, optimizers and losses; it never owns a training loop.  The trainer
(:mod:`rlkit.trainer`) picks the regime the algorithm declares (``regime`` class attribute), feeds it
batches and asks it to act.  Algorithms are created by Hydra from ``configs/algo/<name>.yaml``
(``_target_``), with the environment's spaces and the device filled in by the core.

Contract:

* ``act(obs, state=None, deterministic=False) -> (action, state)`` -- batched numpy observations in,
  batched numpy actions out; ``state`` carries recurrent/transformer context for sequence models.
* ``update(batch) -> dict[str, Tensor | float]`` -- one gradient step (or one train-ratio unit).  Return
  tensors rather than floats: the logger converts them only at log time, which keeps the hot path free of
  host synchronisation.
* ``state_dict()`` / ``load_state_dict()`` -- every ``nn.Module``, optimizer, LR scheduler, tensor and
  counter needed for exact resume; the default implementation collects them from the attributes.
* optional ``on_dataset(dataset)``, ``critic_for_diagnostics()``, ``intrinsic_reward(batch)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

REGIMES = ("offline", "online", "offline_to_online", "pretrain", "finetune")


class Algorithm:
    """Base class: attribute-driven ``state_dict``, device handling, observation normalization hooks."""

    regime: ClassVar[str] = "offline"
    #: extra state-dict attribute names that are plain Python values (counters, flags)
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 device: str | torch.device = "cpu") -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = torch.device(device)

    # ------------------------------------------------------------------ acting and learning
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def update(self, batch) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    # ------------------------------------------------------------------ optional hooks
    def on_dataset(self, dataset) -> None:
        """Called once with the offline dataset before training (normalizers, reward scaling, ...)."""

    def critic_for_diagnostics(self):
        """``(q_fn, policy_fn)`` for SEEM: ``q_fn(obs, act) -> Q1`` and ``policy_fn(obs) -> action``."""
        return None

    # ------------------------------------------------------------------ persistence
    def _stateful_attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        stateful = (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.Tensor)
        for name, value in vars(self).items():
            if isinstance(value, stateful):
                out[name] = value
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name, value in self._stateful_attributes().items():
            state[name] = value.detach().clone() if isinstance(value, torch.Tensor) else value.state_dict()
        for name in self.state_attributes:
            state[name] = getattr(self, name)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = set(self._stateful_attributes()) | set(self.state_attributes)
        missing = expected - set(state)
        if missing:
            raise KeyError(f"checkpoint lacks algorithm state {sorted(missing)}")
        for name, value in self._stateful_attributes().items():
            if isinstance(value, torch.Tensor):
                value.data.copy_(state[name].to(value.device))
            else:
                value.load_state_dict(state[name])
        for name in self.state_attributes:
            setattr(self, name, state[name])

    # ------------------------------------------------------------------ helpers
    def as_tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def action_dim(self) -> int:
        if isinstance(self.action_space, gym.spaces.Discrete):
            return int(self.action_space.n)
        return int(np.prod(self.action_space.shape))


class ContinuousActionMixin:
    """Maps between the env's action box and the ``[-1, 1]`` range tanh policies produce."""

    def _init_action_scaling(self, action_space: gym.spaces.Box, device: torch.device) -> None:
        low = torch.tensor(np.broadcast_to(action_space.low, action_space.shape), dtype=torch.float32)
        high = torch.tensor(np.broadcast_to(action_space.high, action_space.shape), dtype=torch.float32)
        self.action_scale = ((high - low) / 2.0).to(device)
        self.action_bias = ((high + low) / 2.0).to(device)
        self._action_low = action_space.low
        self._action_high = action_space.high

    def to_env_action(self, action: torch.Tensor) -> np.ndarray:
        env_action = (action * self.action_scale + self.action_bias).cpu().numpy()
        return np.clip(env_action, self._action_low, self._action_high)

    def from_env_action(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.action_bias) / self.action_scale
