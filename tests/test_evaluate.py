"""The evaluation loop against a plain single-env reference, and its seeding guarantees."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from rlkit.evaluation.evaluate import evaluate


class LinearPolicy:
    """A fixed deterministic policy (a real policy, just not a learned one)."""

    device = torch.device("cpu")

    def __init__(self, gain: float) -> None:
        self.gain = gain

    def act(self, obs, state=None, deterministic=True):
        return np.clip(-self.gain * obs[:, 2:3], -2.0, 2.0).astype(np.float32), state


def reference_returns(policy, episodes, seed):
    env = gym.make("Pendulum-v1")
    out = []
    for j in range(episodes):
        obs, _ = env.reset(seed=seed + j)
        total, done = 0.0, False
        while not done:
            action, _ = policy.act(obs[None])
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += reward
            done = terminated or truncated
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("num_envs", [1, 3])
def test_matches_single_env_reference(num_envs):
    policy = LinearPolicy(0.5)
    venv = envs.make_vector("Pendulum-v1", num_envs, autoreset=False)
    result = evaluate(policy, venv, episodes=5, seed=100)
    expected = reference_returns(policy, 5, 100)
    np.testing.assert_allclose(result.returns, expected, rtol=1e-6)
    assert result.lengths.tolist() == [200] * 5
    assert result.normalized is None


def test_evaluation_does_not_touch_training_rng():
    torch.manual_seed(0)
    before = torch.get_rng_state().clone()
    venv = envs.make_vector("Pendulum-v1", 2, autoreset=False)
    evaluate(LinearPolicy(1.0), venv, episodes=2, seed=0)
    assert torch.equal(before, torch.get_rng_state())


def test_normalized_scores_use_the_table():
    venv = envs.make_vector("hopper", 2, autoreset=False)

    class Zero:
        device = torch.device("cpu")

        def act(self, obs, state=None, deterministic=True):
            return np.zeros((len(obs), 3), dtype=np.float32), state

    result = evaluate(Zero(), venv, episodes=2, seed=0, score_table="d4rl", score_task="hopper")
    expected = 100 * (result.returns + 20.272305) / (3234.3 + 20.272305)
    np.testing.assert_allclose(result.normalized, expected)
    assert "eval/normalized_score" in result.metrics()


def test_more_envs_than_episodes_with_early_terminations():
    # hopper terminates early under a zero policy; idle sub-envs (3 envs, 1 episode) must be handled
    venv = envs.make_vector("hopper", 3, autoreset=False)

    class Zero:
        device = torch.device("cpu")

        def act(self, obs, state=None, deterministic=True):
            return np.ones((len(obs), 3), dtype=np.float32), state

    result = evaluate(Zero(), venv, episodes=1, seed=5)
    assert len(result.returns) == 1 and result.lengths[0] < 1000
