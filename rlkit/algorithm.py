"""The algorithm contract: everything the core (regimes, evaluation, diagnostics) may call on an algorithm.

An algorithm owns its networks, optimizers and losses; it never owns a training loop.  The trainer
(:mod:`rlkit.trainer`) picks a regime the algorithm declares, feeds it batches and asks it to act.
Algorithms are created by Hydra from ``configs/algo/<name>.yaml`` (``_target_``), with the environment's
spaces and the device filled in by the core.  The core calls *only* what is declared here, never probes
with ``hasattr``; an algorithm that needs something else from the core extends this contract.

What an algorithm declares (class attributes):

* ``regimes`` -- the regimes it trains in, the first being its default (``rlkit train`` without
  ``regime=``); another regime is refused in one line;
* ``observation`` (``vector | pixels | any``) and ``action`` (``continuous | discrete | any``) -- the envs
  it fits, checked against the env config before anything is built;
* ``provides_priorities`` -- whether ``update`` can return per-row TD-error priorities, so that a sampler
  that learns priorities (``sampler=per``) can be used; otherwise that sampler is refused;
* ``recurrent`` -- whether ``act`` carries state (transformer/RNN context) that ``reset_state`` clears;
* ``decodes_frames`` -- whether it has a world model that decodes frames, so ``rlkit dream`` can draw it
  (:meth:`Algorithm.dream`); latent world models (SPR, VCR) do not and are refused.
* ``population`` -- whether ``S`` copies can train as one stacked population (``train.population=S``,
  :mod:`rlkit.population`): the update is written once as ``update_with(ops, batch)`` against
  :class:`rlkit.population.UpdateOps`, and ``update(batch)`` is ``update_with(DIRECT, batch)``.

What it implements:

* ``act(obs, state=None, deterministic=False) -> (action, state)`` -- batched numpy observations in,
  batched numpy actions out;
* ``update_with(ops, batch) -> UpdateResult`` -- (``population`` algorithms) the same step with every module
  call, random draw, optimizer step and target update going through ``ops``; :meth:`population_refusal`
  names a setting of this instance that keeps it out of a population (None: it can join);
* ``update(batch) -> UpdateResult`` -- one gradient step: metrics as tensors (converted only at log time,
  which keeps the hot path free of host synchronisation) and, when :attr:`priority_feedback` is on (the
  regime turns it on for samplers that learn priorities), one priority per batch row;
* ``replay_spec() -> ReplaySpec`` -- what the online regimes store and how it is sampled: columns,
  n-step and gamma, extra named samplers (world models' sequence windows);
* ``sample_batch(buffer, batch_size)`` -- the batch(es) of one update (default: ``buffer.sample``);
* ``state_dict()`` / ``load_state_dict()`` -- every module, optimizer, scheduler, tensor and counter for
  exact resume (the default collects them from the attributes);
* optional hooks with do-nothing defaults: ``on_dataset(dataset)``, ``reset_state(state, done)``,
  ``critic_for_diagnostics() -> DiagnosticsCritic | None`` (SEEM), ``begin_phase(phase)`` (the
  ``offline_to_online`` regime names the phase that starts: ``"offline"`` or ``"online"``),
  ``dream(obs, action, context, seed) -> Dream`` (``rlkit dream``: a world model that declares
  ``decodes_frames`` reconstructs a logged context and imagines the rest open-loop under the logged actions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

REGIMES = ("offline", "online", "offline_to_online", "pretrain", "finetune")
OBSERVATION_KINDS = ("vector", "pixels", "any")
ACTION_KINDS = ("continuous", "discrete", "any")

#: replay column name -> (per-row shape, numpy dtype)
Columns = Mapping[str, tuple[tuple[int, ...], Any]]


@dataclass
class UpdateResult:
    """What one ``update(batch)`` returns: metrics to log and, optionally, new per-row priorities.

    ``priorities`` (shape ``[batch]``, non-negative) are handed to the sampler of the batch's rows; they are
    only computed when the algorithm's :attr:`Algorithm.priority_feedback` is on.
    """

    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)
    priorities: torch.Tensor | None = None


@dataclass(frozen=True)
class ReplaySpec:
    """What an algorithm needs from the online replay buffer.

    ``columns``: the stored columns (None: the standard transition ``obs, action, reward, next_obs,
    terminated, truncated``); ``nstep``/``gamma``: n-step transitions for single-row samplers;
    ``extra_samplers``: named samplers beside the main one (built with the run's seed by
    :meth:`Algorithm.replay_spec`), read by the algorithm's own :meth:`Algorithm.sample_batch`.
    """

    columns: Columns | None = None
    nstep: int = 1
    gamma: float = 0.99
    extra_samplers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DiagnosticsCritic:
    """What SEEM and the Q statistics (:mod:`rlkit.diagnostics.monitor`) need of a critic.

    ``q``: an ``nn.Module`` ``(obs, action) -> Q`` (one head) in the critic's own input space;
    ``policy``: ``obs -> action`` in that space; ``gamma``: the discount; ``inputs``: raw observations and
    env-scale actions -> the critic's input space; ``reward``: the algorithm's reward transform.
    """

    q: nn.Module
    policy: Callable[[torch.Tensor], torch.Tensor]
    gamma: float
    inputs: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = lambda o, a: (o, a)
    reward: Callable[[torch.Tensor], torch.Tensor] = lambda r: r


@dataclass
class Dream:
    """A world model's version of a logged sequence of ``T`` steps (``rlkit dream``): for ``t < context`` the
    reconstruction of frame ``o_t``, after it the frame predicted open-loop from the context and the logged
    actions; ``reward[t]`` and ``termination[t]`` are the predictions of ``r_t`` and of P(episode ends at
    ``t``) (after action ``a_t``), which the dream reel shows next to the logged ones."""

    frames: np.ndarray       # [T, H, W, 3] uint8
    reward: np.ndarray       # [T] float
    termination: np.ndarray  # [T] float in [0, 1]


class Algorithm:
    """Base class of every algorithm (the contract in the module docstring): attribute-driven
    ``state_dict``, device handling, and the do-nothing defaults of the optional hooks."""

    regimes: ClassVar[tuple[str, ...]] = ("offline",)
    observation: ClassVar[str] = "vector"
    action: ClassVar[str] = "continuous"
    provides_priorities: ClassVar[bool] = False
    recurrent: ClassVar[bool] = False
    decodes_frames: ClassVar[bool] = False
    #: whether the update is written as ``update_with(ops, batch)`` (rlkit.population), so copies can be stacked
    population: ClassVar[bool] = False
    #: extra state-dict attribute names that are plain Python values (counters, flags)
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 device: str | torch.device = "cpu") -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = torch.device(device)
        #: set by the regime when the sampler learns priorities: ``update`` then returns them
        self.priority_feedback = False

    # ------------------------------------------------------------------ acting and learning
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def update(self, batch) -> UpdateResult:
        raise NotImplementedError

    def update_with(self, ops, batch) -> UpdateResult:
        """``update(batch)`` written against the update operations ``ops`` (:mod:`rlkit.population`)."""
        raise NotImplementedError

    def population_refusal(self) -> str | None:
        """Why this algorithm, as configured, cannot train as a population (one line), or None."""
        if not self.population:
            return f"{type(self).__name__} does not write its update as update_with(ops, batch)"
        return None

    def population_member(self) -> Algorithm:
        """The algorithm whose tensors a population stacks and whose ``update_with`` it runs: itself, or the
        wrapped base of a preset that only delegates (``algo=oper``)."""
        return self

    # ------------------------------------------------------------------ replay
    def replay_spec(self, seed: int) -> ReplaySpec:
        """The online replay layout (standard transitions, 1-step); ``seed`` seeds extra samplers."""
        return ReplaySpec()

    def sample_batch(self, buffer, batch_size: int):
        """The batch of one update: ``batch_size`` rows from the main sampler."""
        return buffer.sample(batch_size)

    # ------------------------------------------------------------------ optional hooks
    def on_dataset(self, dataset) -> None:
        """Called once with the offline dataset before training (normalizers, reward scaling, ...)."""

    def begin_phase(self, phase: str) -> None:
        """Called by multi-phase regimes (``offline_to_online``) when ``phase`` (``"offline"`` | ``"online"``)
        starts, and again after a resume; an algorithm that trains differently per phase switches here."""

    def reset_state(self, state: Any, done: np.ndarray) -> Any:
        """The acting state after the envs flagged in ``done`` ended their episodes (stateless: unchanged)."""
        return state

    def critic_for_diagnostics(self) -> DiagnosticsCritic | None:
        """The critic SEEM analyses, or None when the algorithm has none."""
        return None

    def dream(self, obs: np.ndarray, action: np.ndarray, context: int, seed: int = 0) -> Dream:
        """The world model's :class:`Dream` of the logged frames ``obs`` [T, H, W, C] uint8 under the logged
        ``action`` [T], reconstructing the first ``context`` frames (algorithms that declare ``decodes_frames``)."""
        raise NotImplementedError(f"{type(self).__name__} declares no frame decoder (decodes_frames=False)")

    # ------------------------------------------------------------------ persistence
    def _stateful_attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        stateful = (nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.Tensor)
        for name, value in vars(self).items():
            if isinstance(value, stateful):
                out[name] = value
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name, value in self._stateful_attributes().items():
            state[name] = value.detach().clone() if isinstance(value, torch.Tensor) else value.state_dict()
        for name in self.state_attributes:
            state[name] = getattr(self, name)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = set(self._stateful_attributes()) | set(self.state_attributes)
        missing = expected - set(state)
        if missing:
            raise KeyError(f"checkpoint lacks algorithm state {sorted(missing)}")
        for name, value in self._stateful_attributes().items():
            if isinstance(value, torch.Tensor):
                value.data.copy_(state[name].to(value.device))
            else:
                value.load_state_dict(state[name])
        for name in self.state_attributes:
            setattr(self, name, state[name])

    # ------------------------------------------------------------------ helpers
    def as_tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def action_dim(self) -> int:
        if isinstance(self.action_space, gym.spaces.Discrete):
            return int(self.action_space.n)
        return int(np.prod(self.action_space.shape))


class URLBAgent(Algorithm):
    """The contract of URLB agents (Laskin et al. 2021) with the ``pretrain``/``finetune`` regimes
    (:mod:`rlkit.regimes.urlb`), on top of :class:`Algorithm`.

    Declared: ``architecture_keys`` (config keys that shape the networks: a snapshot only loads into an
    agent with equal values), ``meta_interval`` (skill agents draw a new meta every this many episode
    steps; 0: at episode starts only).  The regime sets ``env_step`` (agent steps so far) before every
    environment step.  Hooks, called by the regime in this order: :meth:`setup_urlb` once;
    :meth:`init_meta` when metas are due; finetuning :meth:`infer_meta`; ``act``; :meth:`observe_reward` after
    each env step; :meth:`warmup_actions` during the seed steps; :meth:`init_from_snapshot` when finetuning;
    :meth:`eval_meta` to act without a meta.
    """

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "any"
    architecture_keys: ClassVar[tuple[str, ...]] = ()
    meta_interval: ClassVar[int] = 0

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(observation_space, action_space, device)
        #: agent steps taken so far (set by the regime before every environment step)
        self.env_step = 0

    def setup_urlb(self, reward_free: bool, seed_steps: int, episode_steps: int) -> None:
        """Called once: reward-free pretraining or finetuning on the task reward, the number of seed
        (warm-up) steps and the environment's episode length in agent steps."""
        raise NotImplementedError

    def meta_columns(self) -> Columns:
        """Replay columns of the meta (skill, mode) stored with every transition; none by default."""
        return {}

    def init_meta(self, episode_step: np.ndarray, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A new meta for every env (rows of arrays); the regime keeps the rows whose envs are due."""
        return {}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        """The meta used when acting without one (evaluation)."""
        return {}

    def warmup_actions(self, obs: np.ndarray, meta: dict[str, np.ndarray]) -> np.ndarray | None:
        """Actions during the seed steps; None: uniform random (URLB)."""
        return None

    def observe_reward(self, reward: np.ndarray) -> None:
        """The extrinsic reward of the step just taken (finetuning skill searches use it)."""

    def infer_meta(self, replay) -> dict[str, np.ndarray] | None:
        """Finetuning, before every environment step (after the meta refresh), with the replay buffer: a meta
        inferred from its reward-labelled rows that replaces every env's acting meta at once (APS's task
        regression), or None to keep the meta.  Default: None."""
        return None

    def init_from_snapshot(self, state: dict[str, Any]) -> None:
        """Copy what finetuning keeps from a pretrained agent's ``state_dict`` (URLB Sec. 4)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the intrinsic reward (pretraining)
    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reward-free pretraining: one explicit training step of the module behind the intrinsic reward (RND's
        predictor, ICM's models, CIC's discriminator, ...) on the batch (``obs``/``next_obs`` are the encoded,
        detached observations); returns its metrics.  Default: nothing to train."""
        return {}

    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The intrinsic reward of every batch row (shape ``[B]``), which replaces the n-step reward of the
        transition ``(s_t, s_{t+n})`` in pretraining (URLB's released code).  Pure: no gradient and no network
        update; the only state it may advance is the reward's running normalisation statistics, which the
        reference implementations update once per rewarded batch."""
        raise NotImplementedError(f"{type(self).__name__} has no intrinsic reward")

    def on_episode_end(self, replay) -> None:
        """Called by the URLB regimes after an environment step that ended an episode (and after the step's
        transition was stored), with the replay buffer: add-ons that read past experience refresh from it."""

    def addon_meta(self, episode_step: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The add-on's part of the meta (rows per env; merged with :meth:`init_meta`'s by the regime)."""
        return {}

    def probe_intrinsic_reward(self, batch) -> torch.Tensor | None:
        """The intrinsic reward of each row of a probe batch, leaving every statistic as it was (None: the agent
        has none); the regime logs how it drifts between log intervals (reward nonstationarity)."""
        return None

    def probe_metrics(self, batch) -> dict[str, torch.Tensor]:
        """Measurements on a fixed probe batch that change nothing (intrinsic-reward drift in pretraining,
        divergence from the pretrained policy in finetuning); the regime calls it once per log interval."""
        return {}


class URLBAddon:
    """The contract of an add-on to URLB agents (Self-Reference, Zhao et al. 2025): it gives actor and critic
    an extra input ``u(s)`` of width :attr:`context_dim` and trains its own modules, without changes to the agent.

    Built from ``configs/addon/<name>.yaml`` (``_target_``) with the observation space and device, handed to the
    agent's constructor as ``addon=``.  The agent calls: :meth:`setup` (pretraining or finetuning),
    :meth:`meta_columns` / :meth:`init_meta` / :meth:`eval_meta` (per-step values stored with each transition),
    :meth:`act_context` when acting, :meth:`batch_context` in each update (``u`` with gradient, trained through
    the critic loss between :meth:`zero_grad` and :meth:`step`; ``u'`` without), :meth:`update` after the
    actor-critic step (the add-on's own losses), :meth:`refresh` at episode ends, and ``state_dict`` /
    ``load_state_dict`` / :meth:`init_from_snapshot` for checkpoints and finetuning.
    """

    name: ClassVar[str] = "addon"
    context_dim: int = 0

    def setup(self, reward_free: bool) -> None:
        raise NotImplementedError

    def meta_columns(self) -> Columns:
        return {}

    def init_meta(self, episode_step: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        return {}

    def act_context(self, obs: torch.Tensor, meta: dict[str, np.ndarray], deterministic: bool
                    ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        raise NotImplementedError

    def batch_context(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Clear the gradients of the modules trained through the critic loss."""

    def step(self) -> None:
        """Step the optimiser of the modules trained through the critic loss."""

    def update(self, batch, obs: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor
               ) -> dict[str, torch.Tensor]:
        return {}

    def refresh(self, replay) -> None:
        """An episode ended and its transitions are in ``replay``."""

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def init_from_snapshot(self, state: dict[str, Any]) -> None:
        """Finetuning: copy what the add-on carries over from its pretrained ``state_dict``."""
        raise NotImplementedError


def td_priorities(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PER priorities ``|delta_i| = mean_k |Q_k(s_i, a_i) - y_i|`` (Schaul et al. 2016, Sec. 3.3, proportional
    variant; the sampler adds its ``eps``), the mean over the critic ensemble axis 0 of ``q`` (``[K, B]``;
    a ``[B]`` tensor is one critic), detached; ``target`` broadcasts against ``q``."""
    err = (q.detach() - target.detach()).abs()
    return err.mean(0) if err.dim() > 1 else err


class ContinuousActionMixin:
    """Maps between the env's action box and the ``[-1, 1]`` range tanh policies produce."""

    def _init_action_scaling(self, action_space: gym.spaces.Box, device: torch.device) -> None:
        low = torch.tensor(np.broadcast_to(action_space.low, action_space.shape), dtype=torch.float32)
        high = torch.tensor(np.broadcast_to(action_space.high, action_space.shape), dtype=torch.float32)
        self.action_scale = ((high - low) / 2.0).to(device)
        self.action_bias = ((high + low) / 2.0).to(device)
        self._action_low = action_space.low
        self._action_high = action_space.high

    def to_env_action(self, action: torch.Tensor) -> np.ndarray:
        env_action = (action * self.action_scale + self.action_bias).cpu().numpy()
        return np.clip(env_action, self._action_low, self._action_high)

    def from_env_action(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.action_bias) / self.action_scale
