"""Policy distribution heads.

``TanhGaussian``: ``a = tanh(u)``, ``u ~ N(μ, σ²)``, with the change-of-variables correction
``log π(a|s) = log N(u; μ, σ) - Σ_d log(1 - tanh(u_d)²)`` computed in the stable form
``log(1 - tanh(u)²) = 2 (log 2 - u - softplus(-2u))`` (SAC, Haarnoja et al. 2018, appendix C).  With
``tanh_eps`` set, the correction is ``log(1 - tanh(u)² + tanh_eps)`` instead: the form of the SAC/CQL
released code built on rail-berkeley's rlkit (``rlkit/torch/distributions.py``, ``TanhNormal.log_prob``,
epsilon 1e-6), which differs from the exact value where ``|tanh(u)|`` nears 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rlkit.nets.mlp import MLP

LOG_2 = math.log(2.0)


class TanhGaussian:
    """A diagonal Gaussian squashed by tanh; ``rsample`` is reparameterised."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, tanh_eps: float | None = None) -> None:
        self.mean, self.log_std = mean, log_std
        self.std = log_std.exp()
        self.tanh_eps = tanh_eps

    def rsample_with_log_prob(self, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``a = tanh(μ + σ ε)`` and ``log π(a)``; ``ε ~ N(0, I)`` is drawn here unless given as ``noise``."""
        u = self.mean + self.std * (torch.randn_like(self.mean) if noise is None else noise)
        return torch.tanh(u), self._log_prob_pre_tanh(u)

    def _log_prob_pre_tanh(self, u: torch.Tensor) -> torch.Tensor:
        gauss = -0.5 * ((u - self.mean) / self.std) ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)
        if self.tanh_eps is None:
            correction = 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))
        else:
            correction = torch.log(1.0 - torch.tanh(u).pow(2) + self.tanh_eps)
        return (gauss - correction).sum(-1)

    def log_prob(self, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """``log π(a)`` for actions in (-1, 1) (clipped to ``±(1 - eps)`` before ``atanh``)."""
        u = torch.atanh(action.clamp(-1 + eps, 1 - eps))
        return self._log_prob_pre_tanh(u)

    @property
    def mode(self) -> torch.Tensor:
        return torch.tanh(self.mean)


class TanhGaussianHead(nn.Module):
    """MLP trunk -> (mean, log σ) with log σ clamped to ``[log_std_min, log_std_max]``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256),
                 log_std_min: float = -20.0, log_std_max: float = 2.0, activation: str = "relu") -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden, 2 * action_dim, activation=activation)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> TanhGaussian:
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        return TanhGaussian(mean, log_std.clamp(self.log_std_min, self.log_std_max))
