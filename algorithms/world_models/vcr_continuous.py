"""VCR for continuous control from pixels (Yue et al., AAAI 2023, arXiv 2206.12542, continuous variant) on a
DrQ base (Kostrikov, Yarats, Fergus, ICLR 2021, arXiv 2004.13649).

DrQ (App. B of the DrQ paper): encoder ``f`` (4 conv layers of 32 channels, Linear + LayerNorm + tanh to 50
features), twin critics and a tanh-Gaussian actor (2 x 1024 MLPs) on the features; the actor's loss does not
train the encoder. With ``M`` (``q_augs``) random-shift copies of ``o_t`` and ``K_aug`` (``target_augs``) of
``o_{t+1}``::

    y    = r + gamma (1 - d) (1/K_aug) sum_k [min_i Q_bar_i(f_bar(aug_k o'), a') - alpha log pi(a'|f(aug_k o'))]
    L_Q  = (1/M) sum_m sum_i (Q_i(f(aug_m o), a) - y)^2
    L_pi = alpha log pi(a~|f(o)) - min_i Q_i(f(o), a~)            (features detached)
    L_a  = -log alpha (log pi + H_bar),  H_bar = -|A|

targets: critic EMA 0.01, encoder EMA 0.05, every ``target_update_every`` updates; actor and temperature every
``actor_update_every`` updates; Adam 1e-3; batch 512.

VCR: an MLP transition model ``z_hat_{k+1} = T(z_hat_k, a_{t+k})`` from ``z_hat_0 = f(aug o_t)``; at each real
future latent ``z_bar_{t+k} = f_bar(aug o_{t+k})`` (stop-gradient) draw ``N`` (``policy_actions``) actions
from the current policy, plus the replayed ``a_{t+k}`` (``include_replayed_action``), and compare
``P = softmax_n(Q(z_hat_{t+k}, a_n) / T)`` with ``P_bar = softmax_n(Q_bar(z_bar_{t+k}, a_n) / T)``::

    L_VCR = (1/K) sum_{k=1..K} m_k Dist(sg P_bar, P)

per critic head averaged (``twin_mode=each``) or on ``min(Q1, Q2)`` (``min``); ``m_k`` masks windows that cross
an episode end. ``beta L_VCR`` joins the critic loss (its gradient reaches encoder, transition model and -- unless
``detach_q`` -- the critic). ``transition=transformer`` swaps the MLP ``T`` for
:class:`~rlkit.nets.latent.TransformerTransition` (vector latent in, LayerNorm + tanh out).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlkit.algorithm import ContinuousActionMixin, ReplaySpec, UpdateResult, td_priorities
from rlkit.algorithms.world_models.vcr import VCR, frozen
from rlkit.algorithms.world_models.vcr_losses import action_value_consistency, check_switches
from rlkit.errors import ConfigError
from rlkit.nets import Augment, DrQEncoder, QEnsemble, TanhGaussianHead, make_transition, polyak_update
from rlkit.optim import adam, step
from rlkit.replay import window_rows
from rlkit.utils import derive_seed

TWIN_MODES = ("each", "min")


class VCRContinuous(ContinuousActionMixin, VCR):
    """DrQ + VCR (module docstring); ``continuous`` holds the DrQ and transition-model keywords."""

    state_attributes = ("updates",)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, device: str | torch.device = "cpu",
                 *, discrete: Mapping[str, Any] | None = None, continuous: Mapping[str, Any] | None = None,
                 vcr_weight: float = 1.0, vcr_dist: str = "kl", vcr_space: str = "action_softmax",
                 vcr_temperature: float = 1.0, keep_spr_loss: bool = False, detach_q: bool = False,
                 transition: str | None = None, transformer: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        super().__init__(observation_space, action_space, device)
        check_switches(vcr_dist, vcr_space)
        if vcr_space != "action_softmax":
            raise ConfigError("algo.vcr_space=c51_atoms needs a C51 head (discrete actions); continuous VCR uses "
                              "action_softmax")
        if keep_spr_loss:
            raise ConfigError("algo.keep_spr_loss applies to the SPR base (discrete actions); set it to false on "
                              "dmc-<domain>_<task>")
        self._configure(observation_space, action_space, seed, transition=transition or "mlp",
                        transformer=transformer, **dict(continuous or {}))
        self.vcr_weight, self.vcr_dist, self.vcr_temperature = float(vcr_weight), vcr_dist, float(vcr_temperature)
        self.detach_q = bool(detach_q)

    def _configure(self, observation_space: gym.Space, action_space: gym.Space, seed: int, *,
                   feature_dim: int = 50, conv_channels: int = 32, conv_layers: int = 4,
                   hidden: Sequence[int] = (1024, 1024), batch_size: int = 512, lr: float = 1e-3,
                   gamma: float = 0.99, critic_tau: float = 0.01, encoder_tau: float = 0.05,
                   actor_update_every: int = 2, target_update_every: int = 2, init_temperature: float = 0.1,
                   target_augs: int = 2, q_augs: int = 2, shift_pad: int = 4, prediction_depth: int = 5,
                   transition_hidden: Sequence[int] = (1024,), policy_actions: int = 10,
                   include_replayed_action: bool = True, twin_mode: str = "each", transition: str = "mlp",
                   transformer: Mapping[str, Any] | None = None) -> None:
        shape = tuple(observation_space.shape or ())
        if not isinstance(action_space, gym.spaces.Box):
            raise ConfigError(f"VCR's continuous variant needs a Box action space, got {action_space}")
        if not (isinstance(observation_space, gym.spaces.Box) and observation_space.dtype == np.uint8
                and len(shape) == 3):
            raise ConfigError(f"algo=vcr needs pixel observations (uint8 C x H x W), got {observation_space}; use "
                              "dmc-<domain>_<task> (e.g. dmc-cheetah_run) or atari100k-<game>")
        if twin_mode not in TWIN_MODES:
            raise ConfigError(f"algo.continuous.twin_mode={twin_mode!r}; use one of {TWIN_MODES}")
        if int(policy_actions) < 1 and not include_replayed_action:
            raise ConfigError("algo.continuous.policy_actions must be >= 1 (or include the replayed action)")
        self._init_action_scaling(action_space, self.device)
        act_dim = self.action_dim
        self.encoder = DrQEncoder(shape, conv_channels, conv_layers, feature_dim).to(self.device)
        self.encoder_target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.critic = QEnsemble(feature_dim, act_dim, hidden, 2).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = TanhGaussianHead(feature_dim, act_dim, hidden, log_std_min=-10.0, log_std_max=2.0).to(self.device)
        self.transition = make_transition(transition, (feature_dim,), act_dim, discrete=False,
                                          horizon=int(prediction_depth), hidden=transition_hidden,
                                          transformer=transformer).to(self.device)
        self.log_alpha = torch.tensor(float(np.log(init_temperature)), device=self.device, requires_grad=True)
        self.critic_opt = adam([*self.encoder.parameters(), *self.critic.parameters(),
                                *self.transition.parameters()], lr)
        self.actor_opt = adam(self.actor.parameters(), lr)
        self.alpha_opt = adam([self.log_alpha], lr)
        self.augment = Augment(("shift",), shift_pad, seed=derive_seed(seed, "drq augmentation"))
        self.batch_size, self.gamma = int(batch_size), float(gamma)
        self.critic_tau, self.encoder_tau = float(critic_tau), float(encoder_tau)
        self.actor_every, self.target_every = int(actor_update_every), int(target_update_every)
        self.target_augs, self.q_augs = int(target_augs), int(q_augs)
        self.K, self.policy_actions = int(prediction_depth), int(policy_actions)
        self.include_replayed_action, self.twin_mode = bool(include_replayed_action), twin_mode
        self.target_entropy = -float(act_dim)
        self.updates = 0

    # ------------------------------------------------------------------ persistence (augmentation RNG)
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": {"augment": self.augment.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state.items() if k != "rng"})
        if "rng" in state:
            self.augment.load_state_dict(state["rng"]["augment"])

    # ------------------------------------------------------------------ replay
    def replay_spec(self, seed: int) -> ReplaySpec:
        return ReplaySpec(nstep=1, gamma=self.gamma)

    def sample_batch(self, buffer, batch_size: int):
        """``algo.continuous.batch_size`` transitions plus the windows ``o_{t..t+K}``, ``a_{t..t+K}``, mask."""
        batch = buffer.sample(self.batch_size)
        rows, valid = window_rows(buffer.storage, batch["indices"].cpu().numpy(), self.K + 1)
        window = buffer.gather(rows, ["obs", "action"])
        batch["window_obs"], batch["window_action"] = window["obs"], window["action"]
        batch["window_valid"] = torch.as_tensor(valid, dtype=torch.float32, device=batch["obs"].device)
        return batch

    # ------------------------------------------------------------------ pieces
    def _aug(self, obs: Tensor) -> Tensor:
        return self.augment(obs.float().div(255.0))

    def vcr_loss(self, latents: Tensor, real: Tensor, replayed: Tensor, valid: Tensor) -> Tensor:
        """Per-row ``(1/K) sum_k m_k Dist(sg P_bar_k, P_k)`` over N policy actions (module docstring).

        ``latents`` ``[B, K+1, F]`` imagined (k = 0 is the encoded ``o_t``), ``real`` ``[B, K, F]`` target
        latents of ``o_{t+1..t+K}``, ``replayed`` ``[B, K, A]`` the replayed actions in [-1, 1]."""
        if self.K == 0:
            return latents.new_zeros(latents.shape[0])
        B, K, F_ = real.shape
        with torch.no_grad():
            dist = self.actor(real[:, :, None].expand(B, K, self.policy_actions, F_))
            if self.policy_actions:
                actions = dist.rsample_with_log_prob()[0]
            else:
                actions = real.new_zeros(B, K, 0, replayed.shape[-1])
            if self.include_replayed_action:
                actions = torch.cat([actions, replayed[:, :, None]], dim=2)              # [B, K, N', A]
        n, A = actions.shape[2], actions.shape[-1]
        imagined = latents[:, 1:, None].expand(B, K, n, F_).reshape(-1, F_)
        flat_actions = actions.reshape(-1, A)
        q = frozen(self.critic, imagined, flat_actions) if self.detach_q else self.critic(imagined, flat_actions)
        q = q.view(-1, B, K, n)
        with torch.no_grad():
            q_bar = self.critic_target(real[:, :, None].expand(B, K, n, F_).reshape(-1, F_), flat_actions)
            q_bar = q_bar.view(-1, B, K, n)                                                # [2, B, K, N']
        if self.twin_mode == "min":
            per_step = action_value_consistency(q.min(0).values, q_bar.min(0).values, self.vcr_dist,
                                                self.vcr_temperature)
        else:
            per_step = action_value_consistency(q, q_bar, self.vcr_dist, self.vcr_temperature).mean(0)
        return (per_step * valid[:, 1:]).mean(1)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Mapping[str, Tensor]) -> UpdateResult:
        alpha = self.log_alpha.exp().detach()
        action = self.from_env_action(batch["action"].float())
        reward, not_done = batch["reward"].float(), 1.0 - batch["terminated"].float()
        with torch.no_grad():
            values = []
            for _ in range(self.target_augs):
                nxt = self._aug(batch["next_obs"])
                pi = self.actor(self.encoder(nxt))
                next_action, logp = pi.rsample_with_log_prob()
                q_next = self.critic_target(self.encoder_target(nxt), next_action).min(0).values
                values.append(q_next - alpha * logp)
            target = reward + self.gamma * not_done * torch.stack(values).mean(0)
        window = batch["window_obs"]
        features = [self.encoder(self._aug(window[:, 0])) for _ in range(self.q_augs)]
        qs = [self.critic(f, action) for f in features]
        critic_loss = sum((batch["weights"] * (q - target).pow(2)).mean(-1).sum() for q in qs) / len(qs)
        window_action = self.from_env_action(batch["window_action"].float())              # [B, K+1, A]
        latents = self.transition.rollout(features[0], window_action[:, :self.K])
        if self.K > 0 and self.vcr_weight > 0:
            with torch.no_grad():
                real = self.encoder_target(self._aug(window[:, 1:].flatten(0, 1))).view(len(window), self.K, -1)
            vcr = self.vcr_loss(latents, real, window_action[:, 1:], batch["window_valid"])
        else:  # DrQ alone (vcr_weight = 0 or prediction_depth = 0)
            vcr = critic_loss.new_zeros(len(window))
        total = critic_loss + self.vcr_weight * vcr.mean()
        step(self.critic_opt, total)
        metrics: dict[str, Tensor | float] = {
            "train/critic_loss": critic_loss.detach(), "train/vcr_loss": vcr.detach().mean(),
            "train/q_mean": qs[0].detach().mean(), "train/alpha": alpha,
        }
        if self.updates % self.actor_every == 0:
            feat = features[0].detach()
            new_action, logp = self.actor(feat).rsample_with_log_prob()
            actor_loss = (alpha * logp - self.critic(feat, new_action).min(0).values).mean()
            step(self.actor_opt, actor_loss)
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            step(self.alpha_opt, alpha_loss)
            metrics["train/actor_loss"] = actor_loss.detach()
            metrics["train/entropy"] = -logp.detach().mean()
        if self.updates % self.target_every == 0:
            polyak_update(self.critic, self.critic_target, self.critic_tau)
            polyak_update(self.encoder, self.encoder_target, self.encoder_tau)
        self.updates += 1
        return UpdateResult(metrics, td_priorities(qs[0], target) if self.priority_feedback else None)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        x = torch.as_tensor(np.asarray(obs), device=self.device).float().div(255.0)
        dist = self.actor(self.encoder(x))
        action = dist.mode if deterministic else dist.rsample_with_log_prob()[0]
        return self.to_env_action(action), state
