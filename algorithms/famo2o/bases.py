"""FamO2O (Wang et al. 2023) on IQL, AWAC and CQL: the base's networks and value functions, its actor
turned into the universal model ``π_u(a | s, enc(β))`` and a balance model ``π_b(β | s)``
(:mod:`rlkit.algorithms.famo2o.family`).  Value functions are the base's own; where a base needs policy
actions for them the composed policy ``π_u(·|s, β ~ π_b(·|s))`` supplies them (Sec. 4.2).

Per-update order:

* **IQL** (released code): V (expectile vs the target Q) -> balance model and its temperature (every
  ``balance_every`` updates) -> universal model ``-mean min(exp(β_i (Q̄ - V)), 100) log π_u(a_i|s_i, β_i)``
  (eq. 9, new V) -> Q (TD with the new V) -> Polyak.  The balance loss scores the universal model's
  Gaussian sample with the target critic, as IQL's actor reads ``Q̄``.  Online ``β_i`` come from the
  balance model after its step.  ``advantage_weighting=released`` reproduces the released code
  (``jax_iql/family_actor.py``, ``family_learner.py``) instead: it multiplies the ``(B,)`` advantage by the
  ``(B, 1)`` coefficients, so the loss averages a ``(B, B)`` matrix and each sample's weight is
  ``w_i = mean_j min(exp(β_j A_i), 100)`` (its log-likelihood still conditioned on its own ``β_i``), where
  the paper's eq. 9 (the default, ``paper``) is ``w_i = min(exp(β_i A_i), 100)``; and online it samples
  ``β_i`` from the balance model before the balance step (one step apart).
* **AWAC** (not released; built like the IQL variant): Q (TD with ``a' ~ π_u(·|s', β' ~ π_b(·|s'))``) ->
  balance model (current critic, which AWAC's actor reads) -> universal model with
  ``A_i = min_k Q_k(s_i, a_i) - min_k Q_k(s_i, ã_i)``, ``ã_i ~ π_u(·|s_i, β_i)``, weight
  ``min(exp(β_i A_i), 100)`` (``β = 1/λ``) -> Polyak.
* **CQL** (App. D, released code): all losses at the step's starting parameters, as JaxCQL.  Universal
  model: ``mean[α log π_u(ã|s, β_i) - β_i min_k Q_k(s, ã)]`` (SAC temperature ``α`` auto-tuned on its
  entropy); balance model: ``-mean min_k Q_k(s, π_u(s, β_b(s)))``, no entropy term, every update; critic:
  CQL's, with next-state actions (backup and penalty) at ``β_b(s)`` (the released code reuses the
  coefficient of ``s`` at ``s'``) and current-state penalty actions at the actor loss's ``β_i``.  Offline
  ``β_i`` is uniform and the balance model still learns from the coefficient it would output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.famo2o.family import BalanceModel, Family
from rlkit.algorithms.offline.awac import AWAC, EXP_ADV_MAX
from rlkit.algorithms.offline.common import orthogonal_init_, weighted_mean
from rlkit.algorithms.offline.cql import CQL, CQLActor
from rlkit.algorithms.offline.iql import ACTION_CLIP, IQL
from rlkit.errors import ConfigError
from rlkit.nets import polyak_update
from rlkit.optim import step


class FamilyMixin:
    """What every FamO2O variant adds to its base: the :class:`Family`, acting through the balance model,
    the phase switch and the family's checkpoint state."""

    family: Family
    #: the FamO2O update (``update``) is not written as ``update_with``: no populations
    population = False

    def begin_phase(self, phase: str) -> None:
        """Offline: uniform coefficients for the universal model; online: the balance model's."""
        self.family.online = phase == "online"

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """``a ~ π_u(·|s, β)`` (its mean when ``deterministic``), ``β`` the balance model's mean coefficient."""
        beta = self.family.acting_coefficients(obs)
        return super().policy_action(self.family.condition(obs, beta), deterministic)

    def critic_for_diagnostics(self):
        return self.diagnostics_critic(self.critic.member(0), lambda obs: self.policy_action(obs, True))

    def family_metrics(self, beta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"train/beta_mean": beta.mean(), "train/beta_std": beta.std()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "family": self.family.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "family" not in state:
            raise KeyError("checkpoint lacks algorithm state ['family']")
        self.family.load_state_dict(state["family"])


class FamO2OIQL(FamilyMixin, IQL):
    """IQL + FamO2O (module docstring); ``family``: :class:`Family` keywords, the rest IQL's."""

    def __init__(self, observation_space, action_space, device="cpu", *, family: Mapping[str, Any],
                 balance_hidden=(256, 256), advantage_weighting: str = "paper", **base: Any) -> None:
        self.actor_extra_inputs = int(family.get("encoding_dim", 6))
        super().__init__(observation_space, action_space, device, **base)
        self.advantage_weighting = advantage_weighting
        model = BalanceModel(self.obs_dim, balance_hidden)
        if base.get("orthogonal_init", True):
            orthogonal_init_(model)
        self.family = Family(model, device=self.device, **family)

    def balance_q(self, obs: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """``min_k Q̄_k(s, a)``, ``a = μ(s, β) + σ ε`` (the universal model's reparameterised Gaussian sample)."""
        mean, log_std = self.actor(self.family.condition(obs, beta))
        action = mean + log_std.exp() * torch.randn_like(mean)
        return self.critic_target(obs, action).min(0).values

    def advantage_weights(self, beta: torch.Tensor, advantage: torch.Tensor, weights: torch.Tensor
                          ) -> torch.Tensor:
        """Per-sample weights of the universal model's loss (module docstring): ``paper``
        ``min(exp(β_i A_i) w_i, 100)``; ``released`` ``mean_j min(exp(β_j A_i), 100) · w_i``."""
        if self.advantage_weighting == "released":
            return torch.exp(beta[:, None] * advantage[None, :]).clamp(max=EXP_ADV_MAX).mean(0) * weights
        return (torch.exp(beta * advantage) * weights).clamp(max=EXP_ADV_MAX)

    def update(self, batch) -> UpdateResult:
        self.num_updates += 1
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action).clamp(-ACTION_CLIP, ACTION_CLIP)
        reward, not_done = self.transform_reward(batch.reward), 1.0 - batch.terminated
        c = self.eval_weights(batch)
        target_q, v, value_loss = self.value_step(obs, action, c)

        metrics: dict[str, Any] = {}
        released = self.advantage_weighting == "released"
        if released:  # family_learner.py: the actor's coefficients come from the balance model before its step
            beta = self.family.training_coefficients(obs)
        if self.family.trains(self.num_updates):
            metrics.update(self.family.update(obs, lambda beta: self.balance_q(obs, beta)))
        if not released:
            beta = self.family.training_coefficients(obs)
        with torch.no_grad():
            advantage = target_q - self.value(obs).squeeze(-1)
            adv_weight = self.advantage_weights(beta, advantage, batch.weights)
        actor_loss = -(adv_weight * self.actor.log_prob(self.family.condition(obs, beta), action)).mean()
        step(self.actor_opt, actor_loss)
        self.actor_schedule.step()

        q, target, critic_loss = self.critic_step(obs, action, reward, not_done, next_obs, c)
        self.family.tick()
        metrics.update({
            "train/value_loss": value_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/critic_loss": critic_loss.detach(),
            "train/q_mean": q.detach().mean(),
            "train/v_mean": v.detach().mean(),
            "train/adv_weight_mean": adv_weight.mean(),
            **self.family_metrics(beta),
        })
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)


class FamO2OAWAC(FamilyMixin, AWAC):
    """AWAC + FamO2O (module docstring; the paper's AWAC variant is not released)."""

    def __init__(self, observation_space, action_space, device="cpu", *, family: Mapping[str, Any],
                 balance_hidden=(256, 256), **base: Any) -> None:
        if base.get("variant", "corl") != "corl":
            raise ConfigError("FamO2O's AWAC variant builds on AWAC's CORL reading; drop "
                              "algo.base_params.variant")
        self.actor_extra_inputs = int(family.get("encoding_dim", 6))
        super().__init__(observation_space, action_space, device, **base)
        self.family = Family(BalanceModel(self.obs_dim, balance_hidden), device=self.device, **family)

    def composed_coefficients(self, obs: torch.Tensor) -> torch.Tensor:
        """``β ~ π_b(·|s)`` (stop-gradient) for the composed policy the critic backs up (the ablations'
        selector under ``balance=random|anneal``)."""
        with torch.no_grad():
            if self.family.balance != "model":
                return self.family.acting_coefficients(obs)
            return self.family.sample(obs)[0]

    def balance_q(self, obs: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.actor(self.family.condition(obs, beta))
        action = (mean + log_std.exp() * torch.randn_like(mean)).clamp(-1.0, 1.0)
        return self.critic(obs, action).min(0).values

    def update(self, batch) -> UpdateResult:
        self.num_updates += 1
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action)
        reward, not_done = self.transform_reward(batch.reward), 1.0 - batch.terminated

        with torch.no_grad():
            next_beta = self.composed_coefficients(next_obs)
            next_action = self.actor.sample(self.family.condition(next_obs, next_beta))
        q, target, critic_loss = self.critic_step(obs, action, reward, not_done, next_obs, next_action, batch)

        metrics: dict[str, Any] = {}
        if self.family.trains(self.num_updates):
            metrics.update(self.family.update(obs, lambda beta: self.balance_q(obs, beta)))

        beta = self.family.training_coefficients(obs)
        conditioned = self.family.condition(obs, beta)
        with torch.no_grad():
            pi_action = self.actor.sample(conditioned)
            q_both = self.critic(torch.cat([obs, obs]), torch.cat([action, pi_action])).min(0).values
            q_data, v = q_both.chunk(2)
            adv_weight = torch.exp(beta * (q_data - v)).clamp(max=EXP_ADV_MAX)
        actor_loss = -weighted_mean(adv_weight * self.actor.log_prob(conditioned, action), batch.weights)
        step(self.actor_opt, actor_loss)
        polyak_update(self.critic, self.critic_target, self.tau)
        self.family.tick()

        metrics.update({
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/q_mean": q.detach().mean(),
            "train/adv_weight_mean": adv_weight.mean(),
            **self.family_metrics(beta),
        })
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)


class FamO2OCQL(FamilyMixin, CQL):
    """CQL + FamO2O (the paper's App. D variant; module docstring)."""

    def __init__(self, observation_space, action_space, device="cpu", *, family: Mapping[str, Any],
                 balance_hidden=(256, 256), **base: Any) -> None:
        self.actor_extra_inputs = int(family.get("encoding_dim", 6))
        super().__init__(observation_space, action_space, device, **base)
        if self.update_order != "corl":
            raise ConfigError("FamO2O's CQL base steps in JaxCQL's order only; drop algo.base_params.update_order")
        model = CQLActor(self.obs_dim, 1, balance_hidden)
        if base.get("orthogonal_init", True):
            orthogonal_init_(model.trunk, last_gain=1e-2)
        self.family = Family(model, device=self.device, **family)

    def update(self, batch) -> UpdateResult:
        self.num_updates += 1
        fam = self.family
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action)
        reward, not_done = self.transform_reward(batch.reward), 1.0 - batch.terminated
        alpha = self.alpha_multiplier
        if self.autotune:
            alpha = self.log_alpha.detach().exp() * self.alpha_multiplier

        # the balance model's coefficient at s (reparameterised, for its own loss; detached elsewhere)
        if fam.balance == "model":
            beta_b, _ = fam.sample(obs)
        else:
            beta_b = fam.acting_coefficients(obs)
        beta = beta_b.detach() if fam.online and fam.balance == "model" else fam.training_coefficients(obs)
        policy_obs = fam.condition(obs, beta)
        dist = self.actor(policy_obs)
        new_action, logp = dist.rsample_with_log_prob()
        if self.num_updates <= self.bc_steps:
            objective = dist.log_prob(action)
        else:
            objective = beta * self.critic(obs, new_action).min(0).values
        actor_loss = weighted_mean(alpha * logp - objective, batch.weights)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        balance_loss = None
        if fam.trains(self.num_updates) and self.num_updates > self.bc_steps:
            balance_action, _ = self.actor(fam.condition(obs, beta_b)).rsample_with_log_prob()
            balance_loss = -self.critic(obs, balance_action).min(0).values.mean()

        next_policy_obs = fam.condition(next_obs, beta_b.detach())
        critic_loss, parts = self.critic_loss(obs, action, next_obs, reward, not_done, alpha, batch,
                                              policy_obs=policy_obs.detach(), policy_next_obs=next_policy_obs)
        q, target = parts["q"], parts["target"]

        metrics: dict[str, Any] = {}
        if balance_loss is not None:  # first: its graph runs through the actor and critic stepped below
            step(fam.opt, balance_loss, fam.params)
            metrics.update({"train/balance_loss": balance_loss.detach(),
                            "train/balance_beta_mean": beta_b.detach().mean()})
        if self.autotune:
            step(self.alpha_opt, alpha_loss)
        step(self.actor_opt, actor_loss, self._actor_params)
        if self.lagrange:
            step(self.alpha_prime_opt, parts["alpha_prime_loss"])
        step(self.critic_opt, critic_loss)
        if self.num_updates % self.target_update_period == 0:
            polyak_update(self.critic, self.critic_target, self.tau)
        fam.tick()

        metrics.update({
            "train/critic_loss": critic_loss.detach(),
            "train/td_loss": parts["td_loss"].detach(),
            "train/cql_gap": parts["cql_gap"].detach().mean(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha": torch.as_tensor(alpha),
            "train/entropy": -logp.detach().mean(),
            "train/q_mean": q.detach().mean(),
            **self.family_metrics(beta),
        })
        if self.lagrange:
            metrics["train/alpha_prime"] = parts["alpha_prime"].detach()
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)
