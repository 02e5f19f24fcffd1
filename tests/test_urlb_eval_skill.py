"""DIAYN's and SMM's evaluation skill: URLB's code draws one uniform skill per evaluation (``eval()`` calls
``agent.init_meta()`` once before its episode loop); ``eval_skill=first`` keeps skill 0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.unsupervised.diayn import DIAYN
from rlkit.algorithms.unsupervised.smm import SMM
from rlkit.config import compose
from rlkit.errors import ConfigError

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SIZES = {DIAYN: dict(skill_dim=16), SMM: dict(z_dim=4, code_dim=6, vae_hidden_dim=10)}


def make(cls, **kw):
    a = cls(OBS, ACT, hidden_dim=16, lr=1e-3, **SIZES[cls], **kw)
    a.setup_urlb(reward_free=False, seed_steps=0, episode_steps=100)
    return a


def skill_at(a, env_step: int, seed: int = 0, n: int = 3) -> list[int]:
    a.env_step = env_step
    torch.manual_seed(seed)  # what rlkit.evaluation.evaluate does at the start of every evaluation
    return a.eval_meta(n)["skill"].argmax(1).tolist()


@pytest.mark.parametrize("cls", [DIAYN, SMM])
def test_random_eval_skill_is_one_uniform_skill_per_evaluation(cls):
    a = make(cls)
    skills = a.skill_dim if cls is DIAYN else a.z_dim
    draws = [skill_at(a, step) for step in range(0, 400 * 1000, 1000)]
    assert all(len(set(d)) == 1 for d in draws)  # every env of an evaluation acts with the same skill
    counts = np.bincount([d[0] for d in draws], minlength=skills)
    assert len(counts) == skills and counts.min() > 0  # every skill is drawn; roughly uniform
    assert counts.max() < 3 * 400 / skills
    assert skill_at(a, 5000) == skill_at(a, 5000)  # reproducible: same evaluation seed and step, same skill


@pytest.mark.parametrize("cls", [DIAYN, SMM])
def test_first_eval_skill_is_skill_zero(cls):
    a = make(cls, eval_skill="first")
    assert {tuple(skill_at(a, step)) for step in range(0, 50_000, 1000)} == {(0, 0, 0)}


@pytest.mark.parametrize("cls", [DIAYN, SMM])
def test_unknown_eval_skill_is_refused(cls):
    with pytest.raises(ConfigError, match="eval_skill"):
        make(cls, eval_skill="best")


@pytest.mark.parametrize("algo", ["diayn", "smm"])
def test_config_default_is_urlbs_code(algo):
    assert compose([f"algo={algo}", "env=urlb-walker"]).algo.eval_skill == "random"
