"""Pixel encoders and K-step latent transition models shared by the representation-learning agents
(SPR, VCR) -- one interface, two action kinds.

Encoders (``[N, C, H, W]`` float in [0, 1] -> latent):

* :class:`NatureEncoder` -- the DQN "Nature" CNN (Mnih et al. 2015): Conv 8x8/4 (32), Conv 4x4/2 (64),
  Conv 3x3/1 (64), ReLU after each -> ``64 x 7 x 7`` at 84x84 input; optional per-sample min-max
  renormalisation ``(x - min) / (max - min)`` over all features (SPR, Schwarzer et al. 2021, App. D);
* :class:`DrQEncoder` -- DrQ's encoder (Kostrikov et al. 2021, App. B; the SAC-AE conv stack of
  Yarats et al. 2021): Conv 3x3/2 then ``layers - 1`` Conv 3x3/1 (32 channels, ReLU), flatten,
  Linear -> LayerNorm -> tanh to ``feature_dim`` (50).

Transition models (``step(z, a) -> z'``; ``rollout(z_0, a_{0..K-1}) -> z_{0..K}`` stacked on axis 1):

* :class:`ConvTransition` -- SPR's model for discrete actions: ``[z, onehot(a)]`` (the action broadcast as
  ``A`` constant planes) -> Conv 3x3 (64) -> ReLU -> BatchNorm -> Conv 3x3 (64) -> ReLU, renormalised;
* :class:`MLPTransition` -- for continuous actions on a vector latent: ``[z, a]`` -> MLP -> ``z'``, with an
  optional LayerNorm + tanh squash so that ``z'`` lives where the encoder's features do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.nets.mlp import MLP


def renormalize(x: Tensor) -> Tensor:
    """Per-sample min-max scaling of all non-batch features to [0, 1]: ``(x - min) / (max - min)``, with no
    epsilon in the denominator, as mila-iqia/spr's ``src/models.py`` ``renormalize``."""
    flat = x.flatten(1)
    low, high = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
    return ((flat - low) / (high - low)).view_as(x)


class NatureEncoder(nn.Module):
    """Nature-CNN feature map (module docstring); ``renorm`` applies :func:`renormalize` to the output."""

    def __init__(self, in_channels: int, channels: Sequence[int] = (32, 64, 64),
                 kernels: Sequence[int] = (8, 4, 3), strides: Sequence[int] = (4, 2, 1), renorm: bool = True) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        prev = in_channels
        for c, k, s in zip(channels, kernels, strides):
            mods += [nn.Conv2d(prev, c, k, s), nn.ReLU()]
            prev = c
        self.net = nn.Sequential(*mods)
        self.renorm = renorm
        self.out_channels = prev

    def forward(self, x: Tensor) -> Tensor:
        z = self.net(x)
        return renormalize(z) if self.renorm else z

    def output_shape(self, in_shape: Sequence[int]) -> tuple[int, int, int]:
        with torch.no_grad():
            return tuple(self.net(torch.zeros(1, *in_shape)).shape[1:])  # type: ignore[return-value]


class DrQEncoder(nn.Module):
    """DrQ's conv encoder + Linear/LayerNorm/tanh trunk (module docstring): ``[N, C, H, W]`` -> ``[N, feature_dim]``."""

    def __init__(self, in_shape: Sequence[int], channels: int = 32, layers: int = 4, feature_dim: int = 50) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_shape[0], channels, 3, stride=2), nn.ReLU()]
        for _ in range(layers - 1):
            mods += [nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU()]
        self.convs = nn.Sequential(*mods)
        with torch.no_grad():
            flat = int(self.convs(torch.zeros(1, *in_shape)).numel())
        self.trunk = nn.Sequential(nn.Linear(flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.feature_dim = feature_dim

    def conv_features(self, x: Tensor) -> Tensor:
        return self.convs(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(self.conv_features(x))


class TransitionModel(nn.Module):
    """Interface: ``step(z, a) -> z'``; :meth:`rollout` applies it K times along replayed actions."""

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        raise NotImplementedError

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z_0`` ``[B, ...]`` and actions ``[B, K, ...]`` -> ``[B, K + 1, ...]`` = ``z_0, T(z_0, a_0), ...``."""
        out = [z0]
        z = z0
        for k in range(actions.shape[1]):
            z = self.step(z, actions[:, k])
            out.append(z)
        return torch.stack(out, dim=1)


class ConvTransition(TransitionModel):
    """SPR's convolutional transition model for discrete actions (module docstring)."""

    def __init__(self, channels: int, action_dim: int, hidden: int = 64, renorm: bool = True) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.net = nn.Sequential(
            nn.Conv2d(channels + action_dim, hidden, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(hidden),
            nn.Conv2d(hidden, channels, 3, padding=1), nn.ReLU(),
        )
        self.renorm = renorm

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        planes = F.one_hot(action.long(), self.action_dim).to(z.dtype)[:, :, None, None]
        x = torch.cat([z, planes.expand(-1, -1, *z.shape[-2:])], dim=1)
        out = self.net(x)
        return renormalize(out) if self.renorm else out


class MLPTransition(TransitionModel):
    """``z' = squash(MLP([z, a]))`` for continuous actions (module docstring); ``squash``: LayerNorm + tanh."""

    def __init__(self, latent_dim: int, action_dim: int, hidden: Sequence[int] = (1024,), squash: bool = True) -> None:
        super().__init__()
        self.net = MLP(latent_dim + action_dim, hidden, latent_dim)
        self.squash = nn.Sequential(nn.LayerNorm(latent_dim), nn.Tanh()) if squash else nn.Identity()

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        return self.squash(self.net(torch.cat([z, action.to(z.dtype)], dim=-1)))
