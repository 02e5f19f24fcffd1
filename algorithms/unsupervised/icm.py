"""ICM -- Intrinsic Curiosity Module (Pathak et al. 2017, arXiv 1705.05363) as URLB runs it on states (Laskin et
al. 2021, released ``agent/icm.py``), on the URLB DDPG backbone.

* Forward model ``f([s, a]) -> s'`` and inverse model ``g([s, s']) -> a`` on the raw state (``Linear -> ReLU
  -> Linear``, hidden ``hidden_dim``; ``g`` ends in tanh), loss
  ``L = mean ||s' - f(s, a)||_2 + mean ||a - g(s, s')||_2`` (Adam, lr 1e-4), one step per update before the
  reward.
* Reward ``r = log(1 + icm_scale * ||s' - f(s, a)||_2)`` (``icm_scale`` 1), with ``s' = s_{t+n}`` of the
  n-step transition (URLB's convention).

States only here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from rlkit.algorithms.unsupervised.ddpg import DDPG, orthogonal_init
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.optim import adam, step


class ICMNetworks(nn.Module):
    """ICM's forward and inverse models (module docstring) on ``phi(s)``: the raw state (``rep_dim=None``, ICM)
    or a learned representation ``phi(s) = tanh(LayerNorm(W s + b))`` of width ``rep_dim`` (APT's ICM encoder)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dim: int, rep_dim: int | None = None) -> None:
        super().__init__()
        if rep_dim is None:
            self.trunk: nn.Module = nn.Identity()
            rep_dim = obs_dim
        else:
            self.trunk = nn.Sequential(nn.Linear(obs_dim, rep_dim), nn.LayerNorm(rep_dim), nn.Tanh())
        self.forward_net = nn.Sequential(nn.Linear(rep_dim + action_dim, hidden_dim), nn.ReLU(),
                                         nn.Linear(hidden_dim, rep_dim))
        self.backward_net = nn.Sequential(nn.Linear(2 * rep_dim, hidden_dim), nn.ReLU(),
                                          nn.Linear(hidden_dim, action_dim), nn.Tanh())
        self.apply(orthogonal_init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and inverse errors ``(||phi(s') - f(phi(s), a)||, ||a - g(phi(s), phi(s'))||)``, each ``(B,)``."""
        rep, next_rep = self.trunk(obs), self.trunk(next_obs)
        forward_error = (next_rep - self.forward_net(torch.cat([rep, action], -1))).norm(dim=-1)
        backward_error = (action - self.backward_net(torch.cat([rep, next_rep], -1))).norm(dim=-1)
        return forward_error, backward_error


def forward_inverse_step(icm: nn.Module, optimizer: torch.optim.Optimizer, obs: torch.Tensor, action: torch.Tensor,
                         next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Adam step on ICM's ``L = mean forward error + mean inverse error`` (Pathak et al. 2017, eq. 7 with
    URLB's unit weights), for any module returning ``(forward_error, inverse_error)`` per row."""
    forward_error, backward_error = icm(obs, action, next_obs)
    loss = forward_error.mean() + backward_error.mean()
    step(optimizer, loss)
    return {"train/icm_loss": loss.detach()}


class ICM(DDPG):
    """ICM on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here

    def __init__(self, observation_space, action_space, device="cpu", *, icm_scale: float = 1.0,
                 **ddpg_kwargs: Any) -> None:
        states_only("ICM", ddpg_kwargs)
        super().__init__(observation_space, action_space, device, **ddpg_kwargs)
        self.icm_scale = float(icm_scale)
        self.icm = ICMNetworks(self.obs_dim, self.action_dim, self.hidden_dim).to(self.device)
        self.icm_opt = adam(self.icm.parameters(), self.lr)

    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of ``f, g`` on the forward + inverse loss."""
        return forward_inverse_step(self.icm, self.icm_opt, obs, self.from_env_action(batch.action), next_obs)

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``log(1 + icm_scale * ||s' - f(s, a)||)``."""
        forward_error, _ = self.icm(obs, self.from_env_action(batch.action), next_obs)
        return torch.log1p(self.icm_scale * forward_error)
