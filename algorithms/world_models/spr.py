"""SPR: Self-Predictive Representations (Schwarzer et al., ICLR 2021, arXiv 2007.05929) -- data-efficient
Rainbow with a K-step latent prediction loss, on the Atari 100k SPR protocol. Defaults are the released
code's (mila-iqia/spr, MIT) as listed in the paper's App. D.

Networks: Nature-CNN encoder ``f`` with per-sample min-max renormalisation (``z = f(aug(o))``, 64x7x7), a C51
dueling noisy Q head ``Q(z, .)`` (51 atoms on [-10, 10], hidden 256, sigma0 0.5), SPR's convolutional
transition model ``z_{k+1} = T(z_k, a_{t+k})`` (renormalised), projection ``g`` = the Q head's first
advantage layer (the code's ``q_l1``), predictor ``q`` = Linear(256, 256). Target copies (encoder, head)
follow the online ones with ``target_tau`` after every update (1.0: the online weights, stop-gradient, as
SPR's ``target_update_tau = momentum_tau = 1``).

Loss of one update on a PER batch of n-step transitions (t, a_t, R_t, Gamma_t, o_{t+n}) and the K-step
window ``o_{t..t+K}, a_{t..t+K-1}`` with terminal mask ``m_k`` (1 while no episode end lies in t..t+k-1)::

    L_RL  = -sum_j Phi(R_t + Gamma_t z_j)[Q_target(o_{t+n}, a*)]_j log p_j(Q(z_t, a_t)),   a* = argmax_a Q(o_{t+n}, a)
    L_SPR = (1/(K+1)) sum_{k=0..K} m_k (2 - 2 cos(q(g(z_hat_{t+k})), g_target(f_target(aug(o_{t+k})))))
    L     = mean_i [w_i L_RL,i] + lambda mean_i L_SPR,i           (lambda = 5, w_i PER weights)

(C51 projection Phi, Bellemare et al. 2017; double DQN action selection; z_hat_t = z_t and
z_hat_{t+k} = T^k(z_t, a_t..a_{t+k-1})). Priorities are ``L_RL`` per row. Adam 1e-4 (eps 1.5e-4), grad-norm
clip 10; 2 updates per env step after 2000 random steps; augmentation (random shift pad 4 + intensity 0.05)
on online and target inputs. Acting: noisy-net exploration (train mode, new noise every step); evaluation
(``deterministic=True``): mean weights, epsilon-greedy with epsilon 0.001.

Choices not fixed by the paper, as switches: ``spr_time_reduce`` (``mean`` over the K+1 terms, or ``sum``);
``train_epsilon`` (0.0: SPR anneals epsilon from 1 to 0 over its first 2001 steps, which coincide with the
2000 random warm-up steps rlkit runs before acting); ``transition`` (``conv``: SPR's; ``transformer``: a causal
transformer from ``TransformerConfig(**transformer)``, :class:`~rlkit.nets.latent.TransformerTransition`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.algorithm import Algorithm, ReplaySpec, UpdateResult
from rlkit.errors import ConfigError
from rlkit.nets import Augment, C51Head, NatureEncoder, categorical_projection, make_transition, polyak_update
from rlkit.optim import adam
from rlkit.replay import window_rows
from rlkit.utils import derive_seed

TIME_REDUCTIONS = ("mean", "sum")


class QNetwork(nn.Module):
    """Encoder + C51 head: ``uint8/float obs [B, C, H, W]`` (already augmented, in [0, 1]) -> latent, logits."""

    def __init__(self, obs_shape: Sequence[int], action_dim: int, channels: Sequence[int], renorm: bool,
                 atoms: int, v_min: float, v_max: float, hidden: int, dueling: bool, noisy: bool,
                 sigma0: float) -> None:
        super().__init__()
        self.encoder = NatureEncoder(obs_shape[0], channels, renorm=renorm)
        self.latent_shape = self.encoder.output_shape(obs_shape)
        flat = int(np.prod(self.latent_shape))
        self.head = C51Head(flat, action_dim, atoms, v_min, v_max, hidden, dueling, noisy, sigma0)

    def logits(self, z: Tensor) -> Tensor:
        """Latent ``[..., C, h, w]`` -> Q logits ``[..., A, atoms]``."""
        lead = z.shape[:-3]
        out = self.head(z.reshape(-1, int(np.prod(z.shape[-3:]))))
        return out.view(*lead, *out.shape[1:])

    def project(self, z: Tensor) -> Tensor:
        """SPR's projection ``g``: the head's first advantage layer on the flattened latent."""
        return self.head.first_layer(z.flatten(-3))


def _check_discrete_pixels(name: str, observation_space: gym.Space, action_space: gym.Space) -> tuple[int, ...]:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(f"{name} needs discrete actions, got {action_space}; use atari100k-<game> (its "
                          "continuous-action counterpart is algo=vcr on dmc-<domain>_<task>)")
    shape = tuple(observation_space.shape or ())
    if not (isinstance(observation_space, gym.spaces.Box) and observation_space.dtype == np.uint8 and len(shape) == 3):
        raise ConfigError(f"{name} needs stacked uint8 frames (C, H, W), got {observation_space}; use "
                          "atari100k-<game> with env.kwargs.protocol=spr")
    return shape


class SPR(Algorithm):
    """SPR agent (module docstring)."""

    regimes = ("online",)
    observation = "pixels"
    action = "discrete"
    provides_priorities = True
    state_attributes = ("updates",)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: str | torch.device = "cpu",
        *,
        channels: Sequence[int] = (32, 64, 64),
        renormalize: bool = True,
        atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        hidden: int = 256,
        dueling: bool = True,
        noisy: bool = True,
        noisy_sigma0: float = 0.5,
        double_dqn: bool = True,
        nstep: int = 10,
        gamma: float = 0.99,
        batch_size: int = 32,
        lr: float = 1e-4,
        adam_eps: float = 1.5e-4,
        grad_clip: float = 10.0,
        target_tau: float = 1.0,
        prediction_depth: int = 5,
        spr_weight: float = 5.0,
        spr_time_reduce: str = "mean",
        transition_hidden: int = 64,
        transition: str = "conv",
        transformer: Mapping[str, Any] | None = None,
        predictor: bool = True,
        augmentation: Sequence[str] = ("shift", "intensity"),
        shift_pad: int = 4,
        intensity_scale: float = 0.05,
        augment_target: bool = True,
        train_epsilon: float = 0.0,
        eval_epsilon: float = 0.001,
        seed: int = 0,
    ) -> None:
        super().__init__(observation_space, action_space, device)
        obs_shape = _check_discrete_pixels(type(self).__name__, observation_space, action_space)
        if spr_time_reduce not in TIME_REDUCTIONS:
            raise ConfigError(f"algo.spr_time_reduce={spr_time_reduce!r}; use one of {TIME_REDUCTIONS}")
        if int(prediction_depth) < 0:
            raise ConfigError(f"algo.prediction_depth must be >= 0, got {prediction_depth}")
        n_actions = int(action_space.n)
        self.q_net = QNetwork(obs_shape, n_actions, channels, renormalize, atoms, v_min, v_max, hidden, dueling,
                              noisy, noisy_sigma0).to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.transition = make_transition(transition, self.q_net.latent_shape, n_actions, discrete=True,
                                          horizon=int(prediction_depth), hidden=transition_hidden,
                                          renorm=renormalize, transformer=transformer).to(self.device)
        self.predictor = (nn.Linear(hidden, hidden) if predictor else nn.Identity()).to(self.device)
        params = [*self.q_net.parameters(), *self.transition.parameters(), *self.predictor.parameters()]
        self.optimizer = adam(params, lr, eps=adam_eps)
        self.augment = Augment(tuple(augmentation), shift_pad, intensity_scale,
                               seed=derive_seed(seed, "spr augmentation"))
        self.noise = torch.Generator().manual_seed(derive_seed(seed, "noisy nets"))
        self.act_rng = np.random.default_rng(derive_seed(seed, "epsilon greedy"))
        self.n_actions = n_actions
        self.double_dqn, self.nstep, self.gamma = bool(double_dqn), int(nstep), float(gamma)
        self.batch_size, self.grad_clip, self.target_tau = int(batch_size), float(grad_clip), float(target_tau)
        self.K, self.spr_weight, self.spr_time_reduce = int(prediction_depth), float(spr_weight), spr_time_reduce
        self.augment_target = bool(augment_target)
        self.train_epsilon, self.eval_epsilon = float(train_epsilon), float(eval_epsilon)
        self.updates = 0

    # ------------------------------------------------------------------ persistence (augmentation RNG)
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rng"] = {"augment": self.augment.state_dict(), "noise": self.noise.get_state(),
                        "act": self.act_rng.bit_generator.state}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rng = state.get("rng")
        super().load_state_dict({k: v for k, v in state.items() if k != "rng"})
        if rng is not None:
            self.augment.load_state_dict(rng["augment"])
            self.noise.set_state(rng["noise"])
            self.act_rng.bit_generator.state = rng["act"]

    # ------------------------------------------------------------------ replay
    def replay_spec(self, seed: int) -> ReplaySpec:
        """Standard transitions, n-step returns (``nstep``, ``gamma``) on the main (PER) sampler."""
        return ReplaySpec(nstep=self.nstep, gamma=self.gamma)

    def sample_batch(self, buffer, batch_size: int):
        """``batch_size`` (algo's own, SPR's 32) n-step rows plus each row's K-step window: ``window_obs``
        ``[B, K+1, ...]`` (o_t..o_{t+K}), ``window_action`` ``[B, K]`` and ``window_valid`` ``[B, K+1]``."""
        batch = buffer.sample(self.batch_size)
        starts = batch["indices"].cpu().numpy()
        rows, valid = window_rows(buffer.storage, starts, self.K + 1)
        batch["window_obs"] = buffer.gather(rows, ["obs"])["obs"]
        batch["window_action"] = buffer.gather(rows[:, :self.K], ["action"])["action"]
        batch["window_valid"] = torch.as_tensor(valid, dtype=torch.float32, device=batch["obs"].device)
        return batch

    # ------------------------------------------------------------------ pieces
    def _pixels(self, obs: Tensor, augment: bool = True) -> Tensor:
        x = obs.float().div(255.0)
        return self.augment(x) if augment else x

    def _reset_noise(self) -> None:
        self.q_net.head.reset_noise(self.noise)
        self.target_net.head.reset_noise(self.noise)

    def rl_loss(self, logits: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Per-row C51 cross-entropy against the projected n-step double-DQN target (module docstring)."""
        action = batch["action"].long()
        log_p = F.log_softmax(logits.float()[torch.arange(len(action)), action], dim=-1)
        with torch.no_grad():
            next_x = self._pixels(batch["next_obs"], self.augment_target)
            target_logits = self.target_net.logits(self.target_net.encoder(next_x))
            if self.double_dqn:
                select = self.q_net.head.expected(self.q_net.logits(self.q_net.encoder(next_x)))
            else:
                select = self.target_net.head.expected(target_logits)
            best = select.argmax(-1)
            probs = self.target_net.head.distribution(target_logits[torch.arange(len(best)), best])
            target = categorical_projection(probs, batch["reward"].float(), batch["discount"].float(),
                                            self.q_net.head.support)
        return -(target * log_p).sum(-1)

    def target_latents(self, window_obs: Tensor) -> Tensor:
        """``f_target(aug(o_{t+k}))`` for the window ``[B, K+1, C, H, W]`` (no gradient)."""
        with torch.no_grad():
            x = self._pixels(window_obs, self.augment_target)
            return self.target_net.encoder(x.flatten(0, 1)).view(*x.shape[:2], *self.q_net.latent_shape)

    def spr_loss(self, latents: Tensor, target_latents: Tensor, valid: Tensor) -> Tensor:
        """Per-row ``sum or mean_k m_k (2 - 2 cos(q(g(z_hat_k)), g_target(z_bar_k)))`` over k = 0..K."""
        pred = self.predictor(self.q_net.project(latents))
        with torch.no_grad():
            target = self.target_net.project(target_latents)
        loss = 2.0 - 2.0 * F.cosine_similarity(pred.float(), target.float(), dim=-1, eps=1e-6)
        loss = loss * valid
        return loss.sum(1) if self.spr_time_reduce == "sum" else loss.mean(1)

    def auxiliary_losses(self, latents: Tensor, target_latents: Tensor, batch: Mapping[str, Tensor]
                         ) -> dict[str, Tensor]:
        """Per-row auxiliary losses ``{name: (weight, [B] loss)}`` (SPR: the latent prediction loss)."""
        return {"spr": (self.spr_weight, self.spr_loss(latents, target_latents, batch["window_valid"]))}

    # ------------------------------------------------------------------ learning
    def update(self, batch: Mapping[str, Tensor]) -> UpdateResult:
        self.q_net.train()
        self.transition.train()
        self._reset_noise()
        z = self.q_net.encoder(self._pixels(batch["window_obs"][:, 0]))  # online latent of aug(o_t)
        logits = self.q_net.logits(z)
        rl = self.rl_loss(logits, batch)
        latents = self.transition.rollout(z, batch["window_action"].long())  # [B, K+1, c, h, w]
        target_latents = self.target_latents(batch["window_obs"])
        aux = self.auxiliary_losses(latents, target_latents, batch)
        weights = batch["weights"].float()
        total = (weights * rl).mean()
        for weight, value in aux.values():
            total = total + weight * value.mean()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.optimizer.step()
        polyak_update(self.q_net, self.target_net, self.target_tau)
        self.updates += 1
        metrics: dict[str, Tensor | float] = {
            "train/loss": total.detach(), "train/rl_loss": rl.detach().mean(), "train/grad_norm": grad_norm.detach(),
            "train/q_mean": self.q_net.head.expected(logits.detach()).mean(),
        }
        for name, (_, value) in aux.items():
            metrics[f"train/{name}_loss"] = value.detach().mean()
        return UpdateResult(metrics, rl.detach() if self.priority_feedback else None)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """Greedy in the expected Q; training: noisy weights (new noise) and ``train_epsilon``; evaluation:
        mean weights and ``eval_epsilon`` (SPR's 0.001)."""
        net = self.q_net
        if deterministic:
            net.eval()
        else:
            net.train()
            net.head.reset_noise(self.noise)
        x = torch.as_tensor(np.asarray(obs), device=self.device).float().div(255.0)
        greedy = net.head.expected(net.logits(net.encoder(x))).argmax(-1).cpu().numpy()
        eps = self.eval_epsilon if deterministic else self.train_epsilon
        explore = self.act_rng.random(len(greedy)) < eps
        random_actions = self.act_rng.integers(0, self.n_actions, len(greedy))
        net.train()
        return np.where(explore, random_actions, greedy), state
