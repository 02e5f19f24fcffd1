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
the actor term (its ``Q``, ``V`` and log-likelihood) reads ``batch.policy_batch``.

Defaults follow CORL (the paper's offline D4RL setting is not pinned by the paper itself): actor and
twin critics 3x256 ReLU MLPs (``actor_hidden``/``critic_hidden`` set them apart; ``actor_weight_decay`` adds
Adam weight decay to the actor) with PyTorch's default init; Gaussian actor with an unsquashed mean and a
state-independent log-std (init 0, clipped to [-20, 2]); Adam 3e-4 for both; τ = 5e-3; γ = 0.99;
batch 256; states standardised with ``std + 1e-3`` (CORL always normalises).  λ = 1/3 (``awac_lambda``:
CORL's D4RL locomotion configs use 0.3333, its code default is 1.0; FamO2O's AWAC coefficient range
[2, 3] for locomotion is ``1/λ``); AntMaze (``per_family``): λ = 0.1 and ``r - 1``.

``variant=released`` (``algo.variant``) reproduces the authors' trainer instead (rail-berkeley/rlkit,
``rlkit/torch/sac/awac_trainer.py`` with ``examples/awac/mujoco/awac1.py``; its settings come from
``settings.released`` of ``configs/algo/awac.yaml``): every loss at the step's starting parameters, then the
Q step, then the policy step, then Polyak --

* policy ``N(tanh(f(s)), σ²)``, ``log σ = lo + sigmoid(ℓ) (hi - lo)`` with state-independent logits ``ℓ``
  (``[lo, hi] = [-6, 0]``), samples not clipped (:class:`TanhMeanGaussianActor`);
* critic: ``y = r + γ (1 - d) min_k Q̄_k(s', a')``, ``a' ~ π(·|s')``;
* actor: ``A_i = min_k Q_k(s_i, a_i) - min_k Q_k(s_i, ã_i)``, ``ã_i ~ π(·|s_i)``, both with the critic
  *before* its step; batch-softmax weights ``w = B · softmax(A / β)`` (``awac_beta`` β = 2, no cap):
  ``L_π = -mean_i w_i log π(a_i | s_i)``;
* 4x256 policy with Adam weight decay 1e-4, 2x256 critics, batch 1024, no state normalisation.

The paper (eq. 9, Sec. 5) writes ``exp(A / λ)`` normalised by ``Z(s)``; the released trainer's
``normalize_over_batch=True`` normalises over the batch instead.  Its "pre-training" on the prior data
(``q_num_pretrain2_steps=50000``) runs this same update with the policy stepping too (``update_policy`` is
True in that phase; only ``q_num_pretrain1_steps``, 0 there, would train Q alone), so offline it is 50k
ordinary updates.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.offline.common import OfflineActorCritic, gaussian_log_prob, policy_batch, weighted_mean
from rlkit.errors import ConfigError
from rlkit.nets import MLP, QEnsemble, polyak_update
from rlkit.optim import adam, step
from rlkit.population import DIRECT, UpdateOps

EXP_ADV_MAX = 100.0
VARIANTS = ("corl", "released")


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


class TanhMeanGaussianActor(nn.Module):
    """The released AWAC policy: ``N(tanh(f(s)), σ²)`` with ``log σ = lo + sigmoid(ℓ) (hi - lo)`` and
    state-independent logits ``ℓ`` (init 0); samples are not clipped (``GaussianPolicy`` with
    ``std_architecture="values"``)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], log_std_min: float = -6.0,
                 log_std_max: float = 0.0) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, action_dim)
        self.log_std_logits = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = self.log_std_min + torch.sigmoid(self.log_std_logits) * (self.log_std_max - self.log_std_min)
        mean = torch.tanh(self.trunk(obs))
        return mean, log_std.expand_as(mean)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """``μ + σ ε`` with ``ε`` drawn as ``torch.distributions.Normal.rsample`` draws it."""
        mean, log_std = self(obs)
        return torch.distributions.Normal(mean, log_std.exp()).rsample()

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(action, mean, log_std)


class AWAC(OfflineActorCritic):
    """AWAC (offline); ``critic_for_diagnostics()`` takes normalised observations and actions in [-1, 1]."""

    population = True

    def __init__(self, observation_space, action_space, device="cpu", *, variant: str = "corl",
                 awac_lambda: float = 1.0 / 3.0, awac_beta: float = 2.0, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, gamma: float = 0.99, tau: float = 5e-3,
                 hidden: Sequence[int] = (256, 256, 256), actor_hidden: Sequence[int] | None = None,
                 critic_hidden: Sequence[int] | None = None, actor_weight_decay: float = 0.0,
                 critic_layernorm: bool = False,
                 normalize_obs: bool = True, reward_scale_by_return: bool = False, reward_scale: float = 1.0,
                 reward_shift: float = 0.0, reweight_eval: bool = False,
                 settings: dict | None = None) -> None:
        del settings  # configs/algo/awac.yaml's per-variant defaults, already interpolated into the keys above
        if variant not in VARIANTS:
            raise ConfigError(f"algo.variant={variant!r}; choose one of: {', '.join(VARIANTS)}")
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        actor_hidden = hidden if actor_hidden is None else actor_hidden
        critic_hidden = hidden if critic_hidden is None else critic_hidden
        actor_cls = TanhMeanGaussianActor if variant == "released" else GaussianActor
        self.actor = actor_cls(obs_dim + self.actor_extra_inputs, act_dim, actor_hidden).to(self.device)
        self.critic = QEnsemble(obs_dim, act_dim, critic_hidden, 2, layernorm=critic_layernorm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), actor_lr, weight_decay=actor_weight_decay)
        self.critic_opt = adam(self.critic.parameters(), critic_lr)
        self.awac_lambda, self.gamma, self.tau = awac_lambda, gamma, tau
        self.variant, self.awac_beta = variant, float(awac_beta)

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.actor(obs)[0] if deterministic else self.actor.sample(obs)

    def update(self, batch) -> UpdateResult:
        if self.variant == "released":
            return self.released_update(batch)
        return self.update_with(DIRECT, batch)

    def population_refusal(self) -> str | None:
        if self.variant == "released":
            return "AWAC with algo.variant=released (the authors' update is not written for populations); drop it"
        return None

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

    def released_update(self, batch) -> UpdateResult:
        """The authors' update (``variant=released``, module docstring): all losses at the starting
        parameters; draws in the trainer's order (``ã ~ π(·|s)``, then ``a' ~ π(·|s')``)."""
        self.num_updates += 1
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action)
        reward, not_done = self.transform_reward(batch.reward), 1.0 - batch.terminated
        pb, p_obs, p_action = self.policy_inputs(batch, obs, action)
        with torch.no_grad():
            pi_action = self.actor.sample(p_obs)
            next_action = self.actor.sample(next_obs)
            target = reward + self.gamma * not_done * self.critic_target(next_obs, next_action).min(0).values
            q_data, v = self.critic(torch.cat([p_obs, p_obs]), torch.cat([p_action, pi_action])
                                    ).min(0).values.chunk(2)
            adv_weight = len(q_data) * torch.softmax((q_data - v) / self.awac_beta, dim=0)
        q = self.critic(obs, action)
        critic_loss = weighted_mean((q - target).pow(2), self.eval_weights(batch)).sum()
        actor_loss = -weighted_mean(adv_weight * self.actor.log_prob(p_obs, p_action), pb.weights)
        step(self.critic_opt, critic_loss)
        step(self.actor_opt, actor_loss)
        polyak_update(self.critic, self.critic_target, self.tau)
        metrics = {
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/q_mean": q.detach().mean(),
            "train/adv_weight_max": adv_weight.max(),
        }
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)

    def critic_step(self, obs, action, reward, not_done, next_obs, next_action, batch
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One TD step (eq. 4-5) towards ``r + γ (1 - d) min_k Q̄_k(s', a')``; returns ``(Q, y, L_Q)``."""
        q, target, critic_loss = self.critic_terms(obs, action, reward, not_done, next_obs, next_action, batch)
        step(self.critic_opt, critic_loss)
        return q, target, critic_loss

    def critic_for_diagnostics(self):
        """``(Q1(obs, act), mean action(obs))`` on normalised observations and actions in [-1, 1]."""
        return self.diagnostics_critic(self.critic.member(0), lambda obs: self.actor(obs)[0].clamp(-1.0, 1.0))
