"""RND -- Random Network Distillation (Burda et al. 2019, arXiv 1810.12894) as URLB runs it (Laskin et al. 2021,
released ``agent/rnd.py``), on the URLB DDPG backbone.

* Observation normalisation: per-batch standardisation (URLB's ``BatchNorm1d(affine=False)`` in training mode,
  biased variance, eps 1e-5; its running statistics are never read), then clipped to ``+-clip_val`` (5):
  ``o~ = clip((o - mean_B o) / sqrt(var_B o + 1e-5), -5, 5)``.
* Target ``f_bar`` (frozen, random) and predictor ``f``: ``Linear(obs, H) -> ReLU -> Linear(H, H) -> ReLU ->
  Linear(H, rnd_rep_dim)``, orthogonal init, ``H = hidden_dim`` (1024), ``rnd_rep_dim`` 512.
* Prediction error ``e(s) = mean_j (f_bar(o~)_j - f(o~)_j)^2`` of the *current* state ``s_t``; loss
  ``L = mean_B e`` (Adam, lr 1e-4), one step per agent update, **before** the reward is computed.
* Reward ``r = rnd_scale * e(s_t) / (sqrt(S) + 1e-8)``, ``S`` the running variance of ``e`` (URLB's ``RMS``:
  Chan et al.'s update with the unbiased batch variance, ``M=0, S=1, n=1e-4``, updated once per rewarded batch).

States only here (URLB also runs RND on pixels with its conv encoder).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.algorithms.unsupervised.ddpg import DDPG, orthogonal_init
from rlkit.algorithms.unsupervised.knn_reward import RunningMeanVar
from rlkit.errors import ConfigError
from rlkit.optim import adam, step


def states_only(name: str, kwargs: dict[str, Any]) -> None:
    """Refuse pixels for an agent implemented on URLB states only."""
    if kwargs.get("obs_type", "states") != "states":
        raise ConfigError(f"{name} is states-only here; set algo.obs_type=states and env.kwargs.obs_type=states")


class RNDNetworks(nn.Module):
    """Frozen random target and trained predictor over the normalised observation (module docstring)."""

    def __init__(self, obs_dim: int, hidden_dim: int, rep_dim: int, clip_val: float = 5.0) -> None:
        super().__init__()
        self.clip_val = float(clip_val)

        def mlp() -> nn.Sequential:
            return nn.Sequential(nn.Linear(obs_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.ReLU(), nn.Linear(hidden_dim, rep_dim))

        self.predictor, self.target = mlp(), mlp()
        self.apply(orthogonal_init)
        self.target.requires_grad_(False)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """``clip((o - mean_B) / sqrt(var_B + 1e-5), +-clip_val)`` (BatchNorm1d, affine=False, training mode)."""
        return F.batch_norm(obs, None, None, training=True, eps=1e-5).clamp(-self.clip_val, self.clip_val)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Prediction error ``e(s)`` per row, shape ``(B,)``."""
        x = self.normalize(obs)
        return (self.target(x).detach() - self.predictor(x)).square().mean(dim=-1)


class RND(DDPG):
    """RND on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here

    def __init__(self, observation_space, action_space, device="cpu", *, rnd_rep_dim: int = 512,
                 rnd_scale: float = 1.0, rnd_clip: float = 5.0, **ddpg_kwargs: Any) -> None:
        states_only("RND", ddpg_kwargs)
        super().__init__(observation_space, action_space, device, **ddpg_kwargs)
        self.rnd_scale = float(rnd_scale)
        self.rnd = RNDNetworks(self.obs_dim, self.hidden_dim, int(rnd_rep_dim), rnd_clip).to(self.device)
        self.rnd_opt = adam(self.rnd.predictor.parameters(), self.lr)
        self.reward_stats = RunningMeanVar(unbiased=True).to(self.device)

    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of the predictor on ``mean_B e(s_t)``."""
        loss = self.rnd(obs).mean()
        step(self.rnd_opt, loss)
        return {"train/rnd_loss": loss.detach()}

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``rnd_scale * e(s_t) / (sqrt(S) + 1e-8)`` with the running variance ``S`` of ``e`` updated first."""
        error = self.rnd(obs)
        _, var = self.reward_stats.update(error)
        return self.rnd_scale * error / (var.sqrt() + 1e-8)
