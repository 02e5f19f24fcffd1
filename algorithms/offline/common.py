"""What the offline actor-critic algorithms (TD3+BC, IQL, CQL, AWAC, one-step RL) share.

:class:`OfflineActorCritic` holds the pieces every one of them repeats:

* **observation normalisation** -- a :class:`~rlkit.nets.Normalizer` fixed from the dataset in
  ``on_dataset`` (``(s - mean) / (std + 1e-3)``, TD3+BC's recipe, also used by CORL's CQL and AWAC) when
  ``normalize_obs`` is on, identity otherwise;
* **reward transform** -- ``r' = r · reward_scale · k + reward_shift`` with ``k = 1000 / (G_max - G_min)``
  (``G`` the undiscounted episode returns of the dataset, IQL's locomotion recipe) when
  ``reward_scale_by_return`` is on and ``k = 1`` otherwise; AntMaze uses ``reward_shift = -1``
  (IQL's released code);
* **sample weights** (OPER, Yue et al. 2023, released code) -- policy terms are always multiplied by the policy batch's
  ``weights``; critic/value terms only when ``reweight_eval`` is on (:meth:`eval_weights`);
* **behaviour-cloning weights** -- a policy batch may carry a ``bc_weight`` column, a per-row multiplier of the
  constraint term only (TD3+BC's ``(π(s) - a)²``, IQL's advantage-weighted likelihood), absent = 1; OAP relaxes
  the constraint on rows where its oracle prefers the policy's action (:func:`bc_weights`);
* **decoupled batches** -- when the regime puts a second, prioritised batch in ``batch.policy_batch``
  the policy-improvement/constraint terms read it and the evaluation terms read the main batch
  (:func:`policy_batch`);
* acting (normalise, policy in ``[-1, 1]``, rescale to the env's box) and the update counter that policy
  delays, schedules and phases read.

Conventions for every subclass: networks see **normalised observations** and actions in **[-1, 1]**
(``from_env_action`` of the batch's env-scale actions).  ``critic_for_diagnostics()`` returns functions
in that same space; :meth:`critic_input` maps raw observations and env-scale actions into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from rlkit.algorithm import Algorithm, ContinuousActionMixin, DiagnosticsCritic
from rlkit.errors import DatasetError
from rlkit.nets import Normalizer
from rlkit.nets.mlp import EnsembleLinear

#: IQL's target spread of episode returns after scaling (Kostrikov et al. 2021, appendix B)
RETURN_SCALE_TARGET = 1000.0


def policy_batch(batch):
    """The batch of the policy terms: ``batch.policy_batch`` under decoupled resampling, else ``batch``."""
    return batch if batch.policy_batch is None else batch.policy_batch


#: the optional policy-batch column of per-row behaviour-cloning weights (module docstring)
BC_WEIGHT = "bc_weight"


def bc_weights(batch) -> torch.Tensor | None:
    """The policy batch's per-row multipliers of the behaviour-cloning term, None when it carries none (all 1)."""
    return batch.get(BC_WEIGHT)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``mean_i w_i v_i`` over the last axis (``mean_i v_i`` when ``weights`` is None)."""
    return values.mean(-1) if weights is None else (values * weights).mean(-1)


def return_scale(dataset, target: float = RETURN_SCALE_TARGET) -> float:
    """``target / (G_max - G_min)`` over the dataset's episode returns (IQL's locomotion reward scale)."""
    returns = np.asarray(dataset.episode_returns, dtype=np.float64)
    spread = float(returns.max() - returns.min())
    if not np.isfinite(spread) or spread <= 0:
        raise DatasetError(
            f"reward scaling by return needs episodes with different returns, but all "
            f"{len(returns)} episode(s) return {returns.max():.4g}; set algo.reward_scale_by_return=false"
        )
    return target / spread


def orthogonal_init_(module: nn.Module, gain: float = math.sqrt(2.0), last_gain: float | None = None) -> None:
    """Orthogonal weights and zero biases for every Linear/EnsembleLinear in ``module`` (in order).

    The last linear layer gets ``last_gain`` (``gain`` when None).  Ensemble layers are initialised per
    member.  (IQL's reference code initialises every layer orthogonally with gain sqrt(2); CORL's CQL uses
    sqrt(2) for hidden layers and 1e-2 for the output layer.)
    """
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            g = last_gain if (i == len(layers) - 1 and last_gain is not None) else gain
            if isinstance(layer, EnsembleLinear):
                for member in range(layer.ensemble_size):
                    nn.init.orthogonal_(layer.weight[member], gain=g)
            else:
                nn.init.orthogonal_(layer.weight, gain=g)
            layer.bias.zero_()


def gaussian_log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``Σ_d log N(a_d; μ_d, σ_d²)`` (diagonal Gaussian, no squashing)."""
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class OfflineActorCritic(ContinuousActionMixin, Algorithm):
    """Base of the offline actor-critic algorithms: normalisation, reward transform, weights, acting.

    Subclasses build their networks, then implement :meth:`policy_action` (normalised obs -> action in
    ``[-1, 1]``) and ``update(batch)``; ``update`` increments :attr:`num_updates` once per call.
    """

    #: offline training; the offline_to_online regime fine-tunes online after it (the replay buffer
    #: starts with the dataset, every algorithm here can act)
    regimes = ("offline", "offline_to_online")
    #: every subclass has a critic: ``update`` returns ``|Q - y|`` priorities when asked (PER on offline data)
    provides_priorities = True
    state_attributes = ("num_updates", "reward_multiplier")
    #: inputs the actor takes besides the observation (a subclass that conditions the policy, e.g. FamO2O's
    #: coefficient encoding, sets this before calling ``__init__``)
    actor_extra_inputs = 0

    def __init__(self, observation_space, action_space, device: str | torch.device = "cpu", *,
                 normalize_obs: bool = True, reward_scale_by_return: bool = False, reward_scale: float = 1.0,
                 reward_shift: float = 0.0, reweight_eval: bool = False) -> None:
        super().__init__(observation_space, action_space, device)
        self._init_action_scaling(action_space, self.device)
        self.obs_norm = Normalizer(self.obs_dim).to(self.device)
        self.normalize_obs = bool(normalize_obs)
        self.reward_scale_by_return = bool(reward_scale_by_return)
        self.reward_scale = float(reward_scale)
        self.reward_shift = float(reward_shift)
        self.reweight_eval = bool(reweight_eval)
        #: the full multiplier of raw rewards (reward_scale, times the return scale once a dataset is seen)
        self.reward_multiplier = self.reward_scale
        #: number of ``update`` calls so far (policy delay, LR schedules and phases read it)
        self.num_updates = 0

    # ------------------------------------------------------------------ data-dependent setup
    def on_dataset(self, dataset) -> None:
        """Fix observation statistics (``std + 1e-3``) and the reward multiplier from the dataset."""
        if self.normalize_obs:
            self.obs_norm.set_stats(*dataset.observation_stats(eps=1e-3))
        scale = return_scale(dataset) if self.reward_scale_by_return else 1.0
        self.reward_multiplier = self.reward_scale * scale

    # ------------------------------------------------------------------ pieces of an update
    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """``r · reward_multiplier + reward_shift`` (python floats: no extra device tensors)."""
        if self.reward_multiplier == 1.0 and self.reward_shift == 0.0:
            return reward
        return reward * self.reward_multiplier + self.reward_shift

    def eval_weights(self, batch) -> torch.Tensor | None:
        """Weights of the critic/value terms: ``batch.weights`` with ``reweight_eval``, else None."""
        return batch.weights if self.reweight_eval else None

    def policy_inputs(self, batch, obs: torch.Tensor, action: torch.Tensor, action_clip: float | None = None):
        """``(pb, obs, action)`` for the policy terms: the main batch's already-prepared tensors, or the
        decoupled ``policy_batch`` normalised the same way (actions clipped to ``±action_clip`` if given)."""
        pb = policy_batch(batch)
        if pb is batch:
            return pb, obs, action
        p_action = self.from_env_action(pb.action)
        if action_clip is not None:
            p_action = p_action.clamp(-action_clip, action_clip)
        return pb, self.obs_norm(pb.obs), p_action

    def critic_input(self, obs: np.ndarray | torch.Tensor, action: np.ndarray | torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw observations, env-scale actions -> the critic's inputs (normalised obs, action in [-1, 1])."""
        obs_t = self.obs_norm(self.as_tensor(obs))
        act_t = None if action is None else self.from_env_action(self.as_tensor(action))
        return obs_t, act_t

    def diagnostics_critic(self, q: nn.Module, policy: Callable[[torch.Tensor], torch.Tensor]) -> DiagnosticsCritic:
        """SEEM's view of critic ``q`` and ``policy``, both on normalised observations and [-1, 1] actions."""
        return DiagnosticsCritic(q=q, policy=policy, gamma=float(self.gamma), inputs=self.critic_input,
                                 reward=self.transform_reward)

    # ------------------------------------------------------------------ acting
    def policy_action(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Normalised observations -> actions in ``[-1, 1]``."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = True) -> tuple[np.ndarray, Any]:
        action = self.policy_action(self.obs_norm(self.as_tensor(obs)), deterministic)
        return self.to_env_action(action.clamp(-1.0, 1.0)), state


def cosine_lr_lambda(total_steps: int) -> Callable[[int], float]:
    """``t -> 0.5 (1 + cos(π min(t, T) / T))``: optax's ``cosine_decay_schedule`` (stays 0 after ``T``)."""
    total = max(int(total_steps), 1)

    def factor(t: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))

    return factor


def constant_lr(t: int) -> float:
    """``t -> 1``: no learning-rate decay (a picklable ``LambdaLR`` factor)."""
    return 1.0
