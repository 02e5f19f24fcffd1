"""VCR: Value-Consistent Representation Learning (Yue, Kang, Xu, Huang, Yan; AAAI 2023, arXiv 2206.12542).

One ``algo=vcr`` for both action kinds: the class chosen from the env's action space.

* Discrete (:class:`VCRDiscrete`, Atari 100k, SPR protocol): SPR (Schwarzer et al. 2021) whose latent
  prediction loss is replaced (``keep_spr_loss=false``) or joined (``true``) by the value-consistency loss
  between the C51 Q outputs of the K imagined latents ``z_hat_{t+k} = T^k(z_t, a_t..a_{t+k-1})`` (online
  head) and of the real ones ``z_bar_{t+k} = f_target(aug(o_{t+k}))`` (target head, stop-gradient):
  ``L = mean_i w_i [L_RL,i + beta (1/K) sum_{k=1..K} m_k Dist(sg P_bar_{t+k}, P_{t+k})]`` (``w_i`` the PER
  weights, which multiply every per-row loss as in SPR's released code). Everything else -- projection, PER
  weights and priorities, masks, noisy layers, gradient clipping -- is SPR's (:mod:`spr`); with
  ``vcr_weight=0`` and ``keep_spr_loss=true`` an update is SPR's exactly (``bench/fidelity/spr.py``, method
  ``vcr``).
* Continuous (:class:`VCRContinuous`, DMC from pixels): DrQ (Kostrikov et al. 2021) SAC with an MLP
  transition model on the encoder's features; ``P`` is the softmax over ``N`` actions drawn from the current
  policy at the real future state (plus the replayed action), of the online critic at the imagined latent
  and the target critic at the real one.

``Dist``, ``P`` (``vcr_dist``, ``vcr_space``, ``vcr_temperature``: :mod:`vcr_losses`), ``beta``
(``vcr_weight``), ``K`` and whether the loss's gradient reaches the Q head (``detach_q``: false, the head is
trained by it too) are not published as code; each is a switch, defaults listed in ``configs/algo/vcr.yaml``.
Terms whose window crosses an episode end are masked (``m_k = 0``; on the SPR base the episode's last frame
too, as SPR's code). ``transition`` (null: the base's own, SPR's conv model on Atari and the MLP on DMC;
``transformer``: :class:`~rlkit.nets.latent.TransformerTransition` configured by ``transformer``, any
``TransformerConfig`` field) applies to both variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor
from torch.func import functional_call

from rlkit.algorithm import Algorithm
from rlkit.algorithms.world_models.spr import SPR
from rlkit.algorithms.world_models.vcr_losses import action_value_consistency, atom_consistency, check_switches

VCR_KEYS = ("vcr_weight", "vcr_dist", "vcr_space", "vcr_temperature", "keep_spr_loss", "detach_q")


class VCR(Algorithm):
    """``algo=vcr``: builds :class:`VCRDiscrete` on discrete and :class:`VCRContinuous` on continuous
    actions, with the ``discrete`` or ``continuous`` block of the config plus the shared VCR switches."""

    regimes = ("online",)
    observation = "pixels"
    action = "any"
    provides_priorities = True

    def __new__(cls, observation_space: gym.Space | None = None, action_space: gym.Space | None = None,
                *args: Any, **kwargs: Any):
        if cls is VCR:
            if isinstance(action_space, gym.spaces.Discrete):
                return super().__new__(VCRDiscrete)
            from rlkit.algorithms.world_models.vcr_continuous import VCRContinuous

            return super().__new__(VCRContinuous)
        return super().__new__(cls)


def frozen(module: torch.nn.Module, *inputs: Tensor) -> Tensor:
    """``module(*inputs)`` with its parameters detached: gradients reach the inputs only (``detach_q``)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = dict(module.named_buffers())
    return functional_call(module, {**params, **buffers}, inputs)


class VCRDiscrete(SPR, VCR):
    """VCR on SPR (module docstring); ``discrete`` holds SPR's keywords."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, device: str | torch.device = "cpu",
                 *, discrete: Mapping[str, Any] | None = None, continuous: Mapping[str, Any] | None = None,
                 vcr_weight: float = 1.0, vcr_dist: str = "kl", vcr_space: str = "action_softmax",
                 vcr_temperature: float = 1.0, keep_spr_loss: bool = False, detach_q: bool = False,
                 transition: str | None = None, transformer: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        super().__init__(observation_space, action_space, device, seed=seed, transition=transition or "conv",
                         transformer=transformer, **dict(discrete or {}))
        check_switches(vcr_dist, vcr_space)
        self.vcr_weight, self.vcr_dist, self.vcr_space = float(vcr_weight), vcr_dist, vcr_space
        self.vcr_temperature = float(vcr_temperature)
        self.keep_spr_loss, self.detach_q = bool(keep_spr_loss), bool(detach_q)

    def _head_logits(self, z: Tensor) -> Tensor:
        head = self.q_net.head
        flat = z.reshape(-1, z[0, 0].numel())
        out = frozen(head, flat) if self.detach_q else head(flat)
        return out.view(*z.shape[:2], *out.shape[1:])

    def vcr_loss(self, latents: Tensor, target_latents: Tensor, valid: Tensor) -> Tensor:
        """Per-row ``(1/K) sum_{k=1..K} m_k Dist(sg P_bar_k, P_k)`` (module docstring)."""
        if latents.shape[1] < 2:
            return latents.new_zeros(latents.shape[0])
        logits = self._head_logits(latents[:, 1:])                        # [B, K, A, atoms]
        with torch.no_grad():
            target_logits = self.target_net.logits(target_latents[:, 1:])
        if self.vcr_space == "c51_atoms":
            per_step = atom_consistency(logits, target_logits, self.vcr_dist)
        else:
            head = self.q_net.head
            per_step = action_value_consistency(head.expected(logits), head.expected(target_logits),
                                                self.vcr_dist, self.vcr_temperature)
        return (per_step * valid[:, 1:]).mean(1)

    def auxiliary_losses(self, latents: Tensor, target_latents: Tensor, batch: Mapping[str, Tensor]
                         ) -> dict[str, tuple[float, Tensor]]:
        out = super().auxiliary_losses(latents, target_latents, batch) if self.keep_spr_loss else {}
        out["vcr"] = (self.vcr_weight, self.vcr_loss(latents, target_latents, batch["window_valid"]))
        return out
