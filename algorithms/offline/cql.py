"""Conservative Q-Learning for continuous actions (Kumar, Zhou, Tucker & Levine 2020), CQL(H) on a SAC
base, as implemented by JaxCQL (Young Geng) and its CORL port.

One update (all losses computed with the networks as they are at the start of the step, as in CORL):

* actor (SAC, eq. 9 of Haarnoja et al.): ``L_π = mean_i w_i [α log π(ã_i|s_i) - min_k Q_k(s_i, ã_i)]``,
  ``ã ~ π(·|s)`` reparameterised (during the first ``bc_steps`` updates ``-log π(a_i|s_i)`` replaces ``-Q``);
* temperature: ``L_α = -mean_i log α (log π(ã_i|s_i) + H̄)``, ``H̄ = -|A|`` (``autotune``);
* TD backup: ``y = r + γ (1 - d) min_k Q̄_k(s', a')``, ``a' ~ π(·|s')`` (``max_target_backup``: the max over
  ``n`` samples of the min; ``backup_entropy``: minus ``α log π(a'|s')``);
* conservative penalty (CQL(H), eq. 4), per head ``k``, with ``n`` actions from each of
  ``Unif[-1, 1]^|A|``, ``π(·|s)`` and ``π(·|s')`` (the latter scored at ``s``, as the reference code does),
  importance-sampled log-sum-exp (appendix F):
  ``gap_k(s) = T · logsumexp_j([Q_k(s, a_j^unif) - log 0.5^|A|, Q_k(s, a_j^π') - log π(a_j^π'|s'),
  Q_k(s, a_j^π) - log π(a_j^π|s)] / T) - Q_k(s, a)``
  (``cql_importance_sample=false``: plain log-sum-exp over the same Q values plus ``Q_k(s, a)``),
  clipped to ``[clip_min, clip_max]``;
* critic: ``L_Q = Σ_k mean_i c_i (Q_k(s_i, a_i) - y_i)² + α_cql Σ_k mean_i c_i gap_k(s_i)``; with
  ``lagrange=true`` (eq. 5) the penalty becomes ``α' α_cql Σ_k (mean_i c_i gap_k(s_i) - target_action_gap)``
  and ``log α'`` ascends it (``L_α' = -½ α' α_cql Σ_k (mean gap_k - target_action_gap)``, ``α' ≤ 1e6``);
* targets: Polyak averaging with ``τ`` every ``target_update_period`` steps.

Sample weights: ``w_i`` (policy batch) multiply the actor term; ``c_i = w_i`` only with
``reweight_eval=True``, and then weight both the TD term and the conservative penalty (the penalty is part
of policy *evaluation*; OPER's CQL code is not public).  Decoupled
resampling: actor and temperature read ``batch["policy_batch"]``, the critic the main batch.

Defaults follow CORL's ``algorithms/offline/cql.py`` and its D4RL locomotion configs (which adopt JaxCQL's
design): α_cql = 10 (``cql_alpha``; JaxCQL's default is 5, FamO2O uses 1), 10 sampled actions,
importance sampling, T = 1, no Lagrange, no max backup, no clipping, automatic entropy tuning with
``log α`` initialised to 0, no backup entropy, actor lr 3e-5 (also the temperature's lr), critic lr 3e-4
(also ``α'``'s, initialised at ``log α' = 1``), τ = 5e-3, batch 256, γ = 0.99; actor and critics 3x256
ReLU MLPs with orthogonal init (gain sqrt 2, output layer 1e-2, zero biases); tanh-Gaussian actor whose
log-std is ``m · f(s) + b`` with learnable ``m = 1, b = -1``, clipped to [-20, 2]; state standardisation
``std + 1e-3``.  AntMaze (``per_family``) switches to CORL's AntMaze recipe: Lagrange with gap 0.8,
α_cql = 5, max backup, penalty clipped below at -200, 5x256 critics, actor lr 1e-4, rewards ``10 r - 5``,
no state normalisation.  CORL scales hopper/walker rewards by ``1000 / (G_max - G_min)`` in some configs
(``reward_scale_by_return``); off by default here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from rlkit.algorithm import UpdateResult, td_priorities
from rlkit.algorithms.offline.common import OfflineActorCritic, orthogonal_init_, policy_batch, weighted_mean
from rlkit.nets import MLP, QEnsemble, TanhGaussian
from rlkit.optim import adam
from rlkit.population import DIRECT, UpdateOps


class CQLActor(nn.Module):
    """Tanh-Gaussian policy with a learnable affine map on the log-std: ``log σ = m · f_σ(s) + b``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], log_std_multiplier: float = 1.0,
                 log_std_offset: float = -1.0, log_std_min: float = -20.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, 2 * action_dim)
        self.log_std_multiplier = nn.Parameter(torch.tensor(float(log_std_multiplier)))
        self.log_std_offset = nn.Parameter(torch.tensor(float(log_std_offset)))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> TanhGaussian:
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        log_std = self.log_std_multiplier * log_std + self.log_std_offset
        return TanhGaussian(mean, log_std.clamp(self.log_std_min, self.log_std_max))


class CQL(OfflineActorCritic):
    """CQL (continuous); ``critic_for_diagnostics()`` takes normalised observations and actions in [-1, 1]."""

    population = True

    def __init__(self, observation_space, action_space, device="cpu", *, cql_alpha: float = 10.0,
                 cql_n_actions: int = 10, cql_importance_sample: bool = True, cql_temp: float = 1.0,
                 lagrange: bool = False, target_action_gap: float = -1.0,
                 cql_clip_diff_min: float | None = None, cql_clip_diff_max: float | None = None,
                 max_target_backup: bool = False,
                 backup_entropy: bool = False, autotune: bool = True, alpha_multiplier: float = 1.0,
                 target_entropy: float | None = None, actor_lr: float = 3e-5, critic_lr: float = 3e-4,
                 alpha_lr: float | None = None, alpha_prime_lr: float | None = None, gamma: float = 0.99,
                 tau: float = 5e-3, target_update_period: int = 1, bc_steps: int = 0,
                 actor_hidden: Sequence[int] = (256, 256, 256),
                 critic_hidden: Sequence[int] = (256, 256, 256),
                 orthogonal_init: bool = True, critic_layernorm: bool = False, normalize_obs: bool = True,
                 reward_scale_by_return: bool = False, reward_scale: float = 1.0, reward_shift: float = 0.0,
                 reweight_eval: bool = False) -> None:
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        obs_dim, act_dim = self.obs_dim, self.action_dim
        self.actor = CQLActor(obs_dim + self.actor_extra_inputs, act_dim, actor_hidden)
        self.critic = QEnsemble(obs_dim, act_dim, critic_hidden, 2, layernorm=critic_layernorm)
        if orthogonal_init:
            orthogonal_init_(self.actor.trunk, last_gain=1e-2)
            orthogonal_init_(self.critic, last_gain=1e-2)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros((), device=self.device, requires_grad=True)
        self.log_alpha_prime = torch.ones((), device=self.device, requires_grad=True)
        self.actor_opt = adam(self.actor.parameters(), actor_lr)
        self.critic_opt = adam(self.critic.parameters(), critic_lr)
        self.alpha_opt = adam([self.log_alpha], actor_lr if alpha_lr is None else alpha_lr)
        alpha_prime_lr = critic_lr if alpha_prime_lr is None else alpha_prime_lr
        self.alpha_prime_opt = adam([self.log_alpha_prime], alpha_prime_lr)
        self._actor_params = tuple(self.actor.parameters())
        self.cql_alpha, self.n_actions = cql_alpha, int(cql_n_actions)
        self.importance_sample = cql_importance_sample
        self.cql_temp, self.lagrange, self.target_action_gap = cql_temp, lagrange, target_action_gap
        self.clip_diff = (cql_clip_diff_min, cql_clip_diff_max)
        self.max_target_backup, self.backup_entropy = max_target_backup, backup_entropy
        self.autotune, self.alpha_multiplier = autotune, alpha_multiplier
        self.target_entropy = float(-act_dim if target_entropy is None else target_entropy)
        self.gamma, self.tau, self.target_update_period = gamma, tau, int(target_update_period)
        self.bc_steps = int(bc_steps)
        self.uniform_log_density = act_dim * math.log(0.5)  # log of Unif[-1, 1]^|A|

    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        dist = self.actor(obs)
        return dist.mode if deterministic else dist.rsample_with_log_prob()[0]

    def _sample(self, obs: torch.Tensor, n: int, noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` policy actions per state: ``(n, B, |A|)`` actions and ``(n, B)`` log-probabilities.

        One actor forward on the ``B`` states; the ``n`` draws share its ``π(·|s)`` (the reference code runs
        the actor on ``n`` copies of each state, which computes the same distribution ``n`` times)."""
        dist = self.actor(obs)
        shape = (n, *dist.mean.shape)
        return TanhGaussian(dist.mean.expand(shape), dist.log_std.expand(shape)).rsample_with_log_prob(noise)

    def _q_many(self, critic: QEnsemble, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``Q_k(s_i, a_ji)`` for ``(n, B, |A|)`` actions in one stacked forward: ``(E, n, B)``."""
        n, b = actions.shape[:2]
        flat_obs = obs.expand(n, *obs.shape).reshape(n * b, -1)
        return critic(flat_obs, actions.reshape(n * b, -1)).view(-1, n, b)

    def update(self, batch) -> UpdateResult:
        return self.update_with(DIRECT, batch)

    def update_with(self, ops: UpdateOps, batch) -> UpdateResult:
        self.num_updates += 1
        noise = ops.draw(self.update_noise, batch.action, policy_batch(batch).action)
        out = ops.map(partial(self._terms, self.priority_feedback), batch, noise)
        if self.autotune:
            ops.step(self.alpha_opt, out["alpha_loss"])
        ops.step(self.actor_opt, out["actor_loss"], self._actor_params)
        if self.lagrange:
            ops.step(self.alpha_prime_opt, out["alpha_prime_loss"])
        ops.step(self.critic_opt, out["critic_loss"])
        if self.num_updates % self.target_update_period == 0:
            ops.polyak(self.critic, self.critic_target, self.tau)
        metrics = {
            "train/critic_loss": out["critic_loss"].detach(),
            "train/td_loss": out["td_loss"],
            "train/cql_gap": out["cql_gap"],
            "train/actor_loss": out["actor_loss"].detach(),
            "train/alpha": out["alpha"],
            "train/entropy": out["entropy"],
            "train/q_mean": out["q_mean"],
        }
        if self.lagrange:
            metrics["train/alpha_prime"] = out["alpha_prime"]
        return UpdateResult(metrics, out.get("priorities"))

    def update_noise(self, action: torch.Tensor, policy_action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every random draw of one update, in the order the update makes them: ``ε`` of the actor's
        ``ã ~ π(·|s)`` (policy batch), then those of :meth:`critic_noise`."""
        return {"actor": torch.randn_like(policy_action), **self.critic_noise(action)}

    def critic_noise(self, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """The critic loss's draws, in order: ``ε`` of ``a' ~ π(·|s')`` (``n`` of them per state with the max
        backup), the ``n`` uniform actions, the ``ε`` of the ``n`` actions from ``π(·|s)`` and ``π(·|s')``."""
        n, (b, a), device = self.n_actions, action.shape, action.device
        return {"next": torch.randn(n, b, a, device=device) if self.max_target_backup
                else torch.randn(b, a, device=device),
                "random": torch.empty(n, b, a, device=device).uniform_(-1.0, 1.0),
                "pi": torch.randn(n, 2 * b, a, device=device)}

    def _terms(self, with_priorities: bool, batch, noise: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every loss of the update from the networks as they are at its start (module docstring)."""
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action)
        reward, not_done = self.transform_reward(batch.reward), 1.0 - batch.terminated
        alpha = self.alpha_multiplier
        if self.autotune:
            alpha = self.log_alpha.detach().exp() * self.alpha_multiplier

        # policy improvement (SAC actor) and entropy temperature, on the policy batch
        pb, p_obs, p_action = self.policy_inputs(batch, obs, action)
        dist = self.actor(p_obs)
        new_action, logp = dist.rsample_with_log_prob(noise["actor"])
        if self.num_updates <= self.bc_steps:
            objective = dist.log_prob(p_action)
        else:
            objective = self.critic(p_obs, new_action).min(0).values
        actor_loss = weighted_mean(alpha * logp - objective, pb.weights)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()

        critic_loss, parts = self.critic_loss(obs, action, next_obs, reward, not_done, alpha, batch, noise=noise)
        q, target = parts["q"], parts["target"]
        out = {"alpha_loss": alpha_loss, "actor_loss": actor_loss, "critic_loss": critic_loss,
               "td_loss": parts["td_loss"].detach(), "cql_gap": parts["cql_gap"].detach().mean(),
               "alpha": torch.as_tensor(alpha), "entropy": -logp.detach().mean(), "q_mean": q.detach().mean()}
        if self.lagrange:
            out["alpha_prime_loss"] = parts["alpha_prime_loss"]
            out["alpha_prime"] = parts["alpha_prime"].detach()
        if with_priorities:
            out["priorities"] = td_priorities(q, target)
        return out

    def critic_loss(self, obs, action, next_obs, reward, not_done, alpha, batch, policy_obs=None,
                    policy_next_obs=None, noise: dict[str, torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The CQL critic loss (TD + conservative penalty, module docstring) and its parts (``td_loss``,
        ``cql_gap``, ``q``, ``target``, and with Lagrange ``alpha_prime``/``alpha_prime_loss``).

        ``policy_obs``/``policy_next_obs``: the actor's inputs at ``s`` and ``s'`` (default: the observations;
        a conditioned actor, e.g. FamO2O's universal model, passes its conditioned inputs); ``noise``: the draws
        of :meth:`critic_noise` (made here when None)."""
        noise = self.critic_noise(action) if noise is None else noise
        policy_obs = obs if policy_obs is None else policy_obs
        policy_next_obs = next_obs if policy_next_obs is None else policy_next_obs
        n = self.n_actions
        # policy evaluation: TD backup
        with torch.no_grad():
            if self.max_target_backup:
                next_actions, next_logps = self._sample(policy_next_obs, n, noise["next"])
                q_next = self._q_many(self.critic_target, next_obs, next_actions).min(0).values  # (n, B)
                target_q, best = q_next.max(0)
                next_logp = next_logps.gather(0, best.unsqueeze(0)).squeeze(0)
            else:
                next_action, next_logp = self.actor(policy_next_obs).rsample_with_log_prob(noise["next"])
                target_q = self.critic_target(next_obs, next_action).min(0).values
            if self.backup_entropy:
                target_q = target_q - alpha * next_logp
            target = reward + self.gamma * not_done * target_q
            # conservative penalty: n uniform actions, n from π(·|s) and n from π(·|s'), all scored at s
            random_actions = noise["random"]
            pi_actions, pi_logp = self._sample(torch.cat([policy_obs, policy_next_obs]), n, noise["pi"])
            cur_actions, next_pi_actions = pi_actions.chunk(2, dim=1)
            cur_logp, next_pi_logp = pi_logp.chunk(2, dim=1)
        all_actions = torch.cat([action.unsqueeze(0), random_actions, next_pi_actions, cur_actions])
        q_all = self._q_many(self.critic, obs, all_actions)  # (E, 1 + 3n, B)
        q, q_rand = q_all[:, 0], q_all[:, 1:1 + n]
        q_next_pi, q_cur = q_all[:, 1 + n:1 + 2 * n], q_all[:, 1 + 2 * n:]
        if self.importance_sample:
            cat_q = torch.cat([q_rand - self.uniform_log_density, q_next_pi - next_pi_logp,
                               q_cur - cur_logp], dim=1)
        else:
            cat_q = torch.cat([q_rand, q.unsqueeze(1), q_next_pi, q_cur], 1)
        gap = self.cql_temp * torch.logsumexp(cat_q / self.cql_temp, dim=1) - q  # (E, B)
        if self.clip_diff != (None, None):
            gap = gap.clamp(*self.clip_diff)
        c = self.eval_weights(batch)
        td_loss = weighted_mean((q - target).pow(2), c).sum()
        cql_gap = weighted_mean(gap, c)  # (E,)
        if self.lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            cql_loss = (alpha_prime.detach() * self.cql_alpha * (cql_gap - self.target_action_gap)).sum()
            alpha_prime_loss = -0.5 * (alpha_prime * self.cql_alpha
                                       * (cql_gap.detach() - self.target_action_gap)).sum()
            parts = {"alpha_prime": alpha_prime, "alpha_prime_loss": alpha_prime_loss}
        else:
            cql_loss = self.cql_alpha * cql_gap.sum()
            parts = {}
        return td_loss + cql_loss, {**parts, "td_loss": td_loss, "cql_gap": cql_gap, "q": q, "target": target}

    def critic_for_diagnostics(self):
        """``(Q1(obs, act), tanh(mean)(obs))`` on normalised observations and actions in [-1, 1]."""
        return self.diagnostics_critic(self.critic.member(0), lambda obs: self.actor(obs).mode)
