"""Exact resume: a restored env continues bit-for-bit as the original.

Protocol of every test: step env A for a while, snapshot (through a pickle round trip), step A k more
steps recording everything; build a fresh env B of the same name, reset it with another seed and step it
a little, restore the snapshot, replay the same actions, and require identical observations, rewards,
terminations, truncations, the observations of resets that happen on the way (their RNG draws), and the
next ``action_space.sample()``.
"""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

from rlkit import envs
from rlkit.envs.state import get_env_state, get_vector_env_state, set_env_state, set_vector_env_state
from rlkit.errors import CheckpointError


def _advance(env, n):
    for _ in range(n):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()


def _record(env, actions):
    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((np.array(obs), reward, terminated, truncated))
        if terminated or truncated:
            out.append((np.array(env.reset()[0]), "reset"))
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize("name, kwargs, warmup, k, min_ends", [
    ("Pendulum-v1", {}, 150, 200, 1),             # pure-python env, TimeLimit of 200 crossed
    ("Hopper-v5", {}, 20, 400, 2),                # MuJoCo: terminations and RNG-drawn resets
    ("Ant-v5", {}, 30, 60, 0),                    # reads body poses before stepping (derived arrays)
    ("urlb-walker_run", {}, 900, 200, 1),         # dm_control adapter, crossing the 1000-step limit
    ("urlb-jaco_reach_top_left", {}, 200, 80, 1),  # composer env
    ("atari100k-breakout", {}, 150, 300, 0),      # ALE + own sticky actions
    ("atari-spr-ms_pacman", {"training": True}, 50, 300, 1),  # frame stack, no-ops, life-loss soft resets
])
def test_restored_env_continues_identically(name, kwargs, warmup, k, min_ends):
    a = envs.make(name, **kwargs)
    a.reset(seed=3)
    a.action_space.seed(5)
    _advance(a, warmup)
    snapshot = pickle.loads(pickle.dumps(get_env_state(a)))
    actions = [a.action_space.sample() for _ in range(k)]
    expected = _record(a, actions)
    assert sum(len(x) == 2 for x in expected) >= min_ends

    b = envs.make(name, **kwargs)
    b.reset(seed=99)
    b.action_space.seed(0)
    _advance(b, 5)
    set_env_state(b, snapshot)
    np.testing.assert_array_equal(b.action_space.sample(), actions[0])
    _assert_same(expected, _record(b, actions))


def test_atari_sticky_previous_action_is_restored():
    """Snapshot just before a sticky frame: the restored env must repeat A's executed action, not B's."""
    a = envs.make("atari100k-breakout")
    a.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(500):
        a.step(int(rng.integers(4)))
        peek = np.random.Generator(np.random.PCG64())
        peek.bit_generator.state = a.unwrapped.np_random.bit_generator.state
        if peek.random() < 0.25 and a._executed.value != 0:
            break
    snapshot = get_env_state(a)
    expected = _record(a, [0] * 30)
    b = envs.make("atari100k-breakout")
    b.reset(seed=2)
    for _ in range(20):
        b.step(0)
    assert b._executed.value == 0  # precondition: B's own previous action differs from A's
    set_env_state(b, snapshot)
    _assert_same(expected, _record(b, [0] * 30))


def test_snapshot_between_life_loss_and_soft_reset():
    a = envs.make("atari-spr-ms_pacman", training=True)
    a.reset(seed=0)
    rng = np.random.default_rng(0)
    while not a.step(int(rng.integers(a.action_space.n)))[2]:
        pass
    snapshot = get_env_state(a)
    expected = [a.reset()[0]] + [a.step(1)[0] for _ in range(3)]
    b = envs.make("atari-spr-ms_pacman", training=True)
    b.reset(seed=1)
    set_env_state(b, snapshot)
    _assert_same([expected], [[b.reset()[0]] + [b.step(1)[0] for _ in range(3)]])


def test_snapshots_are_compact():
    for name in ("Hopper-v5", "urlb-walker_run", "atari100k-pong"):
        env = envs.make(name)
        env.reset(seed=0)
        assert len(pickle.dumps(get_env_state(env))) < 40_000, name


def test_restoring_into_another_env_fails_clearly():
    a = envs.make("Hopper-v5")
    a.reset(seed=0)
    b = envs.make("Pendulum-v1")
    b.reset(seed=0)
    with pytest.raises(CheckpointError):
        set_env_state(b, get_env_state(a))
    with pytest.raises(CheckpointError):
        set_env_state(b, {"not": "a snapshot"})


@pytest.mark.parametrize("name", ["Hopper-v5", "Pendulum-v1"])
def test_vector_env_state(name):
    a = envs.make_vector(name, 3)
    a.reset(seed=1)
    a.action_space.seed(2)
    for _ in range(60):
        a.step(a.action_space.sample())
    snapshot = pickle.loads(pickle.dumps(get_vector_env_state(a)))
    actions = [a.action_space.sample() for _ in range(250)]
    expected = [a.step(x) for x in actions]

    b = envs.make_vector(name, 3)
    b.reset(seed=7)
    set_vector_env_state(b, snapshot)
    got = [b.step(x) for x in actions]
    for (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) in zip(expected, got):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(te1, te2)
        np.testing.assert_array_equal(tr1, tr2)
        if "final_obs" in i1:
            np.testing.assert_array_equal(np.stack(i1["final_obs"][i1["_final_obs"]]),
                                          np.stack(i2["final_obs"][i2["_final_obs"]]))
    assert any(te.any() or tr.any() for _, _, te, tr, _ in expected)
    with pytest.raises(CheckpointError):
        set_vector_env_state(envs.make_vector(name, 2), snapshot)


def test_vector_env_autoreset_bookkeeping():
    """Next-step autoreset: a snapshot taken right after episodes end must still reset them next step."""
    def make():
        return gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1", max_episode_steps=10)] * 2,
                                        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    a = make()
    a.reset(seed=0)
    zero = np.zeros((2, 1), np.float32)
    for _ in range(10):
        *_, truncated, _ = a.step(zero)
    assert truncated.all()
    snapshot = get_vector_env_state(a)
    expected = [a.step(zero) for _ in range(3)]
    b = make()
    b.reset(seed=5)
    set_vector_env_state(b, snapshot)
    for (o1, r1, *_), (o2, r2, *_) in zip(expected, [b.step(zero) for _ in range(3)]):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
    assert np.all(expected[0][1] == 0)  # the reset step of next-step autoreset
