"""Contrastive Intrinsic Control (Laskin et al. 2022, arXiv 2202.00161) on the URLB DDPG backbone.

CIC (Laskin et al. 2022, arXiv 2202.00161), as in its released PyTorch code (states only, as in the MOSS
reference).  Networks (``Linear -> ReLU ->
Linear -> ReLU -> Linear``, width ``cic_hidden_dim`` = 1024, orthogonal init), ``d = skill_dim`` = 64:

* state encoder ``g_s: obs -> R^d``, applied to ``s`` and ``s'`` (the reference's unused next-state net is
  left out);
* predictor ``g_p([g_s(s), g_s(s')]) = k`` (key) and skill projector ``g_z(z) = q`` (query;
  ``project_skill=False``: ``q = z``).

Contrastive loss, temperature ``tau`` = 0.5, unit-normalised ``q, k`` (:func:`cic_contrastive_loss`):
``L = mean_i -log( exp(q_i.k_i/tau) / (max(sum_j exp(q_i.k_j/tau) - e^{1/tau}, 1e-6) + 1e-6) )``, the
``e^{1/tau}`` subtraction approximating the removal of the positive pair (kept for fidelity).

Intrinsic reward: APT's kNN particle entropy in the ``g_s`` embedding over the batch
(:mod:`rlkit.algorithms.unsupervised.knn_reward`), CIC's PyTorch variant by default: source = target =
``g_s(s')``, distances divided by the running variance (unbiased), k = 16, averaged, clip 0.0005.  It replaces
the n-step reward of the sampled transition ``(s_t, s_{t+n})`` (URLB's released code).  One CIC update per agent update
(Adam, lr 1e-4); CIC's code computes the reward *after* that update (``reward_before_rep_update=False``;
MOSS uses the pre-update parameters).

Skills: ``z ~ U(0, 1)^d``, resampled every 50 environment steps in pretraining.  Finetuning feeds the fixed
skill ``z = 0.5 * 1`` (the official code; the paper's skill search is not in it).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rlkit.algorithms.unsupervised.ddpg import DDPG, orthogonal_init
from rlkit.algorithms.unsupervised.knn_reward import RunningMeanVar, particle_entropy_reward
from rlkit.errors import ConfigError
from rlkit.optim import adam, step


def mlp3(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear -> ReLU -> Linear`` with orthogonal weights and zero biases."""
    net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                        nn.Linear(hidden_dim, out_dim))
    net.apply(orthogonal_init)
    return net


class CICNetworks(nn.Module):
    """``g_s`` (``state_net``), ``g_p`` (``pred_net``) and ``g_z`` (``skill_net``)."""

    def __init__(self, obs_dim: int, skill_dim: int, hidden_dim: int, project_skill: bool = True) -> None:
        super().__init__()
        self.state_net = mlp3(obs_dim, hidden_dim, skill_dim)
        self.pred_net = mlp3(2 * skill_dim, hidden_dim, skill_dim)
        self.skill_net = mlp3(skill_dim, hidden_dim, skill_dim) if project_skill else nn.Identity()

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor, skill: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(query, key) = (g_z(z), g_p([g_s(s), g_s(s')]))``."""
        key = self.pred_net(torch.cat([self.state_net(obs), self.state_net(next_obs)], dim=-1))
        return self.skill_net(skill), key


def cic_contrastive_loss(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.5,
                         eps: float = 1e-6) -> torch.Tensor:
    """CIC's per-sample CPC loss (module docstring), shape ``(B,)``."""
    query = nn.functional.normalize(query, dim=1)
    key = nn.functional.normalize(key, dim=1)
    similarity = torch.exp(query @ key.T / temperature)
    negatives = torch.clamp(similarity.sum(dim=1) - math.exp(1.0 / temperature), min=eps)
    positives = torch.exp((query * key).sum(dim=1) / temperature)
    return -torch.log(positives / (negatives + eps))


class CIC(DDPG):
    """CIC: DDPG on ``[s, z]`` with the contrastive skill discriminator and the kNN entropy reward."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    architecture_keys: ClassVar[tuple[str, ...]] = ("obs_type", "hidden_dim", "feature_dim", "skill_dim")

    def __init__(self, observation_space, action_space, device="cpu", *, skill_dim: int = 64,
                 update_skill_every: int = 50, project_skill: bool = True, temperature: float = 0.5,
                 cic_hidden_dim: int | None = None, cic_lr: float | None = None, update_rep: bool = True,
                 reward_before_rep_update: bool = False, knn_k: int = 16, knn_clip: float = 0.0005,
                 knn_avg: bool = True, knn_rms: bool = True, knn_source: str = "next_obs",
                 knn_subtract_mean: bool = False, knn_unbiased_var: bool = True, finetune_skill: float = 0.5,
                 **ddpg_kwargs: Any) -> None:
        if ddpg_kwargs.get("obs_type", "states") != "states":
            raise ConfigError(f"{type(self).__name__} is states-only here (as the MOSS reference); set "
                              "algo.obs_type=states and env.kwargs.obs_type=states")
        if knn_source not in ("obs", "next_obs"):
            raise ConfigError(f"algo.knn_source must be 'obs' or 'next_obs', got '{knn_source}'")
        super().__init__(observation_space, action_space, device, meta_dim=int(skill_dim), **ddpg_kwargs)
        self.skill_dim = int(skill_dim)
        self.meta_interval = int(update_skill_every)
        self.temperature = float(temperature)
        self.update_rep, self.reward_before_rep_update = bool(update_rep), bool(reward_before_rep_update)
        self.knn_k, self.knn_clip, self.knn_avg = int(knn_k), float(knn_clip), bool(knn_avg)
        self.knn_source, self.knn_subtract_mean = knn_source, bool(knn_subtract_mean)
        self.finetune_skill = float(finetune_skill)
        self.cic = CICNetworks(self.obs_dim, self.skill_dim, int(cic_hidden_dim or self.hidden_dim),
                               project_skill).to(self.device)
        self.cic_opt = adam(self.cic.parameters(), float(cic_lr or self.lr))
        self.reward_stats = RunningMeanVar(unbiased=knn_unbiased_var).to(self.device) if knn_rms else None

    # ------------------------------------------------------------------ URLB hooks
    def meta_columns(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {"skill": ((self.skill_dim,), np.float32)}

    def constant_skill(self, n: int, value: float | None = None) -> np.ndarray:
        value = self.finetune_skill if value is None else value
        return np.full((n, self.skill_dim), value, dtype=np.float32)

    def init_meta(self, episode_step: np.ndarray, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n = len(episode_step)
        if self.reward_free:
            return {"skill": rng.uniform(0.0, 1.0, (n, self.skill_dim)).astype(np.float32)}
        return {"skill": self.constant_skill(n)}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        """The fixed skill ``0.5 * 1`` (CIC's finetune skill; also used to evaluate during pretraining)."""
        return {"skill": self.constant_skill(n)}

    # ------------------------------------------------------------------ intrinsic reward
    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of the CIC networks on the contrastive loss (module docstring), ``update_rep`` on."""
        if not self.update_rep:
            return {}
        query, key = self.cic(obs, next_obs, batch.skill)
        loss = cic_contrastive_loss(query, key, self.temperature).mean()
        step(self.cic_opt, loss)
        return {"train/cic_loss": loss.detach()}

    @torch.no_grad()
    def entropy_reward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """kNN particle entropy of ``g_s(source)`` against ``g_s(s')`` (running statistics updated)."""
        target = self.cic.state_net(next_obs)
        source = target if self.knn_source == "next_obs" else self.cic.state_net(obs)
        return particle_entropy_reward(source, target, self.reward_stats, k=self.knn_k, clip=self.knn_clip,
                                       average=self.knn_avg, subtract_mean=self.knn_subtract_mean)

    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """CIC's reward: the kNN particle entropy of the ``g_s`` embeddings (no network is trained here)."""
        return self.entropy_reward(obs, next_obs)
