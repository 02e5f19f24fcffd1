"""Implicit Q-Learning (Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning with Implicit
Q-Learning").

One update, in the reference code's order (value, actor, critic, target):

* value (eq. 5), expectile regression towards the target critic:
  ``u_i = min_k Q̄_k(s_i, a_i) - V(s_i)``,  ``L_V = mean_i c_i |τ - 1(u_i < 0)| u_i²``
* actor (eq. 7), advantage-weighted regression with the *new* ``V``:
  ``L_π = -mean_i b_i min(exp(β (min_k Q̄_k(s_i, a_i) - V(s_i))) · w_i, 100) · log π(a_i | s_i)`` (``b_i`` the
  policy batch's optional ``bc_weight`` column, 1 when absent: OAP's relaxed rows)
* critic (eq. 6): ``y = r + γ (1 - d) V(s')``, ``L_Q = mean_i c_i Σ_k (Q_k(s_i, a_i) - y_i)²``
* target: Polyak averaging with ``τ_target``.

``w_i`` are the policy batch's weights and sit *inside* the cap of 100, as in OPER's released IQL code
(Yue et al. 2023); ``c_i = w_i`` only with ``reweight_eval=True``.  With decoupled
resampling the actor term reads ``batch.policy_batch`` (its own ``Q̄ - V``).

Networks follow the reference (JAX) code: twin Q and V are 2x256 ReLU MLPs; the actor is a 2x256 MLP
whose mean is passed through tanh, with a state-independent log-std parameter (init 0, clipped to
[-5, 2]) and optional dropout (0.1 on Kitchen/Adroit); all layers orthogonally initialised (gain sqrt 2),
zero biases.  Adam 3e-4 for all three; the actor's learning rate follows a cosine decay to 0 over
``max_steps`` (the YAML sets ``max_steps: ${train.steps}``); ``actor_lr_schedule=constant`` keeps it fixed, as
IQL's online fine-tuning configuration does (the YAML sets it for ``regime=offline_to_online``).
Dataset actions are clipped to ``±(1 - 1e-5)``.  No observation normalisation (the reference code has none;
``normalize_obs=true`` turns on TD3+BC-style standardisation).  Rewards: locomotion ``r · 1000 / (G_max - G_min)``
(``reward_scale_by_return``), AntMaze ``r - 1`` (``reward_shift``), both set per family in the YAML.
``critic_layernorm`` puts LayerNorm in the Q and V networks.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.offline.common import (
    OfflineActorCritic,
    bc_weights,
    constant_lr,
    cosine_lr_lambda,
    gaussian_log_prob,
    orthogonal_init_,
    weighted_mean,
)
from rlkit.errors import ConfigError
from rlkit.nets import MLP, QEnsemble, polyak_update
from rlkit.optim import adam, step
from rlkit.population import DIRECT, UpdateOps

ACTION_CLIP = 1.0 - 1e-5
EXP_ADV_MAX = 100.0


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Per-sample asymmetric squared loss ``|τ - 1(u < 0)| u²`` (IQL eq. 5, ``L_2^τ``)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.pow(2)


class GaussianMeanTanhActor(nn.Module):
    """``N(tanh(f(s)), exp(log σ)²)`` with a state-independent ``log σ`` (the IQL reference policy)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], dropout: float = 0.0,
                 log_std_min: float = -5.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, action_dim, dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)`` of the action distribution."""
        return torch.tanh(self.trunk(obs)), self.log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(action, mean, log_std)


class IQL(OfflineActorCritic):
    """IQL; ``critic_for_diagnostics()`` takes (optionally normalised) observations and actions in [-1, 1]."""

    population = True

    def __init__(self, observation_space, action_space, device="cpu", *, expectile: float = 0.7,
                 temperature: float = 3.0, actor_lr: float = 3e-4, critic_lr: float = 3e-4,
                 value_lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005, max_steps: int = 1_000_000,
                 actor_lr_schedule: str = "cosine",
                 hidden: Sequence[int] = (256, 256), dropout: float = 0.0, critic_layernorm: bool = False,
                 orthogonal_init: bool = True, normalize_obs: bool = False,
                 reward_scale_by_return: bool = False, reward_scale: float = 1.0, reward_shift: float = 0.0,
                 reweight_eval: bool = False) -> None:
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        self.actor = GaussianMeanTanhActor(obs_dim + self.actor_extra_inputs, act_dim, hidden, dropout=dropout)
        self.critic = QEnsemble(obs_dim, act_dim, hidden, 2, layernorm=critic_layernorm)
        self.value = MLP(obs_dim, hidden, 1, layernorm=critic_layernorm)
        if orthogonal_init:
            for net in (self.actor, self.critic, self.value):
                orthogonal_init_(net)
        for net in (self.actor, self.critic, self.value):
            net.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), actor_lr)
        self.critic_opt = adam(self.critic.parameters(), critic_lr)
        self.value_opt = adam(self.value.parameters(), value_lr)
        if actor_lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"algo.actor_lr_schedule={actor_lr_schedule!r}; choose cosine or constant")
        decay = cosine_lr_lambda(max_steps) if actor_lr_schedule == "cosine" else constant_lr
        self.actor_schedule = torch.optim.lr_scheduler.LambdaLR(self.actor_opt, decay)
        self.expectile, self.temperature = expectile, temperature
        self.gamma, self.tau, self.dropout = gamma, tau, dropout

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        if self.dropout > 0:
            self.actor.eval()
        mean, log_std = self.actor(obs)
        if self.dropout > 0:
            self.actor.train()
        return mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)

    def population_refusal(self) -> str | None:
        if self.dropout > 0:
            return "IQL with algo.dropout > 0 draws dropout masks inside the update; set algo.dropout=0"
        return None

    def update(self, batch) -> UpdateResult:
        return self.update_with(DIRECT, batch)

    def update_with(self, ops: UpdateOps, batch) -> UpdateResult:
        self.num_updates += 1
        value = ops.map(self._value_terms, batch)
        ops.step(self.value_opt, value["loss"])
        actor = ops.map(self._actor_terms, batch, value["target_q"])
        ops.step(self.actor_opt, actor["loss"])
        ops.schedule(self.actor_schedule)
        critic = ops.map(partial(self._critic_terms, self.priority_feedback), batch)
        ops.step(self.critic_opt, critic["loss"])
        ops.polyak(self.critic, self.critic_target, self.tau)
        metrics = {
            "train/value_loss": value["loss"].detach(),
            "train/actor_loss": actor["loss"].detach(),
            "train/critic_loss": critic["loss"].detach(),
            "train/q_mean": critic["q_mean"],
            "train/v_mean": value["v_mean"],
            "train/adv_weight_mean": actor["adv_weight_mean"],
        }
        return UpdateResult(metrics, critic.get("priorities"))

    def _inputs(self, batch) -> tuple[torch.Tensor, ...]:
        """``(obs, action, reward, not_done, next_obs, c)`` of the batch in the networks' spaces."""
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action).clamp(-ACTION_CLIP, ACTION_CLIP)
        return obs, action, self.transform_reward(batch.reward), 1.0 - batch.terminated, next_obs, \
            self.eval_weights(batch)

    def _value_terms(self, batch) -> dict[str, torch.Tensor]:
        obs, action, *_, c = self._inputs(batch)
        target_q, v, loss = self.value_terms(obs, action, c)
        return {"loss": loss, "target_q": target_q, "v_mean": v.detach().mean()}

    def _actor_terms(self, batch, target_q: torch.Tensor) -> dict[str, torch.Tensor]:
        """The actor loss (eq. 7) with the updated ``V``; ``target_q``: ``min_k Q̄_k(s, a)`` of the main batch."""
        obs, action = self._inputs(batch)[:2]
        pb, p_obs, p_action = self.policy_inputs(batch, obs, action, ACTION_CLIP)
        with torch.no_grad():
            p_target_q = target_q if pb is batch else self.critic_target(p_obs, p_action).min(0).values
            advantage = p_target_q - self.value(p_obs).squeeze(-1)
            adv_weight = (torch.exp(self.temperature * advantage) * pb.weights).clamp(max=EXP_ADV_MAX)
            relax = bc_weights(pb)
            if relax is not None:  # OAP's relaxed rows: the likelihood term is the behaviour-cloning constraint
                adv_weight = adv_weight * relax
        actor_loss = -(adv_weight * self.actor.log_prob(p_obs, p_action)).mean()
        return {"loss": actor_loss, "adv_weight_mean": adv_weight.mean()}

    def _critic_terms(self, with_priorities: bool, batch) -> dict[str, torch.Tensor]:
        obs, action, reward, not_done, next_obs, c = self._inputs(batch)
        q, target, loss = self.critic_terms(obs, action, reward, not_done, next_obs, c)
        out = {"loss": loss, "q_mean": q.detach().mean()}
        if with_priorities:
            out["priorities"] = td_priorities(q, target)
        return out

    def value_terms(self, obs: torch.Tensor, action: torch.Tensor, c: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The expectile value loss (eq. 5); returns ``(min_k Q̄_k(s, a), V(s), L_V)``."""
        with torch.no_grad():
            target_q = self.critic_target(obs, action).min(0).values
        v = self.value(obs).squeeze(-1)
        return target_q, v, weighted_mean(expectile_loss(target_q - v, self.expectile), c)

    def value_step(self, obs: torch.Tensor, action: torch.Tensor, c: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of the expectile value loss (eq. 5); returns ``(min_k Q̄_k(s, a), V(s) before, L_V)``."""
        target_q, v, value_loss = self.value_terms(obs, action, c)
        step(self.value_opt, value_loss)
        return target_q, v, value_loss

    def critic_terms(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, not_done: torch.Tensor,
                     next_obs: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The TD loss towards ``r + γ (1 - d) V(s')`` (eq. 6); returns ``(Q, y, L_Q)``."""
        with torch.no_grad():
            target = reward + self.gamma * not_done * self.value(next_obs).squeeze(-1)
        q = self.critic(obs, action)
        return q, target, weighted_mean((q - target).pow(2).sum(0), c)

    def critic_step(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, not_done: torch.Tensor,
                    next_obs: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One TD step towards ``r + γ (1 - d) V(s')`` (eq. 6) and the Polyak update; returns ``(Q, y, L_Q)``."""
        q, target, critic_loss = self.critic_terms(obs, action, reward, not_done, next_obs, c)
        step(self.critic_opt, critic_loss)
        polyak_update(self.critic, self.critic_target, self.tau)
        return q, target, critic_loss

    def critic_for_diagnostics(self):
        """``(Q1(obs, act), tanh-mean action(obs))`` on the network's observations and actions in [-1, 1]."""
        return self.diagnostics_critic(self.critic.member(0), lambda obs: self.actor(obs)[0])
