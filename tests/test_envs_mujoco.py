"""D4RL-named MuJoCo locomotion envs: the dynamics and layouts D4RL's files were recorded with.

D4RL's ``-v2`` locomotion data was recorded on mujoco-py's ``<Task>-v3``; gymnasium's ``-v4`` is that env on
the maintained bindings. rlkit's envs must step exactly like it: same observations, rewards, ``terminated`` and
``truncated``, bit for bit, for every seed and action sequence, to the end of the episode.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

from rlkit import envs
from rlkit.data.collect import POLICY_DIR, load_policy
from rlkit.envs.mujoco import ANT_D4RL_DIM, ANT_STATE_DIM, model_file

V4 = {"hopper": "Hopper-v4", "walker2d": "Walker2d-v4", "halfcheetah": "HalfCheetah-v4", "ant": "Ant-v4"}
SEEDS = (0, 1, 2)


def _reference(task: str) -> gym.Env:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # gymnasium calls v4 "out of date"
        return gym.make(V4[task], **({"use_contact_forces": False} if task == "ant" else {}))


def _policy(task: str, seed: int):
    """obs -> action: the shipped medium policy (sampled actions, seeded), or for ant (none shipped) a fixed
    random linear feedback ``tanh(W obs)``, so the actions depend on the trajectory."""
    if task == "ant":
        w = np.random.default_rng(seed).normal(0, 0.3, (8, ANT_D4RL_DIM))
        return lambda obs: np.tanh(w @ obs)
    import torch

    policy = load_policy(POLICY_DIR / f"{task}-medium.pt", envs.make_vector(task, 1))
    torch.manual_seed(seed)
    return lambda obs: policy(obs[None].astype(np.float32))[0]


def _compare_episode(task: str, seed: int, act) -> int:
    env, ref = envs.make(task), _reference(task)
    obs, _ = env.reset(seed=seed)
    ref_obs, _ = ref.reset(seed=seed)
    width = ANT_STATE_DIM if task == "ant" else len(ref_obs)
    for t in range(1, 1001):
        assert obs.shape == ((ANT_D4RL_DIM,) if task == "ant" else ref_obs.shape)
        assert np.array_equal(obs[:width], ref_obs) and not obs[width:].any(), (task, seed, t)
        action = np.asarray(act(obs), np.float64)
        obs, reward, terminated, truncated, _ = env.step(action)
        ref_obs, ref_reward, ref_terminated, ref_truncated, _ = ref.step(action)
        assert (reward, terminated, truncated) == (ref_reward, ref_terminated, ref_truncated), (task, seed, t)
        if terminated or truncated:
            np.testing.assert_array_equal(obs[:width], ref_obs)
            return t
    raise AssertionError("no episode ends after 1000 steps")


@pytest.mark.parametrize("task", sorted(V4))
def test_rollouts_equal_gymnasium_v4_to_the_end_of_the_episode(task):
    rng = np.random.default_rng(7)
    space = envs.make(task).action_space
    lengths = []
    for seed in SEEDS:
        lengths.append(_compare_episode(task, seed, lambda obs: rng.uniform(space.low, space.high)))
        lengths.append(_compare_episode(task, seed, _policy(task, seed)))
    if task in ("hopper", "walker2d"):
        assert min(lengths) < 1000  # terminations were compared too, not only time limits
    if task == "halfcheetah":
        assert set(lengths) == {1000}  # the time limit ends every episode: truncated at step 1000


def test_walker2d_is_the_recording_model_not_v5():
    """D4RL's walker2d (gym's walker2d.xml, v2-v4): right foot friction 0.9, left 1.9. ``walker2d_v5.xml``
    has 1.9 on both, and observations part within tens of steps."""
    env = envs.make("walker2d")
    model = env.unwrapped.model
    friction = {name: model.geom(name).friction[0] for name in ("foot_geom", "foot_left_geom")}
    assert friction == {"foot_geom": pytest.approx(0.9), "foot_left_geom": pytest.approx(1.9)}
    assert model_file("walker2d") == "walker2d.xml"


@pytest.mark.parametrize("task", ["hopper", "walker2d"])
def test_terminal_step_pays_the_healthy_reward(task):
    """v2-v4 reward: forward velocity + 1 (healthy, also on the step that falls) - 1e-3 |a|^2 (v5 drops the 1
    on the terminal step)."""
    env = envs.make(task)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        action = rng.uniform(-1, 1, env.action_space.shape)
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == pytest.approx(info["x_velocity"] + 1.0 - 1e-3 * np.square(action).sum(), abs=1e-9)
        if terminated or truncated:
            break
    assert terminated


@pytest.mark.parametrize("name, obs_dim, act_dim", [("hopper-medium", 11, 3), ("halfcheetah", 17, 6),
                                                    ("walker2d-medium-replay-v2", 17, 6), ("ant-expert", 111, 8)])
def test_observation_and_action_sizes_match_d4rl(name, obs_dim, act_dim):
    env = envs.make(name)
    assert env.observation_space.shape == (obs_dim,) and env.action_space.shape == (act_dim,)
    assert env.spec.max_episode_steps == 1000


def test_v4_is_made_without_gymnasiums_out_of_date_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for task in V4:
            envs.make(task).close()


def test_gymnasium_ids_are_left_to_gymnasium():
    """``Walker2d-v5`` names gymnasium's env, not rlkit's task."""
    assert envs.make("Walker2d-v5").unwrapped.fullpath.endswith("walker2d_v5.xml")


def test_ant_is_d4rls_recording_layout():
    """D4RL's ant files: qpos[2:] and qvel, then 84 contact-force values that are all zero (mujoco-py
    never filled cfrc_ext), and no contact cost in the reward."""
    env = envs.make("ant")
    obs, _ = env.reset(seed=4)
    assert obs.shape == (ANT_D4RL_DIM,) and not obs[ANT_STATE_DIM:].any()
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = rng.uniform(-1, 1, 8)
        obs, reward, terminated, _, info = env.step(action)
        assert not obs[ANT_STATE_DIM:].any()
        # r = forward velocity + 1 (healthy) - 0.5 |a|^2, D4RL's Ant-v2 reward with its zero contact cost
        expected = info["x_velocity"] + 1.0 - 0.5 * float(np.square(action).sum())
        assert reward == pytest.approx(expected, rel=1e-9, abs=1e-9)
        if terminated:
            break


@pytest.mark.parametrize("task", ["ant", "walker2d"])
def test_restored_state_steps_like_the_env(task):
    """``restore_state`` / ``step_unlimited`` (OAP's env_return oracle, ``rlkit data check``) give the env's own
    observations, ant's 111-value layout included, and, restored through the previous step, its rewards (Ant's
    reward reads body positions that lag ``qpos`` by a substep after a step). ``qpos``/``qvel`` are not MuJoCo's
    whole state (the solver's warm start is not in them): agreement to solver precision, not bit for bit."""
    from rlkit.envs.restore import restore_state, step_unlimited

    env, copy = envs.make(task), envs.make(task)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    previous = None
    for _ in range(40):
        data = env.unwrapped.data
        qpos, qvel = data.qpos.copy(), data.qvel.copy()
        np.testing.assert_array_equal(restore_state(copy, qpos, qvel, previous), obs)
        action = rng.uniform(-1, 1, env.action_space.shape)
        obs, reward, terminated, _, _ = env.step(action)
        stepped, stepped_reward, stepped_terminated = step_unlimited(copy, action)
        np.testing.assert_allclose(stepped, obs, rtol=1e-6, atol=1e-6)
        assert stepped_reward == pytest.approx(reward, rel=1e-6, abs=1e-6) and stepped_terminated == terminated
        previous = (qpos, qvel, action)
        if terminated:
            break
