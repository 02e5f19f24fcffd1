"""APS -- Active Pretraining with Successor features (Liu & Abbeel 2021, arXiv 2108.13956) as URLB runs it on states
(Laskin et al. 2021, released ``agent/aps.py`` and ``aps.yaml``), on the URLB DDPG backbone.

* **Task** ``w`` on the unit sphere of ``R^{sf_dim}`` (``sf_dim`` 10): ``w = g / ||g||``, ``g ~ N(0, I)``, redrawn
  every ``update_task_every_step`` (5) steps; actor and critic see ``[s, w]``.
* **Features** ``phi(s) = f(s)/||f(s)||``, ``f``: ``Linear -> ReLU -> Linear -> ReLU -> Linear(sf_dim)`` (hidden
  ``hidden_dim``), trained by ``L = -mean_B w^T phi(s')`` (Adam, lr 1e-4; APS eq. 8, the von Mises-Fisher
  log-likelihood of ``w`` up to a constant), one step per update **before** the reward.
* **Successor-feature critic**: the DDPG critic's heads output ``psi_k(s, a, w) in R^{sf_dim}``, and
  ``Q_k(s, a, w) = w^T psi_k`` (APS eq. 4-5; URLB's ``CriticSF``); the critic and actor losses are DDPG's.
* **Reward** (pretraining): ``r = ent_coef * r_ent + sf_coef * w^T phi(s')`` (URLB: 1 and 1), with ``r_ent``
  APT's particle entropy of the *unnormalised* ``f(s')`` within the batch: the ``k`` (12) smallest distances
  (its own 0 included) over their running mean (``knn_rms``), ``max(. - c, 0)`` with ``c = knn_clip`` (1e-4),
  averaged, ``log(1 + .)`` (APS eq. 10-11; URLB's ``PBE``).
* **Finetuning** (features frozen): after ``num_init_steps`` (4096) agent steps, every ``update_task_every_step``
  steps ``w`` is re-inferred from ``lstsq_batch_size`` (4096) replay rows ``(s_i, R_i)`` (``R`` the n-step
  reward) with ``Phi`` the rows' ``phi(s_i)`` (:meth:`APS.infer_meta`).  URLB's code calls
  ``lstsq(R, Phi)``, which regresses the features on the reward, ``x = R^T Phi / R^T R``; normalised that is
  ``w = Phi^T R / ||Phi^T R||`` (``task_regression: code``, default).  The paper's ``w = argmin ||Phi w - R||^2 =
  (Phi^T Phi)^{-1} Phi^T R`` (APS eq. 12) is ``task_regression: least_squares``, normalised too (the policy
  only saw unit-norm tasks).  Until the first inference the task stays random, as in URLB; evaluation uses the
  inferred ``w`` (before any: the fixed ``1/sqrt(sf_dim)`` vector, where URLB draws one at random).  If the
  rewards give ``Phi^T R = 0`` the task is left as it is (it would be undefined).
* **Which features finetuning regresses on** (``init_sf``): ``pretrained`` (default) loads the feature net ``f``
  from the snapshot, as APS's Sec. 4 describes (the task is inferred with the *learned* features ``phi``).
  URLB's released code does not: its ``finetune.py`` builds a fresh agent and calls ``DDPGAgent.init_from``,
  which copies the encoder, the actor and the critic trunk only (``agent/ddpg.py``; ``agent/aps.py`` has no
  ``init_from`` of its own), so its task regression runs on the fresh, randomly initialised ``f`` of the
  finetuning agent.  ``init_sf: fresh`` reproduces that code, and with it URLB's published APS numbers.

States only here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.algorithms.unsupervised.cic import mlp3
from rlkit.algorithms.unsupervised.ddpg import DDPG, orthogonal_init
from rlkit.algorithms.unsupervised.knn_reward import RunningMeanVar, particle_entropy_reward
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.errors import ConfigError
from rlkit.optim import adam, step

TASK_REGRESSIONS = ("code", "least_squares")
INIT_SF = ("pretrained", "fresh")


class SuccessorFeatureCritic(nn.Module):
    """Twin successor-feature critic on states: ``trunk = Linear([x, a] -> H) -> LayerNorm -> tanh``, heads
    ``Linear(H -> H) -> ReLU -> Linear(H -> sf_dim)``, ``Q_k = w^T psi_k`` with ``w = x[:, task]`` (module
    docstring).  Same trunk layout as the DDPG critic, so finetuning copies it the same way."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dim: int, sf_dim: int, task: slice) -> None:
        super().__init__()
        self.task = task
        self.trunk = nn.Sequential(nn.Linear(in_dim + action_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.Tanh())

        def head() -> nn.Sequential:
            return nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, sf_dim))

        self.q1, self.q2 = head(), head()
        self.apply(orthogonal_init)

    def successor_features(self, x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.cat([x, action], dim=-1))
        return self.q1(h), self.q2(h)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi1, psi2 = self.successor_features(x, action)
        w = x[:, self.task]
        return (psi1 * w).sum(-1), (psi2 * w).sum(-1)


def regress_task(phi: torch.Tensor, reward: torch.Tensor, method: str = "code") -> torch.Tensor | None:
    """The unit task vector of reward-labelled features (module docstring): ``code``: ``Phi^T R`` normalised;
    ``least_squares``: ``argmin_w ||Phi w - R||^2`` normalised.  None when the result is the zero vector."""
    if method == "code":
        w = phi.T @ reward
    else:
        w = torch.linalg.lstsq(phi.double(), reward.double().unsqueeze(1)).solution.squeeze(1).to(phi.dtype)
    norm = w.norm()
    if not torch.isfinite(norm) or norm <= 1e-12:
        return None
    return w / norm


class APS(DDPG):
    """APS on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here
    architecture_keys: ClassVar[tuple[str, ...]] = ("obs_type", "hidden_dim", "feature_dim", "sf_dim")
    state_attributes: ClassVar[tuple[str, ...]] = (*DDPG.state_attributes, "solved_task", "next_inference")

    def __init__(self, observation_space, action_space, device="cpu", *, sf_dim: int = 10,
                 update_task_every_step: int = 5, knn_k: int = 12, knn_avg: bool = True, knn_rms: bool = True,
                 knn_clip: float = 1e-4, ent_coef: float = 1.0, sf_coef: float = 1.0, num_init_steps: int = 4096,
                 lstsq_batch_size: int = 4096, task_regression: str = "code", init_sf: str = "pretrained",
                 **ddpg_kwargs: Any) -> None:
        states_only("APS", ddpg_kwargs)
        if init_sf not in INIT_SF:
            raise ConfigError(f"unknown algo.init_sf '{init_sf}'; choose pretrained or fresh")
        if task_regression not in TASK_REGRESSIONS:
            raise ConfigError(f"unknown algo.task_regression '{task_regression}'; choose code or least_squares")
        if int(update_task_every_step) < 1:
            raise ConfigError(f"algo.update_task_every_step must be >= 1, got {update_task_every_step}")
        super().__init__(observation_space, action_space, device, meta_dim=int(sf_dim), **ddpg_kwargs)
        self.sf_dim, self.meta_interval = int(sf_dim), int(update_task_every_step)
        self.knn_k, self.knn_avg, self.knn_clip = int(knn_k), bool(knn_avg), float(knn_clip)
        self.ent_coef, self.sf_coef = float(ent_coef), float(sf_coef)
        self.num_init_steps, self.lstsq_batch_size = int(num_init_steps), int(lstsq_batch_size)
        self.task_regression, self.init_sf = task_regression, init_sf
        # the successor-feature critic replaces DDPG's (x = [s, w, u]: the task follows the state)
        task = slice(self.obs_dim, self.obs_dim + self.sf_dim)
        in_dim = self.critic.trunk[0].in_features - self.action_dim
        self.critic = SuccessorFeatureCritic(in_dim, self.action_dim, self.hidden_dim, self.sf_dim,
                                             task).to(self.device)
        self.critic_target = SuccessorFeatureCritic(in_dim, self.action_dim, self.hidden_dim, self.sf_dim,
                                                    task).to(self.device).requires_grad_(False)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_opt = adam(self.critic.parameters(), self.lr)
        self.aps = mlp3(self.obs_dim, self.hidden_dim, self.sf_dim).to(self.device)
        self.aps_opt = adam(self.aps.parameters(), self.lr)
        self.reward_stats = RunningMeanVar(unbiased=True).to(self.device) if knn_rms else None
        #: finetuning: the task inferred from the replay rewards (None before the first inference)
        self.solved_task: np.ndarray | None = None
        self.next_inference = self.num_init_steps + 1

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """``phi(s) = f(s) / ||f(s)||``."""
        return F.normalize(self.aps(obs), dim=-1)

    # ------------------------------------------------------------------ tasks
    def meta_columns(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {"skill": ((self.sf_dim,), np.float32)}

    def init_meta(self, episode_step: np.ndarray, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniform unit task per env, or once finetuning has inferred one, that task."""
        n = len(episode_step)
        if not self.reward_free and self.solved_task is not None:
            return {"skill": np.repeat(self.solved_task[None], n, axis=0)}
        g = rng.standard_normal((n, self.sf_dim))
        return {"skill": (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        task = self.solved_task if (not self.reward_free and self.solved_task is not None) else \
            np.full(self.sf_dim, self.sf_dim ** -0.5, dtype=np.float32)
        return {"skill": np.repeat(task[None], n, axis=0)}

    @torch.no_grad()
    def infer_meta(self, replay) -> dict[str, np.ndarray] | None:
        """After ``num_init_steps`` steps, every ``update_task_every_step`` steps: ``w`` regressed from
        ``lstsq_batch_size`` replay rows (module docstring)."""
        if self.env_step < self.next_inference or len(replay) == 0:
            return None
        self.next_inference = self.env_step + self.meta_interval
        batch = replay.sample(self.lstsq_batch_size)
        w = regress_task(self.features(batch.obs.float().to(self.device)), batch.reward.float().to(self.device),
                         self.task_regression)
        if w is None:
            return None
        self.solved_task = w.cpu().numpy().astype(np.float32)
        return {"skill": self.solved_task}

    # ------------------------------------------------------------------ the intrinsic reward
    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of ``f`` on ``-mean_B w^T phi(s')``."""
        loss = -(self.features(next_obs) * batch.skill).sum(-1).mean()
        step(self.aps_opt, loss)
        return {"train/aps_loss": loss.detach()}

    @torch.no_grad()
    def reward_terms(self, batch, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r_ent, w^T phi(s'))`` per row (module docstring)."""
        rep = self.aps(next_obs)
        entropy = particle_entropy_reward(rep, rep, self.reward_stats, k=self.knn_k, clip=self.knn_clip,
                                          average=self.knn_avg, divisor="mean")
        return entropy, (F.normalize(rep, dim=-1) * batch.skill).sum(-1)

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        entropy, exploit = self.reward_terms(batch, next_obs)
        return self.ent_coef * entropy + self.sf_coef * exploit

    # ------------------------------------------------------------------ finetuning
    def init_from_snapshot(self, state: dict[str, Any]) -> None:
        """DDPG's copy; the feature net ``f`` too with ``init_sf: pretrained``, while ``fresh`` keeps this agent's
        own random ``f`` as URLB's ``init_from`` does (module docstring)."""
        fresh = {k: v.clone() for k, v in self.aps.state_dict().items()} if self.init_sf == "fresh" else None
        super().init_from_snapshot(state)
        if fresh is not None:
            self.aps.load_state_dict(fresh)
