"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 with a behaviour-cloning term in the actor loss and standardised states (section 5):

* critic (every step):
  ``ã' = clip(π̄(s') + clip(ε, -c, c), -1, 1)``, ``ε ~ N(0, σ²)``;
  ``y = r + γ (1 - d) min_k Q̄_k(s', ã')``;
  ``L_Q = Σ_k mean_i c_i (Q_k(s_i, a_i) - y_i)²``                                      (TD3, eq. 10)
* actor (every ``policy_delay`` steps), eq. 3 with ``λ = α / mean_i |Q_1(s_i, π(s_i))|`` (detached):
  ``L_π = -λ mean_i w_i Q_1(s_i, π(s_i)) + β_bc mean_{i,d} w_i b_i (π(s_i)_d - a_{i,d})²`` (``β_bc = 1``; ``b_i`` the
  policy batch's optional ``bc_weight`` column, 1 when absent: OAP's relaxed rows)
* targets (with the actor): Polyak averaging with ``τ`` for actor and critics.

Sample weights (OPER, Yue et al. 2023, released TD3+BC code): ``w_i`` (the policy batch's weights) always
multiply both actor terms; ``c_i = w_i`` only with ``reweight_eval=True`` (else 1).  With decoupled
resampling the actor step reads ``batch.policy_batch``.

Defaults (``configs/algo/td3bc.yaml``) are the paper's: α = 2.5, σ = 0.2, c = 0.5, policy delay 2,
τ = 0.005, Adam 3e-4 for actor and critic, 2x256 MLPs, γ = 0.99, batch 256, 1M steps, state
standardisation ``(s - μ) / (σ + 1e-3)``.  Actions live in ``[-1, 1]`` inside the algorithm (the paper's
``max_action`` is 1 on every D4RL task; for other boxes the BC term is measured in normalised units).
``compile=True`` runs the two loss functions through ``torch.compile``; ``cuda_graph=True`` (CUDA only)
records the whole update -- losses, backward passes, fused Adam steps (``capturable``), Polyak updates --
as one CUDA graph per policy-delay phase and replays it (:mod:`rlkit.cuda_graph`).

For the SEEM divergence study (Yue et al. NeurIPS 2023; README command of its code) ``bc_coef=0`` removes the BC term
(plain TD3 on offline data), ``tau=1.0`` makes the target a hard copy, and ``optimizer=sgd`` replaces Adam for
crash-step studies (``configs/algo/td3_divergence.yaml``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import torch

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.offline.common import OfflineActorCritic, bc_weights, policy_batch, weighted_mean
from rlkit.cuda_graph import GraphedUpdate, require_cuda
from rlkit.errors import ConfigError
from rlkit.nets import MLP, QEnsemble
from rlkit.optim import adam
from rlkit.population import DIRECT, UpdateOps


class TD3BC(OfflineActorCritic):
    """TD3+BC; ``critic_for_diagnostics()`` takes normalised observations and actions in [-1, 1]."""

    population = True

    def __init__(self, observation_space, action_space, device="cpu", *, alpha: float = 2.5,
                 actor_lr: float = 3e-4, critic_lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_delay: int = 2,
                 hidden: Sequence[int] = (256, 256), critic_layernorm: bool = False,
                 normalize_obs: bool = True, reward_scale_by_return: bool = False, reward_scale: float = 1.0,
                 reward_shift: float = 0.0, reweight_eval: bool = False, compile: bool = False,
                 cuda_graph: bool = False, bc_coef: float = 1.0, optimizer: str = "adam") -> None:
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        self.actor = MLP(obs_dim, hidden, act_dim).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, hidden, 2, layernorm=critic_layernorm).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._views = {"q1": self.critic.member(0)}  # a view, kept out of the state dict
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"bad value for 'algo.optimizer': {optimizer!r}; choose adam or sgd")
        if cuda_graph:
            require_cuda(self.device)
        if optimizer == "adam":
            def make_opt(params, lr):
                return adam(params, lr, capturable=cuda_graph)
        else:
            def make_opt(params, lr):
                return torch.optim.SGD(params, lr=lr, foreach=True)
        self.actor_opt = make_opt(self.actor.parameters(), actor_lr)
        self.critic_opt = make_opt(self.critic.parameters(), critic_lr)
        self.bc_coef, self.optimizer = float(bc_coef), optimizer
        self._actor_params = tuple(self.actor.parameters())
        self.alpha, self.gamma, self.tau = alpha, gamma, tau
        self.policy_noise, self.noise_clip, self.policy_delay = policy_noise, noise_clip, int(policy_delay)
        #: the two loss functions, optionally through ``torch.compile`` (forward and backward graphs; the
        #: fused optimizer steps and the Python-side policy delay stay eager)
        self._losses = {"critic": self.critic_loss, "actor": self.actor_loss}
        self._compiled = bool(compile)
        if compile:
            self._losses = {k: torch.compile(fn) for k, fn in self._losses.items()}
        #: ``cuda_graph=True``: the whole step (both phases of the policy delay) recorded as CUDA graphs
        self._graphed = GraphedUpdate(self._step, (self.actor_opt, self.critic_opt)) if cuda_graph else None

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return torch.tanh(self.actor(obs))

    def critic_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                    next_obs: torch.Tensor, terminated: torch.Tensor,
                    weights: torch.Tensor | None, noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``Σ_k mean_i c_i (Q_k(s_i, a_i) - y_i)²`` with the smoothed TD3 target ``y``; returns
        ``(loss, Q, y)``.  Inputs are the batch's raw observations and env-scale actions; ``noise`` is the
        target-policy noise (:meth:`target_noise`, drawn here when None)."""
        obs, next_obs = self.obs_norm(obs), self.obs_norm(next_obs)
        action = self.from_env_action(action)
        with torch.no_grad():
            if noise is None:
                noise = self.target_noise(action)
            next_action = (torch.tanh(self.actor_target(next_obs)) + noise).clamp(-1.0, 1.0)
            next_q = self.critic_target(next_obs, next_action).min(0).values
            target = self.transform_reward(reward) + self.gamma * (1.0 - terminated) * next_q
        q = self.critic(obs, action)
        return weighted_mean((q - target).pow(2), weights).sum(), q.detach(), target

    def actor_loss(self, obs: torch.Tensor, action: torch.Tensor, weights: torch.Tensor,
                   bc_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``-λ mean_i w_i Q_1(s_i, π(s_i)) + mean_{i,d} w_i b_i (π(s_i)_d - a_{i,d})²``; returns
        ``(loss, BC term, λ)``.  Inputs are the batch's raw observations and env-scale actions."""
        obs, action = self.obs_norm(obs), self.from_env_action(action)
        pi = torch.tanh(self.actor(obs))
        q_pi = self._views["q1"](obs, pi)
        lmbda = self.alpha / q_pi.abs().mean().detach()
        bc = (pi - action).pow(2).mean(-1)
        bc_loss = weighted_mean(bc if bc_weight is None else bc * bc_weight, weights)
        return -lmbda * weighted_mean(q_pi, weights) + self.bc_coef * bc_loss, bc_loss.detach(), lmbda

    def target_noise(self, action: torch.Tensor) -> torch.Tensor:
        """TD3's target-policy smoothing noise ``clip(ε, -c, c)``, ``ε ~ N(0, σ²)``, shaped like ``action``."""
        return (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)

    def population_refusal(self) -> str | None:
        if self._graphed is not None or self._compiled:
            return "TD3BC with algo.compile or algo.cuda_graph; drop them to train a population"
        return None

    def update(self, batch) -> UpdateResult:
        if self._graphed is not None:
            self.num_updates += 1
            return self._graphed(batch, self.num_updates % self.policy_delay == 0, self.priority_feedback)
        return self.update_with(DIRECT, batch)

    def update_with(self, ops: UpdateOps, batch) -> UpdateResult:
        self.num_updates += 1
        return self._step(batch, self.num_updates % self.policy_delay == 0, self.priority_feedback, ops)

    def _step(self, batch, actor_step: bool, with_priorities: bool, ops: UpdateOps = DIRECT) -> UpdateResult:
        """One update's tensor work (critic; with ``actor_step`` also actor and targets); no host state."""
        noise = ops.draw(self.target_noise, batch.action)
        critic = ops.map(partial(self._critic_terms, with_priorities), batch, noise)
        ops.step(self.critic_opt, critic["loss"])
        metrics = {"train/critic_loss": critic["loss"].detach(), "train/q_mean": critic["q_mean"]}
        if actor_step:
            actor = ops.map(self._actor_terms, policy_batch(batch))
            ops.step(self.actor_opt, actor["loss"], self._actor_params)
            ops.polyak(self.critic, self.critic_target, self.tau)
            ops.polyak(self.actor, self.actor_target, self.tau)
            metrics.update({"train/actor_loss": actor["loss"].detach(), "train/bc_loss": actor["bc_loss"],
                            "train/lambda": actor["lambda"]})
        return UpdateResult(metrics, critic.get("priorities"))

    def _critic_terms(self, with_priorities: bool, batch, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, q, target = self._losses["critic"](batch.obs, batch.action, batch.reward, batch.next_obs,
                                                 batch.terminated, self.eval_weights(batch), noise)
        out = {"loss": loss, "q_mean": q.mean()}
        if with_priorities:
            out["priorities"] = td_priorities(q, target)
        return out

    def _actor_terms(self, pb) -> dict[str, torch.Tensor]:
        loss, bc_loss, lmbda = self._losses["actor"](pb.obs, pb.action, pb.weights, bc_weights(pb))
        return {"loss": loss, "bc_loss": bc_loss, "lambda": lmbda}

    def critic_for_diagnostics(self):
        """``Q1(obs, act)`` and ``π(obs)`` on normalised observations and actions in [-1, 1]."""
        return self.diagnostics_critic(self._views["q1"], lambda obs: torch.tanh(self.actor(obs)))
