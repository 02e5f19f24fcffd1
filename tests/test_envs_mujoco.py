"""D4RL-named MuJoCo locomotion envs: the layouts D4RL's files were recorded with."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlkit import envs
from rlkit.envs.mujoco import ANT_D4RL_DIM, ANT_STATE_DIM


@pytest.mark.parametrize("name, obs_dim, act_dim", [("hopper-medium", 11, 3), ("halfcheetah", 17, 6),
                                                    ("walker2d-medium-replay-v2", 17, 6), ("ant-expert", 111, 8)])
def test_observation_and_action_sizes_match_d4rl(name, obs_dim, act_dim):
    env = envs.make(name)
    assert env.observation_space.shape == (obs_dim,) and env.action_space.shape == (act_dim,)
    assert env.spec.max_episode_steps == 1000


def test_ant_is_d4rls_recording_layout():
    """D4RL's ant files: qpos[2:] and qvel, then 84 contact-force values that are all zero (mujoco-py
    never filled cfrc_ext), and no contact cost in the reward. The rest is Ant-v5's dynamics and reward."""
    env = envs.make("ant")
    reference = gym.make("Ant-v5", include_cfrc_ext_in_observation=False)
    obs, _ = env.reset(seed=4)
    ref_obs, _ = reference.reset(seed=4)
    assert obs.shape == (ANT_D4RL_DIM,) and not obs[ANT_STATE_DIM:].any()
    np.testing.assert_array_equal(obs[:ANT_STATE_DIM], ref_obs)
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = rng.uniform(-1, 1, 8)
        obs, reward, terminated, _, info = env.step(action)
        ref_obs, _, ref_terminated, _, ref_info = reference.step(action)
        np.testing.assert_allclose(obs[:ANT_STATE_DIM], ref_obs)
        assert not obs[ANT_STATE_DIM:].any() and terminated == ref_terminated
        assert info["reward_contact"] == 0.0
        # r = forward velocity + 1 (healthy) - 0.5 |a|^2, D4RL's Ant-v2 reward with its zero contact cost
        expected = info["x_velocity"] + 1.0 - 0.5 * float(np.square(action).sum())
        assert reward == pytest.approx(expected, rel=1e-5, abs=1e-5)
        if terminated:
            break
