"""DDPG as URLB uses it (DrQ-v2 style; Laskin et al. 2021, the released URLB code): the
backbone of every URLB agent, and with the extrinsic reward the "from scratch" baseline and expert.

Networks (input ``x = [f(s), z]``, ``z`` the skill of skill agents, nothing for plain DDPG):

* encoder ``f``: identity for states; for pixels 4 conv layers (32 channels, 3x3, strides 2,1,1,1, ReLU) on
  ``s/255 - 0.5``, flattened (``32 * 35 * 35`` for 84x84), trained through the critic loss only;
* actor: ``Linear(x -> F) -> LayerNorm -> tanh -> Linear(F -> H) -> ReLU [-> Linear(H -> H) -> ReLU for
  pixels] -> Linear(H -> |A|) -> tanh = mu``, ``F = H`` for states and ``feature_dim`` for pixels;
* critic: states ``trunk = Linear([x, a] -> H) -> LayerNorm -> tanh``, heads ``Linear(H -> H) -> ReLU ->
  Linear(H -> 1)``; pixels ``trunk = Linear(x -> F) -> LayerNorm -> tanh``, heads on ``[trunk, a]`` with one
  more hidden layer;
* init: orthogonal weights, zero biases (convolutions: orthogonal with the ReLU gain).

Policy: ``Normal(mu, sigma)`` "truncated": a sample is ``mu + eps``, ``eps ~ N(0, sigma^2)`` clipped to
``+-stddev_clip`` where the loss says so, then clamped to ``(-1 + 1e-6, 1 - 1e-6)`` with a straight-through
gradient.  ``sigma`` follows ``stddev_schedule`` (a constant, ``linear(a,b,T)`` or
``step_linear(a,b1,T1,b2,T2)`` over environment steps).  Exploration noise is not clipped.

Losses on an n-step batch (``R = R^(n)`` or the intrinsic reward of reward-free agents, ``Gamma = gamma^n``
times the env discount; the replay buffer computes both):

* ``a' = mu(x') + clip(eps)``, ``y = R + Gamma min(Q1_bar, Q2_bar)(x', a')``            (no gradient)
* ``L_Q = MSE(Q1(x, a), y) + MSE(Q2(x, a), y)``                                  (encoder trained by it)
* ``L_pi = -mean min(Q1, Q2)(x, mu(x) + clip(eps))``, features detached
* ``theta_bar <- tau theta + (1 - tau) theta_bar`` after every update.

URLB updates the critic first and then the actor against the updated critic (``simultaneous_update=False``).
The MOSS JAX code steps both from the pre-update parameters (``simultaneous_update=True``).

Finetuning from a snapshot (URLB's ``init_from``, :meth:`DDPG.init_from_snapshot`): the encoder, the whole actor and the
critic trunk (Linear + LayerNorm) are copied; the Q heads, optimizers and the critic *target* stay fresh.  The
target is a copy of the fresh critic made before the trunk is copied, so it starts with a random trunk and
only converges by EMA (URLB and MOSS both do this; ``target_from_fresh_critic=False`` re-syncs it instead).

URLB hooks (called by :mod:`rlkit.regimes.urlb`): :meth:`setup_urlb`, :meth:`meta_columns`,
:meth:`init_meta`, :meth:`eval_meta`, :meth:`warmup_actions`, :meth:`observe_reward`,
:meth:`init_from_snapshot`; attributes ``nstep``, ``gamma``, ``meta_interval`` and ``env_step`` (set by the
regime before every environment step; the std schedule reads it).

Intrinsic-reward agents (RND, APT, CIC, MOSS, ...) derive from this class and implement two separate
methods that :meth:`DDPG.update` calls in pretraining: ``update_representation`` (the one place their module is
trained) and ``intrinsic_reward`` (pure: it reads the module and trains nothing).
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.algorithm import (
    ContinuousActionMixin,
    DiagnosticsCritic,
    ReplaySpec,
    UpdateResult,
    URLBAddon,
    URLBAgent,
    td_priorities,
)
from rlkit.algorithms.unsupervised.knn_reward import CandidateQueue, RunningMeanVar
from rlkit.errors import CheckpointError, ConfigError
from rlkit.nets import polyak_update
from rlkit.optim import adam, step
from rlkit.replay import transition_columns


# ----------------------------------------------------------------------------- pieces
def stddev_at(schedule: float | str, step: int) -> float:
    """``sigma`` of a DrQ-v2 schedule at ``step``: a number, ``linear(init,final,duration)`` or
    ``step_linear(init,final1,duration1,final2,duration2)`` (linear pieces, then constant)."""
    try:
        return float(schedule)
    except (TypeError, ValueError):
        pass
    text = str(schedule).replace(" ", "")
    match = re.fullmatch(r"linear\(([^,]+),([^,]+),([^,]+)\)", text)
    if match:
        init, final, duration = (float(g) for g in match.groups())
        mix = float(np.clip(step / duration, 0.0, 1.0))
        return (1.0 - mix) * init + mix * final
    match = re.fullmatch(r"step_linear\(([^,]+),([^,]+),([^,]+),([^,]+),([^,]+)\)", text)
    if match:
        init, final1, duration1, final2, duration2 = (float(g) for g in match.groups())
        if step <= duration1:
            mix = float(np.clip(step / duration1, 0.0, 1.0))
            return (1.0 - mix) * init + mix * final1
        mix = float(np.clip((step - duration1) / duration2, 0.0, 1.0))
        return (1.0 - mix) * final1 + mix * final2
    raise ConfigError(f"bad stddev_schedule '{schedule}'; use a number, 'linear(init,final,steps)' or "
                      "'step_linear(init,final1,steps1,final2,steps2)'")


def sample_truncated(mu: torch.Tensor, std: float, clip: float | None = None, eps: float = 1e-6) -> torch.Tensor:
    """``mu + noise`` (noise ``N(0, std^2)``, clipped to ``+-clip`` if given), clamped to
    ``(-1 + eps, 1 - eps)`` with a straight-through gradient (DrQ-v2's ``TruncatedNormal.sample``)."""
    noise = torch.randn_like(mu) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    x = mu + noise
    clamped = x.clamp(-1.0 + eps, 1.0 - eps)
    return x - x.detach() + clamped.detach()


def orthogonal_init(module: nn.Module) -> None:
    """URLB's ``weight_init``: orthogonal Linear weights, zero biases; convolutions with the ReLU gain."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.orthogonal_(module.weight, gain=nn.init.calculate_gain("relu"))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class PixelEncoder(nn.Module):
    """DrQ-v2 conv encoder: ``s/255 - 0.5`` -> 4 x (3x3 conv, 32 ch, ReLU), strides 2,1,1,1 -> flatten."""

    def __init__(self, obs_shape: tuple[int, ...]) -> None:
        super().__init__()
        channels = obs_shape[0]
        self.convnet = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
        )
        with torch.no_grad():
            self.repr_dim = int(self.convnet(torch.zeros(1, *obs_shape)).numel())
        self.apply(orthogonal_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.convnet(obs / 255.0 - 0.5).flatten(1)


def random_shift(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """DrQ's augmentation: replicate-pad by ``pad`` pixels and crop the original size at a random integer
    offset per image.  DrQ-v2 does it with a bilinear ``grid_sample`` at integer shifts, which samples exact
    pixel centres, i.e. this crop."""
    b, c, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b,), device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    chan = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


class Actor(nn.Module):
    """``mu(x) = tanh(policy(trunk(x)))`` (module docstring)."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dim: int, trunk_dim: int, pixels: bool) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, trunk_dim), nn.LayerNorm(trunk_dim), nn.Tanh())
        layers: list[nn.Module] = [nn.Linear(trunk_dim, hidden_dim), nn.ReLU()]
        if pixels:
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        layers.append(nn.Linear(hidden_dim, action_dim))
        self.policy = nn.Sequential(*layers)
        self.apply(orthogonal_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.policy(self.trunk(x)))


class _Q1View(nn.Module):
    """The first head of a state-based :class:`Critic` as its own module: ``(obs, act) -> Q1`` with only the
    trunk and Q1 parameters (shared, not copied), which is what SEEM differentiates."""

    def __init__(self, critic: Critic) -> None:
        super().__init__()
        self.trunk, self.q1 = critic.trunk, critic.q1

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q1(self.trunk(torch.cat([obs, action], dim=-1))).squeeze(-1)


class Critic(nn.Module):
    """Twin ``Q(x, a)`` over one shared trunk: ``(Q1, Q2)``, each ``(B,)`` (module docstring)."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dim: int, feature_dim: int, pixels: bool) -> None:
        super().__init__()
        self.pixels = pixels
        if pixels:
            self.trunk = nn.Sequential(nn.Linear(in_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
            head_in = feature_dim + action_dim
        else:
            self.trunk = nn.Sequential(nn.Linear(in_dim + action_dim, hidden_dim), nn.LayerNorm(hidden_dim),
                                       nn.Tanh())
            head_in = hidden_dim

        def head() -> nn.Sequential:
            layers: list[nn.Module] = [nn.Linear(head_in, hidden_dim), nn.ReLU()]
            if pixels:
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
            layers.append(nn.Linear(hidden_dim, 1))
            return nn.Sequential(*layers)

        self.q1, self.q2 = head(), head()
        self.apply(orthogonal_init)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pixels:
            h = torch.cat([self.trunk(x), action], dim=-1)
        else:
            h = self.trunk(torch.cat([x, action], dim=-1))
        return self.q1(h).squeeze(-1), self.q2(h).squeeze(-1)


# ----------------------------------------------------------------------------- the agent
class DDPG(ContinuousActionMixin, URLBAgent):
    """URLB's DDPG (module docstring).  ``regime = "finetune"``: without ``snapshot=`` it trains from
    scratch on the task reward, which is how URLB trains its DDPG baseline and expert."""

    regimes: ClassVar[tuple[str, ...]] = ("finetune",)
    provides_priorities: ClassVar[bool] = True
    state_attributes: ClassVar[tuple[str, ...]] = ("env_step", "update_encoder")
    #: config keys that shape the networks: a snapshot is only loadable with equal values
    architecture_keys: ClassVar[tuple[str, ...]] = ("obs_type", "hidden_dim", "feature_dim")

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, device: str | torch.device = "cpu",
                 *, obs_type: str = "states", lr: float = 1e-4, hidden_dim: int = 1024, feature_dim: int = 50,
                 gamma: float = 0.99, nstep: int = 3, tau: float = 0.01, stddev_schedule: float | str = 0.2,
                 stddev_clip: float = 0.3, init_critic: bool = True, target_from_fresh_critic: bool = True,
                 finetune_update_encoder: bool = False, simultaneous_update: bool = False,
                 meta_dim: int = 0, addon: URLBAddon | None = None) -> None:
        super().__init__(observation_space, action_space, device)
        if not isinstance(action_space, gym.spaces.Box):
            raise ConfigError(f"{type(self).__name__} needs a continuous (Box) action space; got {action_space}")
        if obs_type not in ("states", "pixels"):
            raise ConfigError(f"algo.obs_type must be 'states' or 'pixels', got '{obs_type}'")
        pixels = obs_type == "pixels"
        if pixels != (len(observation_space.shape) == 3):
            raise ConfigError(f"algo.obs_type={obs_type} but the env observes shape {observation_space.shape}; "
                              f"set env.kwargs.obs_type={obs_type} (or algo.obs_type to match the env)")
        self._init_action_scaling(action_space, self.device)
        self.obs_type, self.pixels = obs_type, pixels
        self.hidden_dim, self.feature_dim, self.meta_dim = int(hidden_dim), int(feature_dim), int(meta_dim)
        self.gamma, self.nstep, self.tau = float(gamma), int(nstep), float(tau)
        self.stddev_schedule, self.stddev_clip = stddev_schedule, float(stddev_clip)
        stddev_at(stddev_schedule, 0)  # refuses a malformed schedule now
        self.init_critic, self.target_from_fresh_critic = bool(init_critic), bool(target_from_fresh_critic)
        self.finetune_update_encoder = bool(finetune_update_encoder)
        self.simultaneous_update = bool(simultaneous_update)
        self.reward_free = False
        #: compute the intrinsic reward before ``update_representation``'s step (MOSS) instead of after it
        self.reward_before_rep_update = False
        self.update_encoder = True

        if pixels:
            self.encoder = PixelEncoder(tuple(observation_space.shape)).to(self.device)
            repr_dim, trunk_dim = self.encoder.repr_dim, self.feature_dim
        else:
            self.encoder = nn.Identity()
            repr_dim, trunk_dim = self.obs_dim, self.hidden_dim
        #: an add-on (Self-Reference) whose vector u(s) is an extra input of actor and critic
        self.addon = addon
        in_dim = repr_dim + self.meta_dim + (addon.context_dim if addon is not None else 0)
        act_dim = self.action_dim
        self.actor = Actor(in_dim, act_dim, self.hidden_dim, trunk_dim, pixels).to(self.device)
        self.critic = Critic(in_dim, act_dim, self.hidden_dim, self.feature_dim, pixels).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        #: measurements only: the actor as finetuning received it (KL to the pretrained policy) and the running
        #: mean of the pretraining intrinsic reward (normalised intrinsic return), Self-Reference's Table 2
        self.pretrained_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.intrinsic_reward_stats = RunningMeanVar().to(self.device)
        self.actor_opt = adam(self.actor.parameters(), lr)
        self.critic_opt = adam(self.critic.parameters(), lr)
        self.encoder_opt = adam(self.encoder.parameters(), lr) if pixels else None
        self.lr = float(lr)

    # ------------------------------------------------------------------ URLB hooks
    def setup_urlb(self, reward_free: bool, seed_steps: int, episode_steps: int) -> None:
        """Called once by the URLB regimes: reward-free pretraining or finetuning on the task reward,
        the number of seed (warm-up) steps and the environment's episode length in agent steps. Agents that
        declare the ``pretrain`` regime have an intrinsic reward and may train reward-free."""
        if reward_free and "pretrain" not in self.regimes:
            raise ConfigError(f"{type(self).__name__} has no intrinsic reward and cannot pretrain reward-free; use an "
                              "intrinsic-reward agent (algo=rnd, apt, icm, disagreement, diayn, smm, aps, proto, cic, "
                              "moss) with regime=pretrain")
        self.reward_free = bool(reward_free)

    def replay_spec(self, seed: int) -> ReplaySpec:
        """The transition columns plus the meta columns, n-step returns with the agent's ``nstep``/``gamma``."""
        obs_dtype = np.uint8 if self.pixels else np.float32
        extra = {**self.meta_columns(), **(self.addon.meta_columns() if self.addon is not None else {})}
        columns = transition_columns(tuple(self.observation_space.shape), tuple(self.action_space.shape),
                                     obs_dtype=obs_dtype, extra=extra)
        return ReplaySpec(columns=columns, nstep=self.nstep, gamma=self.gamma)

    # ------------------------------------------------------------------ acting
    def _meta_tensor(self, meta: dict[str, Any] | None) -> torch.Tensor | None:
        if self.meta_dim == 0:
            return None
        return torch.as_tensor(np.asarray(meta["skill"]), dtype=torch.float32, device=self.device)

    def _policy_input(self, features: torch.Tensor, skill: torch.Tensor | None,
                      context: torch.Tensor | None = None) -> torch.Tensor:
        """``x = [f(s), z, u]`` (``z`` for skill agents, ``u`` the add-on's vector)."""
        parts = [p for p in (features, skill, context) if p is not None]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def _sync_addon(self) -> URLBAddon | None:
        if self.addon is not None:
            self.addon.setup(self.reward_free)
        return self.addon

    def addon_meta(self, episode_step: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        addon = self._sync_addon()
        return addon.init_meta(episode_step, rng) if addon is not None else {}

    def on_episode_end(self, replay) -> None:
        if self.addon is not None:
            self.addon.refresh(replay)

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        obs_t = torch.as_tensor(obs, device=self.device).float()
        addon = self._sync_addon()
        if state is None:
            state = {**self.eval_meta(obs_t.shape[0]), **(addon.eval_meta(obs_t.shape[0]) if addon else {})}
        context = None
        if addon is not None:
            context, stored = addon.act_context(obs_t, state, deterministic)
            state = {**state, **stored}
        x = self._policy_input(self.encoder(obs_t), self._meta_tensor(state), context)
        mu = self.actor(x)
        action = mu if deterministic else sample_truncated(mu, stddev_at(self.stddev_schedule, self.env_step))
        return self.to_env_action(action), state

    # ------------------------------------------------------------------ learning
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Features of a batch of observations (pixels: random shift, then the conv encoder)."""
        if self.pixels:
            return self.encoder(random_shift(obs))
        return obs.float()

    def update(self, batch) -> UpdateResult:
        """One URLB agent update, top to bottom (URLB's released ``update``; module docstring equations):

        1. encode ``s`` (pixels: random shift + conv encoder) and ``s'`` (no gradient);
        2. reward-free pretraining: train the intrinsic module (:meth:`update_representation`, explicit) and
           compute the intrinsic reward (:meth:`intrinsic_reward`, pure), from the module's parameters after that
           step (URLB, CIC) or before it (``reward_before_rep_update``: MOSS); finetuning: the n-step extrinsic
           return ``R^(n)`` of the batch;
        3. with an add-on (Self-Reference): its vector ``u`` of ``s`` (with gradient) and ``u'`` of ``s'``;
        4. critic step, actor step and target EMA on ``x = [f(s), z, u]`` (:meth:`update_actor_critic`);
        5. the add-on's own losses (Self-Reference's query module) on the same batch and reward.
        """
        addon = self._sync_addon()
        obs = self.encode(batch.obs)
        with torch.no_grad():
            next_obs = self.encode(batch.next_obs)
        metrics: dict[str, Any] = {}
        if self.reward_free:
            early = self.intrinsic_reward(batch, obs.detach(), next_obs) if self.reward_before_rep_update else None
            metrics.update(self.update_representation(batch, obs.detach(), next_obs))
            reward = early if early is not None else self.intrinsic_reward(batch, obs.detach(), next_obs)
            metrics.update(self.reward_metrics(batch, reward))
            self.intrinsic_reward_stats.update(reward)
        else:
            reward = batch.reward
        if not self.update_encoder:
            obs = obs.detach()
        skill = batch.skill if self.meta_dim else None
        context, next_context = addon.batch_context(batch, obs.detach(), next_obs) if addon else (None, None)
        x = self._policy_input(obs, skill, context)
        x_next = self._policy_input(next_obs, skill, next_context)
        ac_metrics, q, target = self.update_actor_critic(x, self.from_env_action(batch.action), reward,
                                                         batch.discount, x_next)
        metrics.update(ac_metrics)
        if addon is not None:
            metrics.update(addon.update(batch, obs.detach(), next_obs, reward))
        return UpdateResult(metrics, td_priorities(q, target) if self.priority_feedback else None)

    def reward_metrics(self, batch, reward: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pretraining metrics of the rewarded batch: its mean intrinsic and (ignored) extrinsic reward."""
        return {"train/intrinsic_reward": reward.mean(), "train/extrinsic_reward": batch.reward.mean()}

    def update_actor_critic(self, x: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                            discount: torch.Tensor, x_next: torch.Tensor
                            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One critic + actor step and the target EMA (module docstring equations); returns the metrics,
        both critics' ``Q(x, a)`` (``[2, B]``, detached) and the target ``y``."""
        std = stddev_at(self.stddev_schedule, self.env_step)
        with torch.no_grad():
            next_action = sample_truncated(self.actor(x_next), std, self.stddev_clip)
            target_q1, target_q2 = self.critic_target(x_next, next_action)
            target = reward + discount * torch.min(target_q1, target_q2)
        q1, q2 = self.critic(x, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)

        def actor_loss_fn() -> torch.Tensor:
            policy_action = sample_truncated(self.actor(x.detach()), std, self.stddev_clip)
            pq1, pq2 = self.critic(x.detach(), policy_action)
            return -torch.min(pq1, pq2).mean()

        if self.encoder_opt is not None:
            self.encoder_opt.zero_grad(set_to_none=True)
        if self.addon is not None:  # its vector u is trained through the critic loss
            self.addon.zero_grad()
        if self.simultaneous_update:  # MOSS JAX: both gradients at the pre-update parameters
            actor_loss = actor_loss_fn()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.critic_opt.zero_grad(set_to_none=True)  # drop the actor loss's critic gradients
            critic_loss.backward()
            self.critic_opt.step()
            self.actor_opt.step()
        else:  # URLB: critic first, then the actor against the updated critic
            step(self.critic_opt, critic_loss)
            actor_loss = actor_loss_fn()
            step(self.actor_opt, actor_loss)
        if self.encoder_opt is not None and self.update_encoder:
            self.encoder_opt.step()
        if self.addon is not None:
            self.addon.step()
        polyak_update(self.critic, self.critic_target, self.tau)
        return {
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/q_mean": q1.detach().mean(),
            "train/target_q": target.mean(),
            "train/batch_reward": reward.detach().mean(),
            "train/stddev": std,
        }, torch.stack([q1.detach(), q2.detach()]), target

    # ------------------------------------------------------------------ measurements (change nothing)
    @contextlib.contextmanager
    def frozen_reward_statistics(self) -> Iterator[None]:
        """Restore every running reward statistic (:class:`RunningMeanVar`, :class:`CandidateQueue`) on exit, so a
        measured reward leaves the agent exactly as it was."""
        stats = [m for v in vars(self).values() if isinstance(v, nn.Module) for m in v.modules()
                 if isinstance(m, RunningMeanVar | CandidateQueue)]
        saved = [copy.deepcopy(m.state_dict()) for m in stats]
        try:
            yield
        finally:
            for m, state in zip(stats, saved, strict=True):
                m.load_state_dict(state)

    @torch.no_grad()
    def probe_intrinsic_reward(self, batch) -> torch.Tensor | None:
        """The intrinsic reward of each probe row with the reward statistics left untouched (None: no intrinsic
        reward)."""
        if type(self).intrinsic_reward is URLBAgent.intrinsic_reward or self.pixels:
            return None
        with self.frozen_reward_statistics():
            return self.intrinsic_reward(batch, batch.obs.float(), batch.next_obs.float())

    @torch.no_grad()
    def probe_metrics(self, batch) -> dict[str, torch.Tensor]:
        """Finetuning, on a fixed probe batch, Self-Reference's Table 2 measures (Zhao et al. 2025):
        ``urlb/kl_to_pretrained`` = ``mean_s KL(N(mu_ft(s), sigma^2 I) || N(mu_pre(s), sigma^2 I)) =
        mean_s sum_j (mu_ft - mu_pre)_j^2 / (2 sigma^2)`` (sigma the exploration std; ``mu_pre`` the actor the
        snapshot gave) and ``urlb/normalized_intrinsic_reward`` = the probe's intrinsic reward under the
        pretrained intrinsic module over the mean pretraining intrinsic reward.  With an add-on both actors see
        the current ``u``.  Pretraining: nothing (the regime logs the reward drift)."""
        if self.reward_free or self.pixels:
            return {}
        obs, next_obs = batch.obs.float(), batch.next_obs.float()
        skill = batch.skill if self.meta_dim else None
        context = self._sync_addon().batch_context(batch, obs, next_obs)[0] if self.addon is not None else None
        x = self._policy_input(obs, skill, context)
        std = stddev_at(self.stddev_schedule, self.env_step)
        kl = (self.actor(x) - self.pretrained_actor(x)).square().sum(-1) / (2 * std**2)
        metrics = {"urlb/kl_to_pretrained": kl.mean()}
        reward = self.probe_intrinsic_reward(batch)
        if reward is not None and self.intrinsic_reward_stats.count > 1:  # the snapshot saw pretraining rewards
            metrics["urlb/normalized_intrinsic_reward"] = reward.mean() / self.intrinsic_reward_stats.mean.squeeze()
        return metrics

    def critic_for_diagnostics(self) -> DiagnosticsCritic | None:
        """``Q1`` and ``mu`` on state observations and actions in [-1, 1]; None for pixels or skills."""
        if self.meta_dim or self.pixels or self.addon is not None:
            return None
        return DiagnosticsCritic(q=_Q1View(self.critic), policy=self.actor, gamma=self.gamma,
                                 inputs=lambda o, a: (o, self.from_env_action(a)))

    # ------------------------------------------------------------------ snapshots
    def init_from_snapshot(self, state: dict[str, Any]) -> None:
        """URLB's ``init_from`` (released code): copy the encoder, the whole actor and (``init_critic``) the critic
        trunk from a pretrained agent's ``state_dict``; everything else stays as constructed."""
        if self.addon is not None and "addon" not in state:
            raise CheckpointError(f"the snapshot was pretrained without addon={self.addon.name}; finetune with "
                                  "addon=none")
        if self.addon is None and "addon" in state:
            raise CheckpointError("the snapshot was pretrained with an add-on; finetune with the same addon=")
        try:
            if self.pixels:
                self.encoder.load_state_dict(state["encoder"])
            self.actor.load_state_dict(state["actor"])
            if self.init_critic:
                trunk = {k[len("trunk."):]: v for k, v in state["critic"].items() if k.startswith("trunk.")}
                self.critic.trunk.load_state_dict(trunk)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"the snapshot's networks do not fit this {type(self).__name__}: "
                                  f"{str(exc).splitlines()[0]}") from exc
        if self.addon is not None:
            self.addon.init_from_snapshot(state["addon"])
        # measurement-only copies (unused by finetuning's updates): the received actor, the pretrained intrinsic
        # module(s) and the pretraining reward statistics
        self.pretrained_actor.load_state_dict(self.actor.state_dict())
        kept = {"actor", "critic", "critic_target", "encoder", "pretrained_actor"}
        for name, value in vars(self).items():
            if isinstance(value, nn.Module) and name not in kept and name in state:
                value.load_state_dict(state[name])
        if not self.target_from_fresh_critic:
            self.critic_target.load_state_dict(self.critic.state_dict())
        self.update_encoder = self.finetune_update_encoder or not self.pixels

    # ------------------------------------------------------------------ persistence (the add-on's state too)
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.addon is not None:
            state["addon"] = self.addon.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.addon is not None:
            if "addon" not in state:
                raise KeyError("checkpoint lacks the add-on's state")
            self.addon.load_state_dict(state["addon"])
