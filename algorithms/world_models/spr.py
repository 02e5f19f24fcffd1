"""SPR: Self-Predictive Representations (Schwarzer et al., ICLR 2021, arXiv 2007.05929) -- data-efficient
Rainbow with a K-step latent prediction loss, on the Atari 100k SPR protocol. Defaults are the released
code's (mila-iqia/spr, MIT) as listed in the paper's App. D.

Networks: Nature-CNN encoder ``f`` with per-sample min-max renormalisation (``z = f(aug(o))``, 64x7x7), a C51
dueling noisy Q head ``Q(z, .)`` (51 atoms on [-10, 10], hidden 256, sigma0 0.5; the gradient it sends back
into ``z`` is scaled by 1/sqrt(2)), SPR's convolutional transition model ``z_{k+1} = T(z_k, a_{t+k})``
(renormalised), projection ``g`` = the Q head's value and advantage first layers concatenated (512 wide), with
mean weights and no ReLU (the code's ``q_l1`` classifier, ``q_l1_type = [value, advantage]``), predictor
``q`` = Linear(512, 512). Target copies (encoder, head) follow the online ones with ``target_tau`` after every
update (1.0: the online weights, stop-gradient, as SPR's ``target_update_tau = momentum_tau = 1``).

Loss of one update on a PER batch of n-step transitions (t, a_t, R_t, Gamma_t, o_{t+n}) and the K-step
window ``o_{t..t+K}, a_{t..t+K-1}`` with mask ``m_k`` (1 while no episode ends at t..t+k: the released code
also drops the episode's last frame, ``1 - sign(cumsum(done))`` in ``src/algos.py``)::

    L_RL  = -sum_j Phi(R_t + Gamma_t z_j)[Q_target(o_{t+n}, a*)]_j log p_j(Q(z_t, a_t)),   a* = argmax_a Q(o_{t+n}, a)
    l_k   = m_k || n(q(g(z_hat_{t+k}))) - n(g_target(f_target(aug(o_{t+k})))) ||^2,  n(x) = x / max(|x|, 1e-3)
    L_SPR = (1/K) sum_{k=1..K} l_k                     (k = 0 has weight ``spr_t0_weight`` = 0)
    L     = mean_i [w_i (L_RL,i + lambda L_SPR,i + lambda_0 l_0,i)]      (lambda = 5, w_i PER weights)

(``l_k = 2 - 2 cos`` away from zero norms; C51 projection Phi, Bellemare et al. 2017; double DQN action
selection on its own augmentation of o_{t+n}; z_hat_t = z_t and z_hat_{t+k} = T^k(z_t, a_t..a_{t+k-1})).
This is mila-iqia/spr's ``src/algos.py`` ``SPRCategoricalDQN.loss`` with its ``scripts/run.py`` defaults
(``t0_spr_loss_weight = 0``, ``model_spr_weight = 5``). Priorities: ``KL(Phi(.) || p)`` per row with the
target clamped to [1e-6, 1] and the KL to [1e-6, 1e6] (the code's ``dist_rl_loss``); PER weights normalised by
the batch maximum (``sampler.params.weight_norm=batch_max``). Adam 1e-4 (eps 1.5e-4); gradient-norm clip 10
on encoder + Q head and, separately, on the transition model, none on the predictor (the code's
``optimize_agent``); 2 updates per env step after 2000 random steps; augmentation (random shift pad 4 +
intensity 0.05) on online and target inputs. Acting: noisy-net exploration (train mode, new noise every
step); evaluation (``deterministic=True``): mean weights, epsilon-greedy with epsilon 0.001.

Choices not fixed by the paper, as switches: ``spr_time_reduce`` (``mean`` over k = 1..K, the code's, or
``sum``); ``train_epsilon`` (0.0: SPR anneals epsilon from 1 to 0 over its first 2001 steps, which coincide
with the 2000 random warm-up steps rlkit runs before acting); ``spr_target_update``: ``after_step`` (paper,
Algorithm 1: the SPR target follows the online weights after the optimiser step) or ``before_step`` (the
released code: ``do_spr_loss`` updates the momentum encoder inside the loss, before the step, so that its
SPR targets lag the online weights by one update); ``transition`` (``conv``: SPR's; ``transformer``: a causal
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
from rlkit.nets.heads import full_precision
from rlkit.optim import adam
from rlkit.replay import window_rows
from rlkit.utils import derive_seed

TIME_REDUCTIONS = ("mean", "sum")
SPR_TARGET_UPDATES = ("after_step", "before_step")


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
        """SPR's projection ``g`` on the flattened latent (:meth:`C51Head.projection`)."""
        return self.head.projection(z.flatten(-3))


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
        spr_t0_weight: float = 0.0,
        spr_target_update: str = "after_step",
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
        if spr_target_update not in SPR_TARGET_UPDATES:
            raise ConfigError(f"algo.spr_target_update={spr_target_update!r}; use one of {SPR_TARGET_UPDATES}")
        if int(prediction_depth) < 0:
            raise ConfigError(f"algo.prediction_depth must be >= 0, got {prediction_depth}")
        n_actions = int(action_space.n)
        self.q_net = QNetwork(obs_shape, n_actions, channels, renormalize, atoms, v_min, v_max, hidden, dueling,
                              noisy, noisy_sigma0).to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.spr_target_update = spr_target_update
        if spr_target_update == "before_step":  # its own copy, updated before the optimiser step
            self.spr_target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.transition = make_transition(transition, self.q_net.latent_shape, n_actions, discrete=True,
                                          horizon=int(prediction_depth), hidden=transition_hidden,
                                          renorm=renormalize, transformer=transformer).to(self.device)
        width = self.q_net.head.projection_dim
        self.predictor = (nn.Linear(width, width) if predictor else nn.Identity()).to(self.device)
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
        self.spr_t0_weight = float(spr_t0_weight)
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
        ``[B, K+1, ...]`` (o_t..o_{t+K}), ``window_action`` ``[B, K]`` and ``window_valid`` ``[B, K+1]`` (``m_k``: no
        episode end at t..t+k)."""
        batch = buffer.sample(self.batch_size)
        starts = batch["indices"].cpu().numpy()
        rows, valid = window_rows(buffer.storage, starts, self.K + 1, end_inclusive=True)
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

    def _spr_target(self) -> QNetwork:
        return self.spr_target_net if self.spr_target_update == "before_step" else self.target_net

    def rl_loss(self, logits: Tensor, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per-row C51 cross-entropy against the projected n-step double-DQN target, and the per-row priority
        ``KL(target || p)`` (module docstring). The target net and the online selection each see their own
        augmentation of ``o_{t+n}`` (the code's ``agent.target`` and ``agent`` calls augment separately)."""
        action = batch["action"].long()
        log_p = F.log_softmax(full_precision(logits)[torch.arange(len(action)), action], dim=-1)
        with torch.no_grad():
            target_x = self._pixels(batch["next_obs"], self.augment_target)
            target_logits = self.target_net.logits(self.target_net.encoder(target_x))
            if self.double_dqn:
                select_x = self._pixels(batch["next_obs"], self.augment_target)
                select = self.q_net.head.expected(self.q_net.logits(self.q_net.encoder(select_x)))
            else:
                select = self.target_net.head.expected(target_logits)
            best = select.argmax(-1)
            probs = self.target_net.head.distribution(target_logits[torch.arange(len(best)), best])
            target = categorical_projection(probs, batch["reward"].to(probs.dtype), batch["discount"].to(probs.dtype),
                                            self.q_net.head.support)
            clamped = target.clamp(1e-6, 1.0)
            kl = (clamped * (clamped.log() - log_p)).sum(-1).clamp(1e-6, 1e6)
        return -(target * log_p).sum(-1), kl

    def target_latents(self, window_obs: Tensor) -> Tensor:
        """``f_target(aug(o_{t+k}))`` for the window ``[B, K+1, C, H, W]`` (no gradient)."""
        with torch.no_grad():
            x = self._pixels(window_obs, self.augment_target)
            encoder = self._spr_target().encoder
            return encoder(x.flatten(0, 1)).view(*x.shape[:2], *self.q_net.latent_shape)

    def spr_loss(self, latents: Tensor, target_latents: Tensor, valid: Tensor) -> Tensor:
        """Per-row, per-step ``l_k = m_k ||n(q(g(z_hat_k))) - n(g_target(z_bar_k))||^2``, ``[B, K+1]``, in float32
        (as the released code's ``spr_loss``, which casts the projections with ``.float()``)."""
        pred = F.normalize(self.predictor(self.q_net.project(latents)).float(), dim=-1, eps=1e-3)
        with torch.no_grad():
            target = F.normalize(self._spr_target().project(target_latents).float(), dim=-1, eps=1e-3)
        return (pred - target).pow(2).sum(-1) * valid.float()

    def auxiliary_losses(self, latents: Tensor, target_latents: Tensor, batch: Mapping[str, Tensor]
                         ) -> dict[str, tuple[float, Tensor]]:
        """Per-row auxiliary losses ``{name: (weight, [B] loss)}``: SPR's ``L_SPR`` over k = 1..K (mean or
        sum) and, when ``spr_t0_weight`` is nonzero, its k = 0 term."""
        per_step = self.spr_loss(latents, target_latents, batch["window_valid"])
        later = per_step[:, 1:]
        if later.shape[1] == 0:
            model = per_step.new_zeros(per_step.shape[0])
        else:
            model = later.sum(1) if self.spr_time_reduce == "sum" else later.mean(1)
        out = {"spr": (self.spr_weight, model)}
        if self.spr_t0_weight:
            out["spr_t0"] = (self.spr_t0_weight, per_step[:, 0])
        return out

    # ------------------------------------------------------------------ learning
    def update(self, batch: Mapping[str, Tensor]) -> UpdateResult:
        self.q_net.train()
        self.transition.train()
        self._reset_noise()
        z = self.q_net.encoder(self._pixels(batch["window_obs"][:, 0]))  # online latent of aug(o_t)
        logits = self.q_net.logits(z)
        latents = self.transition.rollout(z, batch["window_action"].long())  # [B, K+1, c, h, w]
        target_latents = self.target_latents(batch["window_obs"])
        rl, priorities = self.rl_loss(logits, batch)
        aux = self.auxiliary_losses(latents, target_latents, batch)
        weights = batch["weights"].to(rl.dtype)
        total = (weights * rl).mean()
        for weight, value in aux.values():
            total = total + weight * (weights * value).mean()
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(list(self.q_net.parameters()), self.grad_clip)
        torch.nn.utils.clip_grad_norm_(list(self.transition.parameters()), self.grad_clip)
        if self.spr_target_update == "before_step":
            polyak_update(self.q_net, self.spr_target_net, self.target_tau)
        self.optimizer.step()
        polyak_update(self.q_net, self.target_net, self.target_tau)
        self.updates += 1
        metrics: dict[str, Tensor | float] = {
            "train/loss": total.detach(), "train/rl_loss": rl.detach().mean(), "train/grad_norm": grad_norm.detach(),
            "train/q_mean": self.q_net.head.expected(logits.detach()).mean(),
        }
        for name, (_, value) in aux.items():
            metrics[f"train/{name}_loss"] = value.detach().mean()
        return UpdateResult(metrics, priorities if self.priority_feedback else None)

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
