"""DIAYN -- Diversity is All You Need (Eysenbach et al. 2019, arXiv 1802.06070) as URLB runs it on states (Laskin et
al. 2021, released ``agent/diayn.py`` and ``diayn.yaml``), on the URLB DDPG backbone with the skill as input.

* Skills: one-hot ``z`` of ``skill_dim`` (16), drawn uniformly at episode starts and every
  ``update_skill_every`` (50) steps, in pretraining **and** finetuning (URLB's code keeps resampling); the
  actor and critic see ``[s, z]``.  Evaluation (``eval_skill``, :func:`eval_skill_index`): ``random`` (default,
  URLB's code) one uniform skill per evaluation, shared by its episodes; ``first``: skill 0.
* Discriminator ``q(z|s') = softmax(d(s'))``, ``d``: ``Linear -> ReLU -> Linear -> ReLU -> Linear`` (hidden
  ``hidden_dim``, orthogonal init), trained with the cross-entropy of the active skill (Adam, lr 1e-4), one step
  per update before the reward.
* Reward ``r = diayn_scale * (log q(z|s') - log(1/skill_dim))`` (``diayn_scale`` 1).

States only here.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from rlkit.algorithms.unsupervised.cic import mlp3
from rlkit.algorithms.unsupervised.ddpg import DDPG
from rlkit.algorithms.unsupervised.rnd import states_only
from rlkit.errors import ConfigError
from rlkit.optim import adam, step

EVAL_SKILLS = ("random", "first")


def check_eval_skill(eval_skill: str) -> str:
    if eval_skill not in EVAL_SKILLS:
        raise ConfigError(f"unknown algo.eval_skill '{eval_skill}'; choose one of: {', '.join(EVAL_SKILLS)}")
    return eval_skill


def eval_skill_index(eval_skill: str, skills: int, env_step: int) -> int:
    """The one-hot skill an evaluation acts with.

    ``random`` is URLB's code: ``eval()`` in ``pretrain.py`` and ``finetune.py`` calls ``meta =
    self.agent.init_meta()`` once, before its episode loop, and DIAYN's / SMM's ``init_meta`` draw a uniform
    one-hot skill (``np.random.choice``); so every evaluation draws one skill and all its episodes use it. The
    draw here comes from the evaluation's own torch stream (:func:`rlkit.evaluation.evaluate` seeds it) mixed
    with the agent's ``env_step``, so it is reproducible and differs between evaluations. ``first``: skill 0.
    """
    if eval_skill == "first":
        return 0
    stream = int(torch.randint(2**31 - 1, ()))
    return int(np.random.default_rng([stream, int(env_step)]).integers(skills))


def discriminator_step(net: torch.nn.Module, opt: torch.optim.Optimizer, inputs: torch.Tensor,
                       skill: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step of a skill discriminator ``q(z|x)`` on ``CE(q(x), z)`` for one-hot ``skill``; returns the
    detached loss and accuracy (DIAYN, Eysenbach et al. 2019, Sec. 3.2; SMM's ``q(z|s)``)."""
    logits = net(inputs)
    target = skill.argmax(dim=1)
    loss = F.cross_entropy(logits, target)
    step(opt, loss)
    return loss.detach(), (logits.detach().argmax(dim=1) == target).float().mean()


class DIAYN(DDPG):
    """DIAYN on the URLB DDPG backbone (module docstring)."""

    regimes: ClassVar[tuple[str, ...]] = ("pretrain", "finetune")
    observation: ClassVar[str] = "vector"  # states only here
    architecture_keys: ClassVar[tuple[str, ...]] = ("obs_type", "hidden_dim", "feature_dim", "skill_dim")

    def __init__(self, observation_space, action_space, device="cpu", *, skill_dim: int = 16,
                 update_skill_every: int = 50, diayn_scale: float = 1.0, eval_skill: str = "random",
                 **ddpg_kwargs: Any) -> None:
        states_only("DIAYN", ddpg_kwargs)
        self.eval_skill = check_eval_skill(eval_skill)
        super().__init__(observation_space, action_space, device, meta_dim=int(skill_dim), **ddpg_kwargs)
        self.skill_dim, self.meta_interval = int(skill_dim), int(update_skill_every)
        self.diayn_scale = float(diayn_scale)
        self.diayn = mlp3(self.obs_dim, self.hidden_dim, self.skill_dim).to(self.device)
        self.diayn_opt = adam(self.diayn.parameters(), self.lr)

    def meta_columns(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        return {"skill": ((self.skill_dim,), np.float32)}

    def init_meta(self, episode_step: np.ndarray, step: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniform one-hot skill per env (pretraining and finetuning alike, as URLB's code)."""
        n = len(episode_step)
        return {"skill": np.eye(self.skill_dim, dtype=np.float32)[rng.integers(0, self.skill_dim, n)]}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        """The evaluation's skill for all ``n`` envs (``eval_skill``: :func:`eval_skill_index`)."""
        index = eval_skill_index(self.eval_skill, self.skill_dim, self.env_step)
        return {"skill": np.repeat(np.eye(self.skill_dim, dtype=np.float32)[index:index + 1], n, axis=0)}

    def update_representation(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of the discriminator on ``CE(d(s'), z)``."""
        loss, accuracy = discriminator_step(self.diayn, self.diayn_opt, next_obs, batch.skill)
        return {"train/diayn_loss": loss, "train/diayn_accuracy": accuracy}

    @torch.no_grad()
    def intrinsic_reward(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``diayn_scale * (log q(z|s') - log(1/K))``."""
        log_q = F.log_softmax(self.diayn(next_obs), dim=1)
        chosen = log_q.gather(1, batch.skill.argmax(dim=1, keepdim=True)).squeeze(1)
        return self.diayn_scale * (chosen - math.log(1.0 / self.skill_dim))
