"""Behaviour cloning.

``deterministic`` policy (default; the BC baseline of Fujimoto & Gu 2021 and CORL's any-percent BC):
``a = tanh(f(s))`` rescaled to the action box, ``L = mean_i w_i ||π(s_i) - a_i||²``.
``gaussian`` policy (the behaviour model of one-step RL, Brandfonbrener et al. 2021):
``L = -mean_i w_i log π(a_i | s_i)`` with a tanh-Gaussian head.

``w_i`` are the batch's sample weights (ones unless a reweighting sampler supplies them, e.g. OPER in
reweight mode).  Observations are standardised with the dataset's mean and ``std + 1e-3``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlkit.algorithm import Algorithm, ContinuousActionMixin, UpdateResult
from rlkit.errors import ConfigError
from rlkit.nets import MLP, Normalizer, TanhGaussianHead
from rlkit.optim import adam


class BC(ContinuousActionMixin, Algorithm):
    """Behaviour cloning; it has no critic, so it computes no TD-error priorities (``sampler=per`` is
    refused; static-priority samplers such as ``oper_r`` work)."""

    regimes = ("offline",)

    def __init__(self, observation_space, action_space, device="cpu", *, lr: float = 3e-4,
                 hidden: Sequence[int] = (256, 256), policy: str = "deterministic", normalize_obs: bool = True,
                 weight_decay: float = 0.0) -> None:
        super().__init__(observation_space, action_space, device)
        if policy not in ("deterministic", "gaussian"):
            raise ConfigError(f"bad value for 'algo.policy': {policy!r}; choose deterministic or gaussian")
        self._init_action_scaling(action_space, self.device)
        self.policy_kind = policy
        if policy == "deterministic":
            self.actor = MLP(self.obs_dim, hidden, self.action_dim).to(self.device)
        else:
            self.actor = TanhGaussianHead(self.obs_dim, self.action_dim, hidden).to(self.device)
        self.obs_norm = Normalizer(self.obs_dim).to(self.device)
        self.normalize_obs = normalize_obs
        self.opt = adam(self.actor.parameters(), lr, weight_decay=weight_decay)

    def on_dataset(self, dataset) -> None:
        if self.normalize_obs:
            self.obs_norm.set_stats(*dataset.observation_stats(eps=1e-3))

    def _policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(self.obs_norm(obs))
        return torch.tanh(out) if self.policy_kind == "deterministic" else out.mode

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = True):
        return self.to_env_action(self._policy_action(self.as_tensor(obs))), state

    def update(self, batch) -> UpdateResult:
        target = self.from_env_action(batch.action).clamp(-1 + 1e-5, 1 - 1e-5)
        if self.policy_kind == "deterministic":
            per_sample = (self._policy_action(batch.obs) - target).pow(2).mean(-1)
        else:
            per_sample = -self.actor(self.obs_norm(batch.obs)).log_prob(target)
        loss = (batch.weights * per_sample).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return UpdateResult({"train/bc_loss": loss.detach()})
