"""Observation normalisation: ``(x - mean) / std`` with statistics fixed from a dataset (TD3+BC,
IQL) or tracked online (running mean/variance, Chan et al. parallel update)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Normalizer(nn.Module):
    """Per-feature standardisation; statistics are buffers, so they travel with ``state_dict``."""

    def __init__(self, shape: tuple[int, ...] | int, eps: float = 1e-3) -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.eps = eps
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("m2", torch.zeros(shape))

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Fix the statistics (``std`` is used as given: add the paper's epsilon before calling)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch into running statistics (parallel Welford update)."""
        x = x.reshape(-1, *self.mean.shape).float()
        n_b = x.shape[0]
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta**2 * n_a * n_b / total
        self.count.fill_(total)
        self.std.copy_((self.m2 / total.clamp(min=1)).sqrt() + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
