"""One-step RL (Brandfonbrener, Whitney, Ranganath & Bruna 2021, "Offline RL Without Off-Policy
Evaluation"), in the configuration of OPER's released code (Yue et al. 2023): behaviour estimate
``β̂``, SARSA evaluation of ``β̂``, one step of exponentially-weighted policy improvement.

Three stages, laid out on the update counter ``t`` (1-based) so the regime just calls ``update()``:

1. ``t ≤ max(bc_steps, q_steps)`` -- **evaluation**, two independent fits side by side on the same batch
   (neither reads the other, so running them together is the same algorithm as the reference code's
   sequential ``β̂``-then-``Q`` loop, in fewer steps):

   * ``β̂`` (while ``t ≤ bc_steps``): ``L_β = -mean_i c_i log β̂(a_i | s_i)`` (Gaussian);
   * ``Q`` by SARSA (while ``t ≤ q_steps``), with the dataset's next action ``a'_i``:
     ``y_i = r_i + γ (1 - d_i) Q̄(s'_i, a'_i)``, ``L_Q = Σ_i m_i c_i (Q(s_i, a_i) - y_i)² / Σ_i m_i``
     (``m_i = 0`` for rows cut by a timeout, which have no next action; the reference drops them);
     ``Q̄ ← τ Q + (1 - τ) Q̄`` every ``target_update_period`` steps.

2. ``t = max(bc_steps, q_steps) + 1`` -- ``π ← β̂`` (weights copied; ``π``'s optimiser is still fresh).
3. the next ``policy_steps`` updates -- **improvement** by exponentially-weighted regression:
   ``b(s) = mean_{j≤n} Q(s, a_j)``, ``a_j ~ β̂(·|s)``,
   ``L_π = -mean_i w_i · min(exp(T (Q(s_i, a_i) - b(s_i))), 100) · log π(clip(a_i) | s_i)``
   with ``π`` a Gaussian truncated to ``[-1, 1]``.  Later updates do nothing (``train/phase`` = 3).

``act`` uses ``β̂`` until stage 3 begins and ``π`` from then on.  Weights (OPER): ``w_i`` (the policy
batch's) multiply the policy term outside the cap; ``c_i = w_i`` for the ``β̂`` and SARSA terms only with
``reweight_eval=True``.  Decoupled resampling: the policy term reads ``batch.policy_batch``.

Defaults (``configs/algo/onestep.yaml``), from the onestep-rl / OPER Hydra configs: 2x1024 ReLU MLPs for
``β̂``, ``π`` and ``Q`` (one Q network: ``q: sarsa``); policy heads with ``μ = tanh(·)`` and
``log σ ∈ (-5, 0)`` by a tanh soft-clamp; Adam 1e-4 for all; batch 512; ``bc_steps`` 5e5, ``q_steps`` 2e6,
``policy_steps`` 1e5 (``train.steps`` = 2.1e6); τ = 0.005, target update every 2 steps; γ = 0.99;
``n = 10`` baseline samples; ``T = 1.0`` (OPER's runs; onestep-rl's config default is 0.01); no state
normalisation; actions clipped to ``±(1 - 1e-4)`` for ``π``'s log-likelihood.  The SARSA next actions
are looked up by ``batch.indices`` in the dataset given to ``on_dataset`` (the offline regime stores the
dataset rows in order).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.offline.common import (
    OfflineActorCritic,
    gaussian_log_prob,
    policy_batch,
    weighted_mean,
)
from rlkit.errors import ConfigError
from rlkit.nets import MLP, QEnsemble, polyak_update
from rlkit.optim import adam, step

EXP_ADV_MAX = 100.0
STABLE_ACTION = 1.0 - 1e-4
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class BoundedGaussianPolicy(nn.Module):
    """``(μ, log σ)`` with ``μ = tanh(f_μ(s))`` and ``log σ = -5 + 2.5 (tanh(f_σ(s)) + 1) ∈ (-5, 0)``."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 0.0

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, 2 * action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.trunk(obs).chunk(2, dim=-1)
        lo, hi = self.LOG_STD_MIN, self.LOG_STD_MAX
        return torch.tanh(mu), lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1.0)


def _normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x.pow(2) - LOG_SQRT_2PI)


def truncated_normal_log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
                              low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """``Σ_d log [φ(z_d) / (σ_d Z_d)]``, ``z = (a - μ)/σ``, ``Z = Φ((high - μ)/σ) - Φ((low - μ)/σ)``."""
    std = log_std.exp()
    z_mass = torch.special.ndtr((high - mean) / std) - torch.special.ndtr((low - mean) / std)
    z_mass = z_mass.clamp_min(1e-8)
    z = (action - mean) / std
    return (-0.5 * z.pow(2) - LOG_SQRT_2PI - z_mass.log() - log_std).sum(-1)


def truncated_normal_mean(mean: torch.Tensor, log_std: torch.Tensor, low: float = -1.0,
                          high: float = 1.0) -> torch.Tensor:
    """``μ + σ (φ(α) - φ(β)) / Z`` with ``α, β`` the standardised bounds."""
    std = log_std.exp()
    alpha, beta = (low - mean) / std, (high - mean) / std
    z_mass = (torch.special.ndtr(beta) - torch.special.ndtr(alpha)).clamp_min(1e-8)
    return mean + std * (_normal_pdf(alpha) - _normal_pdf(beta)) / z_mass


def truncated_normal_sample(mean: torch.Tensor, log_std: torch.Tensor, low: float = -1.0,
                            high: float = 1.0) -> torch.Tensor:
    """Inverse-CDF sample of the Gaussian truncated to ``[low, high]``."""
    std = log_std.exp()
    cdf_lo = torch.special.ndtr((low - mean) / std)
    cdf_hi = torch.special.ndtr((high - mean) / std)
    u = cdf_lo + (cdf_hi - cdf_lo) * torch.rand_like(mean)
    eps = torch.finfo(mean.dtype).eps
    return (mean + std * torch.special.ndtri(u.clamp(eps, 1 - eps))).clamp(low, high)


class OneStepRL(OfflineActorCritic):
    """One-step RL; ``critic_for_diagnostics()`` takes (optionally normalised) obs and actions in [-1, 1]."""

    def __init__(self, observation_space, action_space, device="cpu", *, bc_steps: int = 500_000,
                 q_steps: int = 2_000_000, policy_steps: int = 100_000, temperature: float = 1.0,
                 baseline_samples: int = 10, behavior_lr: float = 1e-4, critic_lr: float = 1e-4,
                 policy_lr: float = 1e-4, gamma: float = 0.99, tau: float = 0.005,
                 target_update_period: int = 2, hidden: Sequence[int] = (1024, 1024),
                 critic_layernorm: bool = False, normalize_obs: bool = False,
                 reward_scale_by_return: bool = False, reward_scale: float = 1.0, reward_shift: float = 0.0,
                 reweight_eval: bool = False) -> None:
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        self.behavior = BoundedGaussianPolicy(obs_dim, act_dim, hidden).to(self.device)
        self.policy = BoundedGaussianPolicy(obs_dim, act_dim, hidden).to(self.device)
        self.critic = QEnsemble(obs_dim, act_dim, hidden, 1, layernorm=critic_layernorm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.behavior_opt = adam(self.behavior.parameters(), behavior_lr)
        self.policy_opt = adam(self.policy.parameters(), policy_lr)
        self.critic_opt = adam(self.critic.parameters(), critic_lr)
        self.bc_steps, self.q_steps, self.policy_steps = int(bc_steps), int(q_steps), int(policy_steps)
        self.temperature, self.baseline_samples = temperature, int(baseline_samples)
        self.gamma, self.tau, self.target_update_period = gamma, tau, int(target_update_period)
        self._sarsa: dict[str, torch.Tensor] = {}  # dataset lookups; rebuilt by on_dataset, not checkpointed

    # ------------------------------------------------------------------ stages
    @property
    def policy_start(self) -> int:
        """Updates spent on the evaluation stage; the policy stage starts after them."""
        return max(self.bc_steps, self.q_steps)

    @property
    def phase(self) -> int:
        """1: fitting β̂ and Q; 2: improving π; 3: done."""
        if self.num_updates <= self.policy_start:
            return 1
        return 2 if self.num_updates <= self.policy_start + self.policy_steps else 3

    def on_dataset(self, dataset) -> None:
        """Normalisers, reward scale, and the dataset's next action of every row (SARSA's ``a'``)."""
        super().on_dataset(dataset)
        actions = np.asarray(dataset.actions, dtype=np.float32)
        next_actions = np.concatenate([actions[1:], actions[-1:]])
        # a' exists when the row continues its episode; terminal rows never bootstrap, so any a' will do
        valid = np.asarray(dataset.terminals, dtype=bool) | ~np.asarray(dataset.done_float, dtype=bool)
        self._sarsa = {
            "next_action": self.from_env_action(self.as_tensor(next_actions)),
            "valid": self.as_tensor(valid.astype(np.float32)),
        }

    def _active_policy(self) -> BoundedGaussianPolicy:
        return self.policy if self.num_updates > self.policy_start else self.behavior

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        mean, log_std = self._active_policy()(obs)
        if self.num_updates > self.policy_start:
            sample = truncated_normal_mean if deterministic else truncated_normal_sample
            return sample(mean, log_std)
        return mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)

    # ------------------------------------------------------------------ the update
    def update(self, batch) -> UpdateResult:
        self.num_updates += 1
        t = self.num_updates
        metrics: dict[str, torch.Tensor | float] = {"train/phase": float(self.phase)}
        priorities = None
        if t <= self.policy_start:
            obs, action = self.obs_norm(batch.obs), self.from_env_action(batch.action)
            c = self.eval_weights(batch)
            if t <= self.bc_steps:
                bc_loss = -weighted_mean(gaussian_log_prob(action, *self.behavior(obs)), c)
                step(self.behavior_opt, bc_loss)
                metrics["train/bc_loss"] = bc_loss.detach()
            if t <= self.q_steps:
                sarsa_metrics, q, target = self._sarsa_step(batch, obs, action, c)
                metrics.update(sarsa_metrics)
                priorities = td_priorities(q, target) if self.priority_feedback else None
        elif t <= self.policy_start + self.policy_steps:
            if t == self.policy_start + 1:
                self.policy.load_state_dict(self.behavior.state_dict())
            metrics.update(self._policy_step(batch))
        if self.priority_feedback and priorities is None:  # phases without a critic step: the current TD error
            with torch.no_grad():
                obs, action = self.obs_norm(batch.obs), self.from_env_action(batch.action)
                priorities = td_priorities(self.critic(obs, action)[0], self._sarsa_target(batch))
        return UpdateResult(metrics, priorities)

    def _sarsa_target(self, batch) -> torch.Tensor:
        """``y = r' + γ (1 - d) Q̄(s', a')`` with the dataset's next action ``a'`` (SARSA)."""
        if not self._sarsa:
            raise ConfigError("one-step RL needs the dataset's next actions: call on_dataset(dataset) "
                              "before update() (the offline regime does)")
        next_action = self._sarsa["next_action"][batch.indices]
        reward, not_done = self.transform_reward(batch.reward), 1.0 - batch.terminated
        with torch.no_grad():
            next_q = self.critic_target(self.obs_norm(batch.next_obs), next_action)[0]
            return reward + self.gamma * not_done * next_q

    def _sarsa_step(self, batch, obs: torch.Tensor, action: torch.Tensor, c: torch.Tensor | None):
        target = self._sarsa_target(batch)
        valid = self._sarsa["valid"][batch.indices]
        q = self.critic(obs, action)[0]
        mask = valid if c is None else valid * c
        critic_loss = (mask * (q - target).pow(2)).sum() / valid.sum().clamp(min=1.0)
        step(self.critic_opt, critic_loss)
        if self.num_updates % self.target_update_period == 0:
            polyak_update(self.critic, self.critic_target, self.tau)
        metrics = {"train/critic_loss": critic_loss.detach(), "train/q_mean": q.detach().mean()}
        return metrics, q.detach(), target

    def _policy_step(self, batch):
        pb = policy_batch(batch)
        obs, action = self.obs_norm(pb.obs), self.from_env_action(pb.action)
        with torch.no_grad():
            q = self.critic(obs, action)[0]
            mean_b, log_std_b = self.behavior(obs)
            samples = mean_b + log_std_b.exp() * torch.randn(self.baseline_samples, *mean_b.shape,
                                                             device=mean_b.device)
            n, b = samples.shape[:2]
            flat_obs = obs.expand(n, *obs.shape).reshape(n * b, -1)
            baseline = self.critic(flat_obs, samples.reshape(n * b, -1))[0].view(n, b).mean(0)
            adv_weight = torch.exp(self.temperature * (q - baseline)).clamp(max=EXP_ADV_MAX)
        log_prob = truncated_normal_log_prob(action.clamp(-STABLE_ACTION, STABLE_ACTION), *self.policy(obs))
        actor_loss = -weighted_mean(adv_weight * log_prob, pb.weights)
        step(self.policy_opt, actor_loss)
        return {"train/actor_loss": actor_loss.detach(), "train/adv_weight_mean": adv_weight.mean(),
                "train/advantage_mean": (q - baseline).mean()}

    def critic_for_diagnostics(self):
        """``(Q(obs, act), active policy's deterministic action(obs))``, on the networks' inputs."""
        return self.diagnostics_critic(self.critic.member(0), lambda obs: self.policy_action(obs, deterministic=True))
