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
resampling: actor and temperature read ``batch.policy_batch``, the critic the main batch.

Defaults follow CORL's ``algorithms/offline/cql.py`` and its D4RL locomotion configs (which adopt JaxCQL's
design): α_cql = 10 (``cql_alpha``; JaxCQL's default is 5, FamO2O uses 1), 10 sampled actions,
importance sampling, T = 1, no Lagrange, no max backup, no clipping, automatic entropy tuning with
``log α`` initialised to 0, no backup entropy, actor lr 3e-5 (also the temperature's lr), critic lr 3e-4
(also ``α'``'s, initialised at ``log α' = 1``, ``log_alpha_prime_init``), τ = 5e-3, batch 256, γ = 0.99;
actor and critics 3x256 ReLU MLPs with orthogonal init (gain sqrt 2, output layer 1e-2, zero biases);
tanh-Gaussian actor whose log-std is ``m · f(s) + b`` with learnable ``m = 1, b = -1``, clipped to [-20, 2];
state standardisation ``std + 1e-3``.  AntMaze (``per_family``) switches to CORL's AntMaze recipe: Lagrange
with gap 0.8, α_cql = 5, max backup, penalty clipped below at -200, 5x256 critics, actor lr 1e-4, rewards ``10 r - 5``,
no state normalisation.  CORL scales hopper/walker rewards by ``1000 / (G_max - G_min)`` in some configs
(``reward_scale_by_return``); off by default here.

The authors' released code (aviralkumar2907/CQL, ``d4rl/rlkit/torch/sac/cql.py``) differs from that
reimplementation in mechanics the paper does not fix; each is a switch whose non-default value reproduces it,
and ``algo=cql_authors`` sets them all with its README's MuJoCo settings (α_cql 5, actor lr 1e-4,
``policy_eval_start`` 40000 = 39,999 BC steps, unnormalised states):

* ``update_order=released``: α steps first and the policy loss reads the new α; the Q networks step before
  the policy, whose loss was recorded through them before their step (:meth:`CQL._critic_before_step`).
  The paper's Algorithm 1 also updates Q before the policy; the default keeps JaxCQL/CORL's order (all
  losses at the step's starting parameters);
* ``log_std_affine=false``: the policy's log-std is a plain head (no learnable scale and offset), with
  ``log_std_min=-5`` (``policies.py``'s ``LOG_SIG_MIN``);
* ``tanh_log_prob=eps``: ``log(1 - tanh(u)² + 1e-6)`` for the change of variables (``TanhNormal``);
* ``bc_mean_clip=9``: the BC warm-up's ``log π(a|s)`` clips the mean to ±9 (``TanhGaussianPolicy.log_prob``);
* ``released_init=true``: its networks' initialisation (:func:`released_init_`);
* Lagrange (its AntMaze script, ``examples/cql_antmaze_new.py``): ``log α'`` starts at 0
  (``log_alpha_prime_init=0``; CORL: 1) and its threshold ``τ`` multiplies ``α'`` outside the min-Q weight,
  ``α' (α_cql gap - τ)``, so ``target_action_gap = τ / α_cql`` gives the same ``α'`` gradient and the same Q
  gradients (``--lagrange_thresh=5 --min_q_weight=5``: 1.0); its rewards are ``4 (r - 0.5)``.
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
from rlkit.errors import ConfigError
from rlkit.nets import MLP, QEnsemble, TanhGaussian, polyak_update
from rlkit.nets.mlp import EnsembleLinear
from rlkit.optim import adam, step
from rlkit.population import DIRECT, UpdateOps


def released_init_(module: nn.Module, last_bound: float, bias: float = 0.1) -> None:
    """The initialisation of the authors' networks (rlkit ``Mlp``, aviralkumar2907/CQL
    ``d4rl/rlkit/torch/networks.py`` and ``pytorch_util.fanin_init``): hidden weights uniform in
    ``±1/sqrt(n)`` with ``n`` the weight's first axis of ``nn.Linear``'s ``(out, in)`` layout (its output
    width), hidden biases ``0.1``; the output layer's weights and biases uniform in ``±last_bound``
    (``3e-3`` for the Q networks, ``1e-3`` for both policy heads).  Ensemble layers per member."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            out_dim = layer.weight.shape[-1] if isinstance(layer, EnsembleLinear) else layer.weight.shape[0]
            if i == len(layers) - 1:
                layer.weight.uniform_(-last_bound, last_bound)
                layer.bias.uniform_(-last_bound, last_bound)
            else:
                bound = 1.0 / math.sqrt(out_dim)
                layer.weight.uniform_(-bound, bound)
                layer.bias.fill_(bias)


#: ``tanh_log_prob`` -> the ``tanh_eps`` of :class:`~rlkit.nets.TanhGaussian` (None: the exact correction)
TANH_LOG_PROB: dict[str, float | None] = {"exact": None, "eps": 1e-6}


class CQLActor(nn.Module):
    """Tanh-Gaussian policy ``a = tanh(u)``, ``u ~ N(μ(s), σ(s)²)``, ``(μ, f_σ) = f(s)``.

    ``log_std_affine=True`` (JaxCQL/CORL): ``log σ = m · f_σ(s) + b`` with learnable scalars ``m = 1, b = -1``
    at init; ``False`` (the authors' ``TanhGaussianPolicy``, aviralkumar2907/CQL
    ``d4rl/rlkit/torch/sac/policies.py``): ``log σ = f_σ(s)``.  Either way ``log σ`` is clipped to
    ``[log_std_min, log_std_max]``.  ``tanh_eps`` selects the log-probability's tanh correction
    (:class:`~rlkit.nets.TanhGaussian`); ``bc_mean_clip`` clips ``μ`` to ``±bc_mean_clip`` in
    :meth:`log_prob` of dataset actions only (the authors' ``TanhGaussianPolicy.log_prob``: ±9).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], log_std_multiplier: float = 1.0,
                 log_std_offset: float = -1.0, log_std_min: float = -20.0, log_std_max: float = 2.0,
                 log_std_affine: bool = True, tanh_eps: float | None = None,
                 bc_mean_clip: float | None = None) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, 2 * action_dim)
        self.log_std_affine = bool(log_std_affine)
        if self.log_std_affine:
            self.log_std_multiplier = nn.Parameter(torch.tensor(float(log_std_multiplier)))
            self.log_std_offset = nn.Parameter(torch.tensor(float(log_std_offset)))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.tanh_eps, self.bc_mean_clip = tanh_eps, bc_mean_clip

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        if self.log_std_affine:
            log_std = self.log_std_multiplier * log_std + self.log_std_offset
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def forward(self, obs: torch.Tensor) -> TanhGaussian:
        return TanhGaussian(*self._mean_log_std(obs), tanh_eps=self.tanh_eps)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log π(a|s)`` of dataset actions (the BC warm-up's objective)."""
        mean, log_std = self._mean_log_std(obs)
        if self.bc_mean_clip is not None:
            mean = mean.clamp(-self.bc_mean_clip, self.bc_mean_clip)
        return TanhGaussian(mean, log_std, tanh_eps=self.tanh_eps).log_prob(action)


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
                 reweight_eval: bool = False, log_std_affine: bool = True, log_std_min: float = -20.0,
                 tanh_log_prob: str = "exact", bc_mean_clip: float | None = None,
                 update_order: str = "corl", released_init: bool = False,
                 log_alpha_prime_init: float = 1.0) -> None:
        super().__init__(observation_space, action_space, device, normalize_obs=normalize_obs,
                         reward_scale_by_return=reward_scale_by_return, reward_scale=reward_scale,
                         reward_shift=reward_shift, reweight_eval=reweight_eval)
        if tanh_log_prob not in TANH_LOG_PROB:
            raise ConfigError(f"algo.tanh_log_prob={tanh_log_prob!r}; choose {' or '.join(TANH_LOG_PROB)}")
        if update_order not in ("corl", "released"):
            raise ConfigError(f"algo.update_order={update_order!r}; choose corl or released")
        self.update_order = update_order
        obs_dim, act_dim = self.obs_dim, self.action_dim
        self.actor = CQLActor(obs_dim + self.actor_extra_inputs, act_dim, actor_hidden,
                              log_std_affine=log_std_affine, log_std_min=log_std_min,
                              tanh_eps=TANH_LOG_PROB[tanh_log_prob], bc_mean_clip=bc_mean_clip)
        self.critic = QEnsemble(obs_dim, act_dim, critic_hidden, 2, layernorm=critic_layernorm)
        if orthogonal_init and released_init:
            raise ConfigError("algo.orthogonal_init and algo.released_init are both true; choose one initialisation")
        if orthogonal_init:
            orthogonal_init_(self.actor.trunk, last_gain=1e-2)
            orthogonal_init_(self.critic, last_gain=1e-2)
        if released_init:
            released_init_(self.actor.trunk, last_bound=1e-3)
            released_init_(self.critic, last_bound=3e-3)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros((), device=self.device, requires_grad=True)
        self.log_alpha_prime = torch.full((), float(log_alpha_prime_init), device=self.device, requires_grad=True)
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
        return TanhGaussian(dist.mean.expand(shape), dist.log_std.expand(shape),
                            tanh_eps=dist.tanh_eps).rsample_with_log_prob(noise)

    def _q_many(self, critic: QEnsemble, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``Q_k(s_i, a_ji)`` for ``(n, B, |A|)`` actions in one stacked forward: ``(E, n, B)``."""
        n, b = actions.shape[:2]
        flat_obs = obs.expand(n, *obs.shape).reshape(n * b, -1)
        return critic(flat_obs, actions.reshape(n * b, -1)).view(-1, n, b)

    def update(self, batch) -> UpdateResult:
        if self.update_order == "released":
            return self.released_update(batch)
        return self.update_with(DIRECT, batch)

    def population_refusal(self) -> str | None:
        if self.update_order == "released":
            return "CQL with algo.update_order=released (the authors' step order is not written for populations)"
        return None

    def update_with(self, ops: UpdateOps, batch) -> UpdateResult:
        """One update in CORL's order (``update_order=corl``): every loss from the networks as they are at the
        step's start, then α, the actor, α' and the critic step."""
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
            "train/alpha_loss": out["alpha_loss"].detach(),
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

    def _inputs(self, batch) -> tuple[torch.Tensor, ...]:
        obs, next_obs = self.obs_norm(batch.obs), self.obs_norm(batch.next_obs)
        action = self.from_env_action(batch.action)
        return obs, action, next_obs, self.transform_reward(batch.reward), 1.0 - batch.terminated

    def _alpha(self):
        """The entropy temperature ``α`` (the multiplier alone without autotuning)."""
        return self.log_alpha.detach().exp() * self.alpha_multiplier if self.autotune else self.alpha_multiplier

    def _terms(self, with_priorities: bool, batch, noise: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every loss of the update from the networks as they are at its start (module docstring)."""
        obs, action, next_obs, reward, not_done = self._inputs(batch)
        alpha = self._alpha()

        # policy improvement (SAC actor) and entropy temperature, on the policy batch
        pb, p_obs, p_action = self.policy_inputs(batch, obs, action)
        dist = self.actor(p_obs)
        new_action, logp = dist.rsample_with_log_prob(noise["actor"])
        if self.num_updates <= self.bc_steps:
            objective = self.actor.log_prob(p_obs, p_action)
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

    def released_update(self, batch) -> UpdateResult:
        """One update in the authors' order (``update_order=released``, aviralkumar2907/CQL ``cql.py``): α steps
        first and the policy loss sees the new α; the Q networks step before the policy, whose graph reads the
        stepped weights (:meth:`_critic_before_step`).  The same draws, in the same order, as :meth:`update_with`."""
        self.num_updates += 1
        obs, action, next_obs, reward, not_done = self._inputs(batch)
        pb, p_obs, p_action = self.policy_inputs(batch, obs, action)
        dist = self.actor(p_obs)
        new_action, logp = dist.rsample_with_log_prob()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        if self.autotune:
            step(self.alpha_opt, alpha_loss)
        alpha = self._alpha()
        if self.num_updates <= self.bc_steps:
            objective = self.actor.log_prob(p_obs, p_action)
        else:
            objective = self._critic_before_step(p_obs, new_action).min(0).values
        actor_loss = weighted_mean(alpha * logp - objective, pb.weights)

        critic_loss, parts = self.critic_loss(obs, action, next_obs, reward, not_done, alpha, batch)
        q, target = parts["q"], parts["target"]
        if self.lagrange:
            step(self.alpha_prime_opt, parts["alpha_prime_loss"])
        step(self.critic_opt, critic_loss)
        step(self.actor_opt, actor_loss, self._actor_params)
        if self.num_updates % self.target_update_period == 0:
            polyak_update(self.critic, self.critic_target, self.tau)
        metrics = {
            "train/critic_loss": critic_loss.detach(),
            "train/td_loss": parts["td_loss"].detach(),
            "train/cql_gap": parts["cql_gap"].detach().mean(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha_loss": alpha_loss.detach(),
            "train/alpha": torch.as_tensor(alpha),
            "train/entropy": -logp.detach().mean(),
            "train/q_mean": q.detach().mean(),
        }
        if self.lagrange:
            metrics["train/alpha_prime"] = parts["alpha_prime"].detach()
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)

    def _critic_before_step(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``Q_k(s, a)`` read through ``.data`` aliases of the critic's parameters (``update_order=released``).

        The authors' update (aviralkumar2907/CQL, ``cql.py``, ``train_from_torch``) records the policy loss
        through the Q networks, steps the Q networks, then back-propagates the policy loss.  Under the
        PyTorch of its environment (< 1.5, optimizers writing ``p.data``) that backward ran through the
        *stepped* weights with the activations of the forward before the step; PyTorch >= 1.5 refuses it.
        Aliases made with ``.data`` share the parameters' storage but not their version counter, so the same
        graph back-propagates here exactly as it did there (and puts no gradient on the critic)."""
        aliases = {name: p.data for name, p in self.critic.named_parameters()}
        return torch.func.functional_call(self.critic, aliases, (obs, action))

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
