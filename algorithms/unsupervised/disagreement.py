"""Disagreement -- self-supervised exploration via ensemble disagreement (Pathak et al. 2019, arXiv 1906.04161) as
URLB runs it on states (Laskin et al. 2021, released ``agent/disagreement.py``), on the URLB DDPG backbone.

* Ensemble of ``n_models`` (5) forward models ``f_m([s, a]) -> s'`` (``Linear -> ReLU -> Linear``, hidden
  ``hidden_dim``, PyTorch's default init as in the reference), loss ``L = mean_{B, m} ||s' - f_m(s, a)||_2``
  (Adam, lr 1e-4), one step per update before the reward.
* Reward: the ensemble's disagreement ``r = mean_j Var_m[f_m(s, a)_j]`` (unbiased variance over the models).

States only here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from rlkit.algorithms.unsupervised.ddpg import DDPG
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.optim import adam, step


class ForwardEnsemble(nn.Module):
    """``n_models`` forward models ``[s, a] -> s'``; :meth:`forward` stacks their predictions ``(M, B, d)``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dim: int, n_models: int = 5) -> None:
        super().__init__()
        self.ensemble = nn.ModuleList([nn.Sequential(nn.Linear(obs_dim + action_dim, hidden_dim), nn.ReLU(),
                                                     nn.Linear(hidden_dim, obs_dim)) for _ in range(n_models)])

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([model(x) for model in self.ensemble])


class Disagreement(DDPG):
    """Disagreement on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here

    def __init__(self, observation_space, action_space, device="cpu", *, n_models: int = 5,
                 **ddpg_kwargs: Any) -> None:
        states_only("Disagreement", ddpg_kwargs)
        super().__init__(observation_space, action_space, device, **ddpg_kwargs)
        self.disagreement = ForwardEnsemble(self.obs_dim, self.action_dim, self.hidden_dim,
                                            int(n_models)).to(self.device)
        self.disagreement_opt = adam(self.disagreement.parameters(), self.lr)

    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of the ensemble on the mean forward error."""
        predictions = self.disagreement(obs, self.from_env_action(batch.action))
        loss = (next_obs.unsqueeze(0) - predictions).norm(dim=-1).mean()
        step(self.disagreement_opt, loss)
        return {"train/disagreement_loss": loss.detach()}

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``mean_j Var_m f_m(s, a)_j``."""
        return self.disagreement(obs, self.from_env_action(batch.action)).var(dim=0).mean(dim=-1)
