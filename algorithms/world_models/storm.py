"""STORM: stochastic transformer world model + actor-critic in imagination (Zhang et al., NeurIPS 2023,
arXiv 2310.09615). Architecture, losses and schedule follow the authors' released code (weipu-zhang/STORM),
whose config the README states equals the paper's settings.

One ``update(batch)`` = one world-model update on ``wm_batch_size`` x ``wm_seq_len`` replayed steps
+ one agent update on ``imagine_batch_size`` imagined rollouts; the ``online`` regime
calls it ``train.updates_per_step`` times per env step after ``train.warmup_steps`` random steps
(paper: 1 and 1024).

World model (released code's loss), with z_t ~ q(z_t | o_t) (categorical VAE, unimix, straight-through),
h_t = f(z_<=t, a_<=t) (one fused token per step through :class:`~rlkit.nets.transformer.CausalTransformer`)
and prior p(z_{t+1} | h_t)::

    L = L_rec + L_rew + L_term + 0.5 max(1, KL[sg(q_{t+1}) || p_t]) + 0.1 max(1, KL[q_{t+1} || sg(p_t)])

with L_rec the per-frame pixel-summed squared error of the decoded posterior sample, L_rew the symlog
two-hot CE of r_t from h_t, L_term the BCE of d_t = terminated_t OR life_lost_t from h_t; Adam 1e-4,
clip 1000.

Imagination (released code's rollout): 1024 replayed contexts of 8 steps are encoded (posterior samples)
and prefilled into the transformer's KV cache; s_0 = [z_0 ~ p(. | h_7), h_7]; then for 16 steps
a_i ~ pi(s_i), h_i' = step(z_i, a_i) (one cached token, never re-running the context),
r_i = symexp(E[R(h_i')]), d_i = [C(h_i') > 0], z_{i+1} ~ p(. | h_i'), s_{i+1} = [z_{i+1}, h_i'].

Actor-critic (DreamerV3-style, as in the released code): lambda-returns G (gamma 0.985, lambda 0.95) from the
critic V and G_slow from the slow critic (EMA 0.98); S = max(1, EMA(P95(G)) - EMA(P5(G)))::

    L = -mean[log pi(a_t|s_t) sg((G_t - V(s_t)) / S)] - 3e-4 mean H[pi(.|s_t)]
        + CE(twohot(G_t), V_logits(s_t)) + CE(twohot(G_slow_t), V_logits(s_t))

one Adam (3e-5, eps 1e-5, clip 100) for actor and critic.

Acting (released code's training loop): the last ``act_context`` (16) (observation, action) pairs are
encoded and passed through the transformer; the action is sampled from pi([z ~ p(. | h_last), h_last]);
then the current frame and the action join the context.

Quirks of the authors' released code as flags, each defaulting to the reference behaviour:

* ``act_on_posterior=False``: the actor sees the *prior* sample of the current frame predicted
  from the context, so the frame just received enters only at the next step; True uses the posterior
  sample of the current frame instead (with h from the context).
* ``reset_context_on_episode_end=False``: the acting context is never cleared at episode ends.
* ``cross_episodes=True``: replay windows and imagination contexts cross episode boundaries.
* ``free_bits_mode="batch_mean"``: free bits on the batch-mean KL ("per_step": DreamerV3).
* ``lambda_bootstrap="t"``: the lambda-return mixes in V(s_t) ("t+1": DreamerV3).
* ``return_norm_debias=False``: the percentile EMAs start at 0 without bias correction.
* ``hard_termination=True``: imagined continuation 1 - [logit > 0] (False: 1 - sigmoid).
* ``life_loss_terminal=True``: a life loss is stored as a termination for the world model.
* ``precision="auto"``: bf16 autocast on CUDA (with TF32 matmuls when ``tf32``), fp32 on CPU;
  "bf16" / "fp32" force one.
* ``imagine_kv_cache=True``: imagine with the incremental KV-cached ``step``; False re-runs the whole
  token history at every imagined step (what a cache-less implementation costs; same outputs).

Quirks outside the algorithm, also at the reference behaviour: the training env is re-seeded
identically at every reset, which is the ``atari100k-*`` envs' ``reseed_every_reset=True``
(:mod:`rlkit.envs.atari`); the released evaluation script (scores of the first 20 episodes to finish over 5
envs, with the sampled policy) is ``eval.protocol=first_finished`` in ``configs/algo/storm.yaml``
(:func:`rlkit.evaluation.evaluate.evaluate`); ``eval.protocol=assigned`` gives rlkit's unbiased
evaluation of 20 assigned episodes instead. Each summary labels the protocol its score was measured with.
Observations must be uint8 frames (H, W, C) with H = W divisible by 2^len(encoder_channels); the
replay sequence samplers need one collection env (``train.num_envs=1``, the paper's setting).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rlkit.algorithm import Algorithm, Dream, ReplaySpec, UpdateResult
from rlkit.algorithms.world_models.storm_losses import (
    BOOTSTRAP_MODES,
    FREE_BITS_MODES,
    ReturnNormalizer,
    kl_balance,
    lambda_returns,
    reconstruction_loss,
)
from rlkit.algorithms.world_models.storm_nets import ActorCritic, WorldModel, WorldModelConfig
from rlkit.errors import ConfigError
from rlkit.nets import polyak_update
from rlkit.nets.heads import TwoHotSymlog, full_precision, sample_categorical
from rlkit.nets.transformer import TransformerConfig
from rlkit.optim import adam
from rlkit.replay.samplers import SequenceSampler
from rlkit.utils import derive_seed

DEFAULT_LOSS_WEIGHTS = {"reconstruction": 1.0, "reward": 1.0, "termination": 1.0, "dynamics": 0.5,
                        "representation": 0.1}
PRECISIONS = ("auto", "bf16", "fp32")


class STORM(Algorithm):
    """STORM agent: :class:`WorldModel` + :class:`ActorCritic` + slow critic (module docstring)."""

    regimes = ("online",)
    observation = "pixels"
    action = "discrete"
    recurrent = True
    decodes_frames = True
    state_attributes = ("updates",)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: str | torch.device = "cpu",
        *,
        # world model (paper settings = the released config)
        encoder_channels: Sequence[int] = (32, 64, 128, 256),
        encoder_attention: str = "none",
        encoder_attention_stage: int = 1,
        encoder_slide_form: str = "ours",
        latent_vars: int = 32,
        latent_classes: int = 32,
        unimix: float = 0.01,
        transformer: Mapping[str, Any] | None = None,
        head_hidden: int = 512,
        head_layers: int = 2,
        reward_bins: int = 255,
        reward_low: float = -20.0,
        reward_high: float = 20.0,
        loss_weights: Mapping[str, float] | None = None,
        free_bits: float = 1.0,
        wm_lr: float = 1e-4,
        wm_eps: float = 1e-8,
        wm_grad_clip: float = 1000.0,
        wm_batch_size: int = 16,
        wm_seq_len: int = 64,
        # agent (paper settings = the released config)
        agent_hidden: int = 512,
        agent_layers: int = 2,
        gamma: float = 0.985,
        lam: float = 0.95,
        entropy_coef: float = 3e-4,
        imagine_batch_size: int = 1024,
        imagine_context: int = 8,
        imagine_horizon: int = 16,
        return_percentiles: Sequence[float] = (0.05, 0.95),
        return_ema_decay: float = 0.99,
        return_scale_floor: float = 1.0,
        slow_critic_decay: float = 0.98,
        ac_lr: float = 3e-5,
        ac_eps: float = 1e-5,
        ac_grad_clip: float = 100.0,
        act_context: int = 16,
        # quirks of the released code and system settings
        act_on_posterior: bool = False,
        reset_context_on_episode_end: bool = False,
        cross_episodes: bool = True,
        free_bits_mode: str = "batch_mean",
        lambda_bootstrap: str = "t",
        return_norm_debias: bool = False,
        hard_termination: bool = True,
        life_loss_terminal: bool = True,
        imagine_kv_cache: bool = True,
        precision: str = "auto",
        tf32: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, device)
        obs_shape = self._check_spaces(observation_space, action_space)
        try:
            tcfg = TransformerConfig(**dict(transformer or {}))
        except TypeError as exc:
            raise ConfigError(f"algo.transformer has an unknown key ({exc}); valid keys are the fields of "
                              "rlkit.nets.transformer.TransformerConfig") from None
        self.wm_cfg = WorldModelConfig(
            obs_shape=obs_shape, action_dim=int(action_space.n), encoder_channels=tuple(encoder_channels),
            latent_vars=latent_vars, latent_classes=latent_classes, unimix=unimix, head_hidden=head_hidden,
            head_layers=head_layers, reward_bins=reward_bins, reward_low=reward_low, reward_high=reward_high,
            transformer=tcfg, encoder_attention=encoder_attention, encoder_attention_stage=encoder_attention_stage,
            encoder_slide_form=encoder_slide_form,
        )
        self._check_lengths(tcfg.max_len, wm_seq_len, imagine_context + imagine_horizon, act_context)
        if free_bits_mode not in FREE_BITS_MODES:
            raise ConfigError(f"algo.free_bits_mode={free_bits_mode!r}; use one of {FREE_BITS_MODES}")
        if lambda_bootstrap not in BOOTSTRAP_MODES:
            raise ConfigError(f"algo.lambda_bootstrap={lambda_bootstrap!r}; use one of {BOOTSTRAP_MODES}")
        if precision not in PRECISIONS:
            raise ConfigError(f"algo.precision={precision!r}; use one of {PRECISIONS}")
        weights = {**DEFAULT_LOSS_WEIGHTS, **dict(loss_weights or {})}
        if set(weights) != set(DEFAULT_LOSS_WEIGHTS):
            raise ConfigError(f"algo.loss_weights has unknown terms {sorted(set(weights) - set(DEFAULT_LOSS_WEIGHTS))};"
                              f" the terms are {sorted(DEFAULT_LOSS_WEIGHTS)}")

        self.world_model = WorldModel(self.wm_cfg).to(self.device)
        self.actor_critic = ActorCritic(self.wm_cfg.state_dim, self.wm_cfg.action_dim, agent_hidden,
                                        agent_layers, reward_bins).to(self.device)
        self.slow_critic = copy.deepcopy(self.actor_critic.critic).requires_grad_(False)
        self.value_two_hot = TwoHotSymlog(reward_bins, reward_low, reward_high).to(self.device)
        self.wm_opt = adam(self.world_model.parameters(), wm_lr, eps=wm_eps)
        self.ac_opt = adam(self.actor_critic.parameters(), ac_lr, eps=ac_eps)
        low_p, high_p = return_percentiles
        self.return_norm = ReturnNormalizer(return_ema_decay, low_p, high_p, return_scale_floor,
                                            return_norm_debias)
        self.return_ema = torch.zeros(3, device=self.device)  # [EMA low, EMA high, updates]
        self.updates = 0

        self.loss_weights = weights
        self.free_bits, self.free_bits_mode = float(free_bits), free_bits_mode
        self.wm_grad_clip, self.ac_grad_clip = float(wm_grad_clip), float(ac_grad_clip)
        self.wm_batch_size, self.wm_seq_len = int(wm_batch_size), int(wm_seq_len)
        self.gamma, self.lam, self.entropy_coef = float(gamma), float(lam), float(entropy_coef)
        self.imagine_batch_size = int(imagine_batch_size)
        self.imagine_context, self.imagine_horizon = int(imagine_context), int(imagine_horizon)
        self.slow_critic_decay = float(slow_critic_decay)
        self.act_context = int(act_context)
        self.act_on_posterior = bool(act_on_posterior)
        self.reset_context_on_episode_end = bool(reset_context_on_episode_end)
        self.cross_episodes = bool(cross_episodes)
        self.lambda_bootstrap = lambda_bootstrap
        self.hard_termination = bool(hard_termination)
        self.life_loss_terminal = bool(life_loss_terminal)
        self.imagine_kv_cache = bool(imagine_kv_cache)
        self.use_bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        if tf32 and self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    # ------------------------------------------------------------------ construction checks
    @staticmethod
    def _check_spaces(observation_space: gym.Space, action_space: gym.Space) -> tuple[int, int, int]:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(f"STORM needs a discrete action space, got {action_space}; use an Atari "
                              "(atari100k-<game>) or another discrete-action pixel env")
        shape = tuple(observation_space.shape or ())
        if (not isinstance(observation_space, gym.spaces.Box) or observation_space.dtype != np.uint8
                or len(shape) != 3 or shape[-1] not in (1, 3, 4)):
            raise ConfigError(f"STORM needs uint8 image observations (H, W, C), got {observation_space}; "
                              "use atari100k-<game> (64x64x3) or a pixel env")
        return shape  # type: ignore[return-value]

    @staticmethod
    def _check_lengths(max_len: int, wm_seq_len: int, imagined: int, act_context: int) -> None:
        for name, value in (("wm_seq_len", wm_seq_len), ("imagine_context + imagine_horizon", imagined),
                            ("act_context", act_context)):
            if not 1 <= value <= max_len:
                raise ConfigError(f"algo.{name}={value} must lie in [1, algo.transformer.max_len={max_len}]; "
                                  "raise max_len or shorten it")

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    # ------------------------------------------------------------------ replay hooks (online regime)
    def replay_spec(self, seed: int) -> ReplaySpec:
        """Columns (o_t, a_t, r_t, terminated_t, truncated_t, life_loss_t), no next_obs (sequences imply it),
        and two uniform-start window samplers: ``wm`` (world-model batches) and ``ctx`` (imagination
        contexts)."""
        columns = {
            "obs": (tuple(self.observation_space.shape), np.uint8),
            "action": ((), np.int64),
            "reward": ((), np.float32),
            "terminated": ((), np.float32),
            "truncated": ((), np.float32),
            "life_loss": ((), np.float32),
        }
        samplers = {
            "wm": SequenceSampler(self.wm_seq_len, cross_episodes=self.cross_episodes,
                                  seed=derive_seed(seed, "storm world-model windows")),
            "ctx": SequenceSampler(self.imagine_context, cross_episodes=self.cross_episodes,
                                   seed=derive_seed(seed, "storm imagination contexts")),
        }
        return ReplaySpec(columns=columns, extra_samplers=samplers)

    def sample_batch(self, buffer, batch_size: int) -> dict[str, Any]:
        """One world-model batch and one imagination-context batch (``train.batch_size`` is not used)."""
        wm_keys = ["obs", "action", "reward", "terminated"]
        if "life_loss" in buffer.storage.columns:
            wm_keys.append("life_loss")
        return {
            "wm": buffer.sample(self.wm_batch_size, sampler="wm", keys=wm_keys),
            "ctx": buffer.sample(self.imagine_batch_size, sampler="ctx", keys=["obs", "action"]),
        }

    # ------------------------------------------------------------------ learning
    def update(self, batch: Mapping[str, Any]) -> UpdateResult:
        """One world-model update on ``batch["wm"]``, then one agent update from ``batch["ctx"]``."""
        metrics = self.update_world_model(batch["wm"])
        metrics.update(self.update_agent(batch["ctx"]))
        self.updates += 1
        return UpdateResult(metrics)

    def world_model_losses(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """World-model loss terms (STORM's released code) on [B, T] sequences (world model in its current mode)."""
        wm, w = self.world_model, self.loss_weights
        obs, action = batch["obs"], batch["action"].long()
        dtype = wm.posterior_head.weight.dtype  # float32 (float64 for a float64 model)
        done = batch["terminated"].to(dtype)
        if self.life_loss_terminal and "life_loss" in batch:
            done = torch.maximum(done, batch["life_loss"].to(dtype))
        with self._autocast():
            post = wm.posterior_logits(obs)                         # [B, T, K, C]
            z = wm.sample(post)                                     # [B, T, K*C]
            obs_hat = wm.decode(z)                                  # [B, T, C, H, W]
            h = wm.sequence(z, action)                              # [B, T, d]
            prior = wm.prior_logits(h)
            target = obs.permute(0, 1, 4, 2, 3).to(dtype).div_(255.0)
            rec = reconstruction_loss(obs_hat, target)
            rew = wm.two_hot.loss(wm.reward_logits(h), batch["reward"]).mean()
            term = F.binary_cross_entropy_with_logits(full_precision(wm.termination_logit(h)), done)
            dyn, rep, kl = kl_balance(post, prior, self.free_bits, self.free_bits_mode)
        total = (w["reconstruction"] * rec + w["reward"] * rew + w["termination"] * term
                 + w["dynamics"] * dyn + w["representation"] * rep)
        return {"loss": total, "reconstruction": rec, "reward": rew, "termination": term, "dynamics": dyn,
                "representation": rep, "kl": kl}

    def update_world_model(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One Adam step on the world-model loss (train mode: dropout and BatchNorm batch statistics)."""
        self.world_model.train()
        losses = self.world_model_losses(batch)
        self.wm_opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.world_model.parameters(), self.wm_grad_clip)
        self.wm_opt.step()
        out = {f"wm/{k}": v.detach() for k, v in losses.items()}
        out["wm/grad_norm"] = grad_norm.detach()
        return out

    @torch.no_grad()
    def imagine(self, obs: Tensor, action: Tensor, horizon: int | None = None,
                use_cache: bool | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Roll out the policy in the world model from replayed contexts (STORM's released code).

        ``obs`` uint8 [B, C, H, W, ch] and ``action`` [B, C] are the context. Returns states s_0..s_L
        [B, L+1, K*C + d], actions [B, L], rewards [B, L] and continuation flags 1 - d [B, L] (float32).
        """
        wm, actor = self.world_model, self.actor_critic.actor
        horizon = self.imagine_horizon if horizon is None else int(horizon)
        use_cache = self.imagine_kv_cache if use_cache is None else use_cache
        if wm.training:
            wm.eval()
        action = action.long()
        B, C = action.shape
        dtype = wm.posterior_head.weight.dtype  # float32 (float64 for a float64 model)
        states = torch.empty(B, horizon + 1, self.wm_cfg.state_dim, device=obs.device, dtype=dtype)
        actions = torch.empty(B, horizon, dtype=torch.long, device=obs.device)
        rewards = torch.empty(B, horizon, device=obs.device, dtype=dtype)
        continues = torch.empty(B, horizon, device=obs.device, dtype=dtype)
        with self._autocast():
            z_ctx = wm.sample(wm.posterior_logits(obs))
            if use_cache:
                h_ctx, cache = wm.prefill(z_ctx, action, capacity=C + horizon)
            else:
                history = wm.tokens(z_ctx, action)
                h_ctx = wm.transformer(history)
            h = full_precision(h_ctx[:, -1])
            z = wm.sample(wm.prior_logits(h))
            for i in range(horizon):
                s = torch.cat([z, h], dim=-1)
                states[:, i] = s
                a = sample_categorical(actor(s))
                actions[:, i] = a
                if use_cache:
                    h, cache = wm.step(z, a, cache)
                else:
                    history = torch.cat([history, wm.tokens(z, a)[:, None]], dim=1)
                    h = wm.transformer(history)[:, -1]
                h = full_precision(h)
                rewards[:, i] = wm.reward(h)
                logit = full_precision(wm.termination_logit(h))
                continues[:, i] = (logit <= 0).float() if self.hard_termination else torch.sigmoid(-logit)
                z = wm.sample(wm.prior_logits(h))
            states[:, horizon] = torch.cat([z, h], dim=-1)
        return states, actions, rewards, continues

    def agent_losses(self, states: Tensor, actions: Tensor, rewards: Tensor,
                     continues: Tensor) -> dict[str, Tensor]:
        """Actor-critic losses (STORM's released code) on an imagined batch (updates the return-scale EMAs)."""
        ac = self.actor_critic
        with self._autocast():
            logits = full_precision(ac.actor(states[:, :-1]))
            critic_logits = full_precision(ac.critic(states))
            with torch.no_grad():
                slow_logits = full_precision(self.slow_critic(states))
        log_probs = F.log_softmax(logits, dim=-1)
        log_prob = log_probs.gather(-1, actions[..., None])[..., 0]
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        with torch.no_grad():
            value = self.value_two_hot.decode(critic_logits)
            slow_value = self.value_two_hot.decode(slow_logits)
            returns = lambda_returns(rewards, value, continues, self.gamma, self.lam, self.lambda_bootstrap)
            slow_returns = lambda_returns(rewards, slow_value, continues, self.gamma, self.lam,
                                          self.lambda_bootstrap)
            scale = self.return_norm.update(returns, self.return_ema)
            advantage = (returns - value[:, :-1]) / scale
        policy = -(log_prob * advantage).mean()
        value_loss = self.value_two_hot.loss(critic_logits[:, :-1], returns).mean()
        slow_reg = self.value_two_hot.loss(critic_logits[:, :-1], slow_returns).mean()
        entropy_mean = entropy.mean()
        total = policy + value_loss + slow_reg - self.entropy_coef * entropy_mean
        return {"loss": total, "policy": policy, "value": value_loss, "slow_value_reg": slow_reg,
                "entropy": entropy_mean, "return_scale": scale, "return_mean": returns.mean(),
                "value_mean": value.mean(), "imagined_reward": rewards.mean(),
                "imagined_continue": continues.mean()}

    def update_agent(self, ctx: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Imagine from the context batch, then one Adam step on the actor-critic; slow-critic EMA."""
        states, actions, rewards, continues = self.imagine(ctx["obs"], ctx["action"])
        losses = self.agent_losses(states, actions, rewards, continues)
        self.ac_opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.actor_critic.parameters(), self.ac_grad_clip)
        self.ac_opt.step()
        polyak_update(self.actor_critic.critic, self.slow_critic, 1.0 - self.slow_critic_decay)
        out = {f"agent/{k}": v.detach() for k, v in losses.items()}
        out["agent/grad_norm"] = grad_norm.detach()
        return out

    @torch.no_grad()
    def dream(self, obs: np.ndarray, action: np.ndarray, context: int, seed: int = 0) -> Dream:
        """``rlkit dream``: reconstruct the context o_0..o_{c-1} (decoded posterior samples z_t ~ q(z_t | o_t)),
        then roll the world model open-loop under the logged actions as imagination does (:meth:`imagine`, with
        a_t logged instead of sampled from the policy): z_t ~ p(. | h_{t-1}), decoded; h_t = step(z_t, a_t).
        Reward r_t and termination d_t are predicted from h_t (for t < c from the context pass). Latent samples
        use a torch stream seeded with ``seed`` (the global stream is left untouched)."""
        wm = self.world_model
        T = len(action)
        max_len = self.wm_cfg.transformer.max_len
        if not 1 <= context <= T <= max_len:
            raise ConfigError(f"a dream needs 1 <= context ({context}) <= context + horizon ({T}) <= "
                              f"algo.transformer.max_len ({max_len}); shorten --context/--horizon")
        wm.eval()
        o = torch.as_tensor(np.asarray(obs), device=self.device)[None]
        a = torch.as_tensor(np.asarray(action), device=self.device).long()[None]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._autocast():
            torch.manual_seed(seed)
            z = wm.sample(wm.posterior_logits(o[:, :context]))
            frames = [wm.decode(z)[0].float()]
            h_ctx, cache = wm.prefill(z, a[:, :context], capacity=T)
            hs = [h_ctx[0].float()]
            h = h_ctx[:, -1]
            for t in range(context, T):
                z = wm.sample(wm.prior_logits(h.float()))
                frames.append(wm.decode(z).float())
                h, cache = wm.step(z, a[:, t], cache)
                hs.append(h.float())
            h_all = torch.cat(hs)
            reward = wm.reward(h_all).float()
            termination = torch.sigmoid(wm.termination_logit(h_all).float())
        pixels = torch.cat(frames).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
        return Dream(frames=pixels.cpu().numpy(), reward=reward.cpu().numpy(),
                     termination=termination.cpu().numpy())

    # ------------------------------------------------------------------ acting
    def initial_state(self, n: int) -> dict[str, Tensor]:
        """An empty acting context for ``n`` envs: right-aligned obs/action windows and their lengths."""
        L = self.act_context
        return {
            "obs": torch.zeros(n, L, *self.wm_cfg.obs_shape, dtype=torch.uint8, device=self.device),
            "action": torch.zeros(n, L, dtype=torch.long, device=self.device),
            "length": torch.zeros(n, dtype=torch.long, device=self.device),
        }

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: dict[str, Tensor] | None = None,
            deterministic: bool = False) -> tuple[np.ndarray, dict[str, Tensor]]:
        """STORM's acting rule (released training loop): a ~ pi([z ~ p(. | h_last), h_last]) from the context,
        random while it is empty; the current frame and the action then join the context (oldest pair dropped
        beyond ``act_context``)."""
        wm, actor = self.world_model, self.actor_critic.actor
        frames = torch.as_tensor(np.asarray(obs), device=self.device)
        n = frames.shape[0]
        if state is None:
            state = self.initial_state(n)
        if wm.training:
            wm.eval()
        L = self.act_context
        actions = torch.empty(n, dtype=torch.long, device=self.device)
        lengths = state["length"].tolist()
        for length in sorted(set(lengths)):
            rows = torch.tensor([i for i, x in enumerate(lengths) if x == length], device=self.device)
            if length == 0:
                actions[rows] = torch.randint(self.wm_cfg.action_dim, (len(rows),), device=self.device)
                continue
            with self._autocast():
                z_ctx = wm.sample(wm.posterior_logits(state["obs"][rows, L - length:]))
                h = full_precision(wm.sequence(z_ctx, state["action"][rows, L - length:])[:, -1])
                if self.act_on_posterior:
                    z = wm.sample(wm.posterior_logits(frames[rows]))
                else:
                    z = wm.sample(wm.prior_logits(h))
                logits = full_precision(actor(torch.cat([z, h], dim=-1)))
            actions[rows] = logits.argmax(-1) if deterministic else sample_categorical(logits)
        new_state = {
            "obs": torch.cat([state["obs"][:, 1:], frames[:, None]], dim=1),
            "action": torch.cat([state["action"][:, 1:], actions[:, None]], dim=1),
            "length": (state["length"] + 1).clamp(max=L),
        }
        return actions.cpu().numpy(), new_state

    def reset_state(self, state: dict[str, Tensor] | None, done_mask: np.ndarray) -> dict[str, Tensor] | None:
        """Episode ends keep the context (a quirk of STORM's released code) unless ``reset_context_on_episode_end``."""
        if state is None or not self.reset_context_on_episode_end:
            return state
        done = torch.as_tensor(np.asarray(done_mask, dtype=bool), device=self.device)
        return {**state, "length": torch.where(done, torch.zeros_like(state["length"]), state["length"])}
