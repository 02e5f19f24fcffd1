"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

Twin critics (one stacked forward), a tanh-Gaussian actor and automatic entropy tuning:

* critic:  ``y = r + γ (1 - d) [min_k Q̄_k(s', a') - α log π(a'|s')]``, ``a' ~ π(·|s')``;
  ``L_Q = Σ_k mean (Q_k(s, a) - y)²``                                       (eq. 5, 7)
* actor:   ``L_π = mean [α log π(ã|s) - min_k Q_k(s, ã)]``, ``ã ~ π(·|s)`` reparameterised  (eq. 9, 12)
* entropy: ``L_α = -mean [log α (log π(ã|s) + H̄)]`` with ``H̄ = -|A|``                     (eq. 18)
* targets: Polyak averaging with ``τ``.

Defaults (``configs/algo/sac.yaml``) are the paper's: Adam 3e-4 for all three, batch 256, 2x256 MLPs,
γ = 0.99, τ = 0.005, one update per environment step.  Also the fine-tuning base and the behaviour-policy
trainer of local dataset collection.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlkit.algorithm import Algorithm, ContinuousActionMixin, DiagnosticsCritic, UpdateResult, td_priorities
from rlkit.nets import QEnsemble, TanhGaussianHead, polyak_update
from rlkit.optim import adam, step


class SAC(ContinuousActionMixin, Algorithm):
    regimes = ("online",)
    provides_priorities = True

    def __init__(self, observation_space, action_space, device="cpu", *, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, alpha_lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005,
                 hidden: Sequence[int] = (256, 256), init_alpha: float = 1.0, autotune: bool = True,
                 target_entropy: float | None = None, critic_layernorm: bool = False) -> None:
        super().__init__(observation_space, action_space, device)
        self._init_action_scaling(action_space, self.device)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        self.actor = TanhGaussianHead(obs_dim, act_dim, hidden, log_std_min=-5.0, log_std_max=2.0).to(self.device)
        self.critic = QEnsemble(obs_dim, act_dim, hidden, 2, layernorm=critic_layernorm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(float(np.log(init_alpha)), device=self.device, requires_grad=True)
        self.actor_opt = adam(self.actor.parameters(), actor_lr)
        self.critic_opt = adam(self.critic.parameters(), critic_lr)
        self.alpha_opt = adam([self.log_alpha], alpha_lr)
        self.gamma, self.tau, self.autotune = gamma, tau, autotune
        self.target_entropy = float(-act_dim if target_entropy is None else target_entropy)

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = False):
        dist = self.actor(self.as_tensor(obs))
        action = dist.mode if deterministic else dist.rsample_with_log_prob()[0]
        return self.to_env_action(action), state

    def update(self, batch) -> UpdateResult:
        obs, next_obs = batch.obs, batch.next_obs
        action = self.from_env_action(batch.action)
        reward, not_done = batch.reward, 1.0 - batch.terminated
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            next_action, next_logp = self.actor(next_obs).rsample_with_log_prob()
            next_q = self.critic_target(next_obs, next_action).min(0).values - alpha * next_logp
            target = reward + self.gamma * not_done * next_q
        q = self.critic(obs, action)
        critic_loss = (batch.weights * (q - target).pow(2)).mean(-1).sum()
        step(self.critic_opt, critic_loss)

        new_action, logp = self.actor(obs).rsample_with_log_prob()
        q_pi = self.critic(obs, new_action).min(0).values
        actor_loss = (alpha * logp - q_pi).mean()
        step(self.actor_opt, actor_loss)

        if self.autotune:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            step(self.alpha_opt, alpha_loss)

        polyak_update(self.critic, self.critic_target, self.tau)
        metrics = {
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha": alpha,
            "train/entropy": -logp.detach().mean(),
            "train/q_mean": q.detach().mean(),
        }
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)

    def critic_for_diagnostics(self) -> DiagnosticsCritic:
        """``Q1`` and the policy's mode on raw observations and actions in [-1, 1]."""
        return DiagnosticsCritic(q=self.critic.member(0), policy=lambda obs: self.actor(obs).mode,
                                 gamma=float(self.gamma), inputs=lambda o, a: (o, self.from_env_action(a)))
