"""SMM -- State Marginal Matching (Lee et al. 2019, arXiv 1906.05274) as URLB runs it on states (Laskin et al. 2021,
released ``agent/smm.py`` and ``smm.yaml``), on the URLB DDPG backbone with the skill as input.

SMM maximises the state entropy of a mixture of ``K = z_dim`` skill policies, ``H[s] = H[s|z] + H[z] - H[z|s]``
(Lee et al. 2019, Sec. 4, Algorithm 1 with a uniform target ``p*(s)``, whose ``log p*(s)`` is a constant and left
out, as in both released codebases).  Per transition, with ``x = [s_t, z]``:

* **density model** ``q(s|z)``: a VAE of ``x`` (encoder ``Linear(x, 150) -> ReLU -> Linear(150, 150) -> ReLU``,
  heads ``mu``, ``log sigma^2`` of a 128-d code ``c``; decoder ``Linear(128, 150) -> ReLU -> Linear(150, 150) ->
  ReLU -> Linear(150, |x|)``), loss ``beta * mean_B KL(N(mu, sigma^2) || N(0, I)) + mean_{B,j} (x - x^)_j^2``
  (``beta = vae_beta`` 0.5, Adam lr ``vae_lr`` 1e-2).  ``-log q(s|z)`` is estimated (up to a constant and the
  unit-variance Gaussian's factor) by ``h(s|z) = sum_j (x - x^(c))_j^2`` with ``c = mu + sigma * eps``, one draw;
* **discriminator** ``q(z|s) = softmax(d(s_t))``, ``d``: ``Linear -> ReLU -> Linear -> ReLU -> Linear`` (hidden
  ``hidden_dim``), cross-entropy loss ``h(z|s) = -log q(z|s_t)`` (Adam lr ``sp_lr`` 1e-3);
* **reward** ``r = state_ent_coef * h(s|z) + latent_ent_coef * log K + latent_cond_ent_coef * s_d * h(z|s)``
  (coefficients 1, 1, 1), ``log K = -log p(z)`` of the uniform one-hot prior.  Both released codebases add
  ``+h(z|s) = -log q(z|s)`` (``discriminator_sign: code``, ``s_d = +1``, the default: URLB's numbers); the
  decomposition above gives ``-H[z|s]``, i.e. ``+log q(z|s)`` (``discriminator_sign: paper``, ``s_d = -1``).
  As in URLB both terms come from the modules *before* this update's steps (``reward_before_rep_update``), and
  ``h(s|z)`` uses the same ``eps`` draw as the VAE step on that batch (URLB takes it from the loss's forward pass,
  ``agent/smm.py``: ``update_vae`` returns it).

Skills: a uniform one-hot ``z`` at every episode start (``meta_interval`` 0), in pretraining and finetuning.  The
released code also contains an episode-wise "try every skill once, then keep the best return" routine for
finetuning, but it never runs: its activation test is inverted (``if self.reward_free``) and, either way, it only
switches skills on ``time_step.last()``, which the training loop never passes (it resets first and draws a fresh
random skill).  ``finetune_skill: random`` (default) is what the code does; ``finetune_skill: search`` runs the
routine as intended (:class:`SkillTrial`): finetuning's first ``K`` episodes try each skill once in random order,
acting with the pretrained actor even during the seed steps (random actions would score nothing of the skill),
then the best-return skill is kept for training and evaluation.  Evaluation otherwise follows ``eval_skill``:
``random`` (default, URLB's code: one uniform skill per evaluation, shared by its episodes) or ``first`` (skill 0);
see :func:`rlkit.algorithms.unsupervised.diayn.eval_skill_index`.

States only here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.algorithm import UpdateResult
from rlkit.algorithms.unsupervised.cic import mlp3
from rlkit.algorithms.unsupervised.ddpg import DDPG, orthogonal_init
from rlkit.algorithms.unsupervised.diayn import check_eval_skill, discriminator_step, eval_skill_index
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.errors import ConfigError
from rlkit.optim import adam, step

FINETUNE_SKILLS = ("random", "search")
DISCRIMINATOR_SIGNS = {"code": 1.0, "paper": -1.0}


class SMMVAE(nn.Module):
    """The density model ``q(s|z)``: a VAE of ``x = [s, z]`` (module docstring)."""

    def __init__(self, in_dim: int, code_dim: int = 128, hidden_dim: int = 150) -> None:
        super().__init__()
        self.code_dim = int(code_dim)
        self.enc = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.enc_mu = nn.Linear(hidden_dim, code_dim)
        self.enc_logvar = nn.Linear(hidden_dim, code_dim)
        self.dec = nn.Sequential(nn.Linear(code_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.ReLU(), nn.Linear(hidden_dim, in_dim))
        self.apply(orthogonal_init)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``x^(mu + sigma * eps)``, ``mu`` and ``log sigma^2``."""
        h = self.enc(x)
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        return self.dec(mu + eps * (0.5 * logvar).exp()), mu, logvar

    def loss_and_error(self, x: torch.Tensor, beta: float, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(beta * mean_B KL + mean (x - x^)^2, h(s|z) = sum_j (x - x^)_j^2 per row)`` for the code noise ``eps``
        (``(B, code_dim)`` standard normals)."""
        recon, mu, logvar = self(x, eps)
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1).mean()
        squared = (x - recon).square()
        return beta * kl + squared.mean(), squared.sum(dim=1)


@dataclass
class SkillTrial:
    """``finetune_skill: search`` (module docstring): each of the ``K`` skills is tried for one episode (untried
    skills drawn uniformly), its return summed from the extrinsic rewards; afterwards the best is kept.  Per env
    ``current`` is the skill being tried (-1: none) and ``running`` its return so far."""

    skills: int
    returns: np.ndarray = field(init=False)
    current: np.ndarray | None = None
    running: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.returns = np.full(self.skills, np.nan)

    @property
    def done(self) -> bool:
        return bool(np.isfinite(self.returns).all())

    def best(self) -> int:
        """The best-return skill tried so far (skill 0 before any trial has finished)."""
        return int(np.nanargmax(self.returns)) if np.isfinite(self.returns).any() else 0

    def next_skills(self, starting: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Close the trials of the envs whose episodes start now (``starting``), then give every env its skill:
        an untried skill not being tried elsewhere if any, else the best so far."""
        n = len(starting)
        if self.current is None or len(self.current) != n:
            self.current, self.running = np.full(n, -1), np.zeros(n)
        for i in np.flatnonzero(starting):
            if self.current[i] >= 0 and np.isnan(self.returns[self.current[i]]):
                self.returns[self.current[i]] = self.running[i]
            self.current[i], self.running[i] = -1, 0.0
            untried = [k for k in range(self.skills) if np.isnan(self.returns[k]) and k not in self.current]
            if untried:
                self.current[i] = untried[int(rng.integers(len(untried)))]
        return np.where(self.current >= 0, self.current, self.best())

    def observe(self, reward: np.ndarray) -> None:
        if self.current is not None:
            self.running += np.where(self.current >= 0, np.asarray(reward, dtype=np.float64).reshape(-1), 0.0)


class SMM(DDPG):
    """SMM on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here
    architecture_keys: ClassVar[tuple[str, ...]] = ("obs_type", "hidden_dim", "feature_dim", "z_dim", "code_dim",
                                                    "vae_hidden_dim")
    state_attributes: ClassVar[tuple[str, ...]] = (*DDPG.state_attributes, "trial")

    def __init__(self, observation_space, action_space, device="cpu", *, z_dim: int = 4, sp_lr: float = 1e-3,
                 vae_lr: float = 1e-2, vae_beta: float = 0.5, code_dim: int = 128, vae_hidden_dim: int = 150,
                 state_ent_coef: float = 1.0, latent_ent_coef: float = 1.0, latent_cond_ent_coef: float = 1.0,
                 discriminator_sign: str = "code", finetune_skill: str = "random", eval_skill: str = "random",
                 **ddpg_kwargs: Any) -> None:
        states_only("SMM", ddpg_kwargs)
        if discriminator_sign not in DISCRIMINATOR_SIGNS:
            raise ConfigError(f"unknown algo.discriminator_sign '{discriminator_sign}'; choose code or paper")
        if finetune_skill not in FINETUNE_SKILLS:
            raise ConfigError(f"unknown algo.finetune_skill '{finetune_skill}'; choose random or search")
        if int(z_dim) < 2:
            raise ConfigError(f"algo.z_dim must be at least 2 skills, got {z_dim}")
        super().__init__(observation_space, action_space, device, meta_dim=int(z_dim), **ddpg_kwargs)
        self.z_dim, self.vae_beta = int(z_dim), float(vae_beta)
        self.coefs = (float(state_ent_coef), float(latent_ent_coef), float(latent_cond_ent_coef))
        self.discriminator_sign = DISCRIMINATOR_SIGNS[discriminator_sign]
        self.finetune_skill = finetune_skill
        self.eval_skill = check_eval_skill(eval_skill)
        self.reward_before_rep_update = True  # URLB: the reward comes from the losses' forward passes
        self.discriminator = mlp3(self.obs_dim, self.hidden_dim, self.z_dim).to(self.device)
        self.vae = SMMVAE(self.obs_dim + self.z_dim, int(code_dim), int(vae_hidden_dim)).to(self.device)
        self.discriminator_opt = adam(self.discriminator.parameters(), float(sp_lr))
        self.vae_opt = adam(self.vae.parameters(), float(vae_lr))
        self.trial = SkillTrial(self.z_dim)
        #: the VAE code noise of the update in progress (shared by its reward and its VAE step), else None
        self._code_noise: torch.Tensor | None = None

    # ------------------------------------------------------------------ skills
    @property
    def searching(self) -> bool:
        return not self.reward_free and self.finetune_skill == "search"

    def meta_columns(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {"skill": ((self.z_dim,), np.float32)}

    def init_meta(self, episode_step: np.ndarray, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniform one-hot skill per env; finetuning with ``search``: the trial's skills (:class:`SkillTrial`)."""
        if self.searching:
            index = self.trial.next_skills(np.asarray(episode_step) == 0, rng)
        else:
            index = rng.integers(0, self.z_dim, len(episode_step))
        return {"skill": np.eye(self.z_dim, dtype=np.float32)[index]}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        """With ``search`` the best-return skill tried so far, else ``eval_skill`` (:func:`eval_skill_index`)."""
        index = self.trial.best() if self.searching else eval_skill_index(self.eval_skill, self.z_dim, self.env_step)
        return {"skill": np.repeat(np.eye(self.z_dim, dtype=np.float32)[index:index + 1], n, axis=0)}

    def observe_reward(self, reward: np.ndarray) -> None:
        if self.searching:
            self.trial.observe(reward)

    def warmup_actions(self, obs: np.ndarray, meta: dict[str, np.ndarray]) -> np.ndarray | None:
        """``search``: the trial episodes act with the pretrained actor during the seed steps too."""
        if self.searching and not self.trial.done:
            return self.act(obs, meta)[0]
        return None

    # ------------------------------------------------------------------ the intrinsic reward
    def update(self, batch) -> UpdateResult:
        """DDPG's update; in pretraining with one VAE code-noise draw for the batch, which its reward and the VAE
        step share (module docstring)."""
        if self.reward_free:
            self._code_noise = torch.randn(len(batch.obs), self.vae.code_dim, device=self.device)
        try:
            return super().update(batch)
        finally:
            self._code_noise = None

    def code_noise(self, batch) -> torch.Tensor:
        """The VAE's ``eps`` (``(B, code_dim)``): the update's shared draw inside :meth:`update`, else a fresh one."""
        if self._code_noise is not None:
            return self._code_noise
        return torch.randn(len(batch.obs), self.vae.code_dim, device=self.device)

    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of the VAE on ``[s_t, z]`` and one of the discriminator on ``CE(d(s_t), z)``."""
        vae_loss, _ = self.vae.loss_and_error(torch.cat([obs, batch.skill], dim=1), self.vae_beta,
                                              self.code_noise(batch))
        step(self.vae_opt, vae_loss)
        pred_loss, accuracy = discriminator_step(self.discriminator, self.discriminator_opt, obs, batch.skill)
        return {"train/smm_vae_loss": vae_loss.detach(), "train/smm_pred_loss": pred_loss,
                "train/smm_pred_accuracy": accuracy}

    @torch.no_grad()
    def reward_terms(self, batch, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h(s|z), h(z|s))`` per row: the VAE's squared error of ``[s_t, z]`` (one ``eps`` draw) and
        ``-log q(z|s_t)``."""
        _, h_s_z = self.vae.loss_and_error(torch.cat([obs, batch.skill], dim=1), self.vae_beta,
                                           self.code_noise(batch))
        h_z_s = F.cross_entropy(self.discriminator(obs), batch.skill.argmax(dim=1), reduction="none")
        return h_s_z, h_z_s

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``c_s h(s|z) + c_z log K + c_zs s_d h(z|s)`` (module docstring)."""
        h_s_z, h_z_s = self.reward_terms(batch, obs)
        c_s, c_z, c_zs = self.coefs
        return c_s * h_s_z + c_z * math.log(self.z_dim) + c_zs * self.discriminator_sign * h_z_s
