"""Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal & Levine 2020, "AWAC: Accelerating Online
Reinforcement Learning with Offline Datasets"), offline, as in CORL's ``algorithms/offline/awac.py``.

* critic (eq. 4-5): ``a' ~ π(·|s')`` (clipped to [-1, 1]); ``y = r + γ (1 - d) min_k Q̄_k(s', a')``;
  ``L_Q = Σ_k mean_i c_i (Q_k(s_i, a_i) - y_i)²``
* actor (eq. 9), with the updated critic and ``V(s) ≈ min_k Q_k(s, ã)``, ``ã ~ π(·|s)`` (one sample):
  ``A_i = min_k Q_k(s_i, a_i) - V(s_i)``,
  ``L_π = -mean_i w_i · min(exp(A_i / λ), 100) · log π(a_i | s_i)``
* targets: Polyak averaging with ``τ``.

``w_i`` (policy batch) multiply the per-sample policy loss outside the cap (plain reweighting, which
equals resampling in expectation); ``c_i = w_i`` only with ``reweight_eval=True``.  Decoupled resampling:
the actor term (its ``Q``, ``V`` and log-likelihood) reads ``batch["policy_batch"]``.

Defaults follow CORL (the paper's offline D4RL setting is not pinned by the paper itself): actor and
twin critics 3x256 ReLU MLPs (``actor_hidden``/``critic_hidden`` set them apart; ``actor_weight_decay`` adds
Adam weight decay to the actor) with PyTorch's default init; Gaussian actor with an unsquashed mean and a
state-independent log-std (init 0, clipped to [-20, 2]); Adam 3e-4 for both; τ = 5e-3; γ = 0.99;
batch 256; states standardised with ``std + 1e-3`` (CORL always normalises).  λ = 1/3 (``awac_lambda``:
CORL's D4RL locomotion configs use 0.3333, its code default is 1.0; FamO2O's AWAC coefficient range
[2, 3] for locomotion is ``1/λ``); AntMaze (``per_family``): λ = 0.1 and ``r - 1``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.offline.common import OfflineActorCritic, gaussian_log_prob, policy_batch, weighted_mean
from rlkit.nets import MLP, QEnsemble
from rlkit.optim import adam, step
from rlkit.population import DIRECT, UpdateOps

EXP_ADV_MAX = 100.0


class GaussianActor(nn.Module):
    """``N(f(s), exp(log σ)²)`` with a state-independent ``log σ``; samples clipped to [-1, 1]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], log_std_min: float = -20.0,
                 log_std_max: float = 2.0) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, action_dim)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.trunk(obs), self.log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``clip(μ(s) + σ ε, -1, 1)`` with ``ε ~ N(0, I)`` (``noise``: ``ε`` drawn beforehand)."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean) if noise is None else noise
        return (mean + log_std.exp() * noise).clamp(-1.0, 1.0)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(action, mean, log_std)


class AWAC(OfflineActorCritic):
    """AWAC (offline); ``critic_for_diagnostics()`` takes normalised observations and actions in [-1, 1]."""

    population = True

    def __init__(self, observation_space, action_space, device="cpu", *, awac_lambda: float = 1.0 / 3.0,
                 actor_lr: float = 3e-4, critic_lr: float = 3e-4, gamma: float = 0.99, tau: float = 5e-3,
                 hidden: Sequence[int] = (256, 256, 256), actor_hidden: Sequence[int] | None = None,
                 critic_hidden: Sequence[int] | None = None, actor_weight_decay: float = 0.0,
                 critic_layernorm: bool = False,
                 normalize_obs: bool = True, reward_scale_by_return: bool = False, reward_scale: float = 1.0,
                 reward_shift: float = 0.0, reweight_eval: bool = False) -> None:
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        actor_hidden = hidden if actor_hidden is None else actor_hidden
        critic_hidden = hidden if critic_hidden is None else critic_hidden
        self.actor = GaussianActor(obs_dim + self.actor_extra_inputs, act_dim, actor_hidden).to(self.device)
        self.critic = QEnsemble(obs_dim, act_dim, critic_hidden, 2, layernorm=critic_layernorm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), actor_lr, weight_decay=actor_weight_decay)
        self.critic_opt = adam(self.critic.parameters(), critic_lr)
        self.awac_lambda, self.gamma, self.tau = awac_lambda, gamma, tau

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.actor(obs)[0] if deterministic else self.actor.sample(obs)

    def update(self, batch) -> UpdateResult:
        return self.update_with(DIRECT, batch)

    def update_with(self, ops: UpdateOps, batch) -> UpdateResult:
        self.num_updates += 1
        # ε of a' ~ π(·|s') and of ã ~ π(·|s), in the order the update uses them
        noise = ops.draw(self.action_noise, batch.action, policy_batch(batch).action)
        critic = ops.map(partial(self._critic_terms, self.priority_feedback), batch, noise[0])
        ops.step(self.critic_opt, critic["loss"])
        actor = ops.map(self._actor_terms, batch, noise[1])
        ops.step(self.actor_opt, actor["loss"])
        ops.polyak(self.critic, self.critic_target, self.tau)
        metrics = {
            "train/critic_loss": critic["loss"].detach(),
            "train/actor_loss": actor["loss"].detach(),
            "train/q_mean": critic["q_mean"],
            "train/adv_weight_mean": actor["adv_weight_mean"],
        }
        return UpdateResult(metrics, critic.get("priorities"))

    def action_noise(self, action: torch.Tensor, policy_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The update's two standard-normal draws: for ``a' ~ π(·|s')`` (main batch) and ``ã ~ π(·|s)`` (policy
        batch), shaped like the batches' actions."""
        return torch.randn_like(action), torch.randn_like(policy_action)

    def _inputs(self, batch) -> tuple[torch.Tensor, ...]:
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        return obs, self.from_env_action(batch.action), self.transform_reward(batch.reward), \
            1.0 - batch.terminated, next_obs

    def _critic_terms(self, with_priorities: bool, batch, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        obs, action, reward, not_done, next_obs = self._inputs(batch)
        with torch.no_grad():
            next_action = self.actor.sample(next_obs, noise)
        q, target, loss = self.critic_terms(obs, action, reward, not_done, next_obs, next_action, batch)
        out = {"loss": loss, "q_mean": q.detach().mean()}
        if with_priorities:
            out["priorities"] = td_priorities(q, target)
        return out

    def _actor_terms(self, batch, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """The actor loss (eq. 9) with the updated critic; ``noise``: the ``ε`` of ``ã ~ π(·|s)``."""
        obs, action = self._inputs(batch)[:2]
        pb, p_obs, p_action = self.policy_inputs(batch, obs, action)
        with torch.no_grad():
            pi_action = self.actor.sample(p_obs, noise)
            q_both = self.critic(torch.cat([p_obs, p_obs]), torch.cat([p_action, pi_action])).min(0).values
            q_data, v = q_both.chunk(2)
            adv_weight = torch.exp((q_data - v) / self.awac_lambda).clamp(max=EXP_ADV_MAX)
        actor_loss = -weighted_mean(adv_weight * self.actor.log_prob(p_obs, p_action), pb.weights)
        return {"loss": actor_loss, "adv_weight_mean": adv_weight.mean()}

    def critic_terms(self, obs, action, reward, not_done, next_obs, next_action, batch
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The TD loss (eq. 4-5) towards ``r + γ (1 - d) min_k Q̄_k(s', a')``; returns ``(Q, y, L_Q)``."""
        with torch.no_grad():
            target = reward + self.gamma * not_done * self.critic_target(next_obs, next_action).min(0).values
        q = self.critic(obs, action)
        return q, target, weighted_mean((q - target).pow(2), self.eval_weights(batch)).sum()

    def critic_step(self, obs, action, reward, not_done, next_obs, next_action, batch
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One TD step (eq. 4-5) towards ``r + γ (1 - d) min_k Q̄_k(s', a')``; returns ``(Q, y, L_Q)``."""
        q, target, critic_loss = self.critic_terms(obs, action, reward, not_done, next_obs, next_action, batch)
        step(self.critic_opt, critic_loss)
        return q, target, critic_loss

    def critic_for_diagnostics(self):
        """``(Q1(obs, act), mean action(obs))`` on normalised observations and actions in [-1, 1]."""
        return self.diagnostics_critic(self.critic.member(0), lambda obs: self.actor(obs)[0].clamp(-1.0, 1.0))
