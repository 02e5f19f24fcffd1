"""APT -- Active Pre-Training (Liu & Abbeel 2021, arXiv 2103.04551) with URLB's ICM representation ("APT (ICM
rep.)", Laskin et al. 2021, released ``agent/icm_apt.py`` and ``icm_apt.yaml``), on the URLB DDPG backbone.

* Representation ``phi(s) = tanh(LayerNorm(W s + b))`` of width ``rep_dim`` (512), trained as ICM's encoder:
  forward model ``f([phi(s), a]) -> phi(s')`` and inverse model ``g([phi(s), phi(s')]) -> a`` (``Linear ->
  ReLU -> Linear``, hidden ``hidden_dim``; ``g`` ends in tanh), loss
  ``L = mean ||phi(s') - f(phi(s), a)||_2 + mean ||a - g(phi(s), phi(s'))||_2`` (Adam, lr 1e-4), one step per
  update before the reward.
* Reward: APT's particle-based entropy over the batch in ``phi`` space, source = target = ``phi(s_t)``:
  the ``k`` (12) smallest ``D_ij = ||phi_i - phi_j||`` of each row (its own 0 included), averaged,
  ``r_i = log(1 + mean_k max(D~_ik - c, 0))``, ``c = knn_clip`` (0).  ``knn_rms`` (off in ``icm_apt.yaml``)
  divides by the running *mean* of the kept distances, as URLB's ``PBE`` does (CIC divides by the variance).

States only here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from rlkit.algorithms.unsupervised.ddpg import DDPG
from rlkit.algorithms.unsupervised.icm import ICMNetworks, forward_inverse_step
from rlkit.algorithms.unsupervised.knn_reward import RunningMeanVar, particle_entropy_reward
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.optim import adam


class APT(DDPG):
    """APT with the ICM representation (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here

    def __init__(self, observation_space, action_space, device="cpu", *, rep_dim: int = 512, knn_k: int = 12,
                 knn_avg: bool = True, knn_rms: bool = False, knn_clip: float = 0.0, **ddpg_kwargs: Any) -> None:
        states_only("APT", ddpg_kwargs)
        super().__init__(observation_space, action_space, device, **ddpg_kwargs)
        self.knn_k, self.knn_avg, self.knn_clip = int(knn_k), bool(knn_avg), float(knn_clip)
        self.icm = ICMNetworks(self.obs_dim, self.action_dim, self.hidden_dim, int(rep_dim)).to(self.device)
        self.icm_opt = adam(self.icm.parameters(), self.lr)
        self.reward_stats = RunningMeanVar(unbiased=True).to(self.device) if knn_rms else None

    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of ``phi, f, g`` on the forward + inverse loss."""
        return forward_inverse_step(self.icm, self.icm_opt, obs, self.from_env_action(batch.action), next_obs)

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Particle entropy of ``phi(s_t)`` within the batch (module docstring)."""
        rep = self.icm.trunk(obs)
        return particle_entropy_reward(rep, rep, self.reward_stats, k=self.knn_k, clip=self.knn_clip,
                                       average=self.knn_avg, divisor="mean")
