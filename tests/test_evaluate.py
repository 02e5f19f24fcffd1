"""The evaluation loop against a plain single-env reference, and its seeding guarantees."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit import envs
from rlkit.algorithm import Algorithm
from rlkit.evaluation.evaluate import evaluate


class LinearPolicy(Algorithm):
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


class ConstantPolicy(Algorithm):
    """Every sub-env gets the same action vector ``value`` (hopper: 3 torques)."""

    device = torch.device("cpu")

    def __init__(self, value: float, action_dim: int = 3) -> None:
        self.action = np.full(action_dim, value, dtype=np.float32)

    def act(self, obs, state=None, deterministic=True):
        return np.tile(self.action, (len(obs), 1)), state


def test_normalized_scores_use_the_table():
    venv = envs.make_vector("hopper", 2, autoreset=False)
    result = evaluate(ConstantPolicy(0.0), venv, episodes=2, seed=0, score_table="d4rl", score_task="hopper")
    expected = 100 * (result.returns + 20.272305) / (3234.3 + 20.272305)
    np.testing.assert_allclose(result.normalized, expected)
    assert "eval/normalized_score" in result.metrics()


def test_more_envs_than_episodes_with_early_terminations():
    # hopper terminates early under full torque; idle sub-envs (3 envs, 1 episode) must be handled
    venv = envs.make_vector("hopper", 3, autoreset=False)
    result = evaluate(ConstantPolicy(1.0), venv, episodes=1, seed=5)
    assert len(result.returns) == 1 and result.lengths[0] < 1000


class CartPoleLinear(Algorithm):
    """A fixed linear CartPole controller, push right iff w . obs > 0. Its episode lengths depend on the
    start state: 25-52 steps with the default w, 89-500 (bimodal) with w = (0, -0.2, 1, 0.1)."""

    device = torch.device("cpu")

    def __init__(self, w=(0.0, 0.0, 1.0, 0.0)) -> None:
        self.w = np.asarray(w)

    def act(self, obs, state=None, deterministic=True):
        return (obs @ self.w > 0).astype(np.int64), state


def single_episode(seed: int) -> tuple[float, int]:
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        action, _ = CartPoleLinear().act(obs[None])
        obs, reward, terminated, truncated, _ = env.step(int(action[0]))
        total, length, done = total + reward, length + 1, terminated or truncated
    return total, length


@pytest.mark.parametrize("num_envs, episodes", [(3, 8), (5, 4), (1, 3)])
def test_first_finished_protocol_matches_an_event_simulation(num_envs, episodes):
    """STORM's evaluation (released script): every sub-env keeps playing and the first ``episodes`` to end are scored.

    Reference: episodes are independent of the sub-env they run on, so the order of completions follows
    from the single-env lengths alone: sub-env i starts episode i at step 0, a finished sub-env starts the
    next unstarted episode, and completions at the same step go in sub-env order.
    """
    import heapq

    lengths = {}

    def episode(j):
        if j not in lengths:
            lengths[j] = single_episode(1000 + j)
        return lengths[j]

    queue = [(episode(i)[1], i, i) for i in range(num_envs)]  # (finish step, sub-env, episode)
    heapq.heapify(queue)
    expected, next_episode = [], num_envs
    while len(expected) < episodes:
        t, i, j = heapq.heappop(queue)
        expected.append(j)
        heapq.heappush(queue, (t + episode(next_episode)[1], i, next_episode))
        next_episode += 1

    venv = envs.make_vector("CartPole-v1", num_envs, autoreset=False)
    result = evaluate(CartPoleLinear(), venv, episodes=episodes, seed=1000, protocol="first_finished")
    assert result.extra["episode_ids"] == expected
    np.testing.assert_array_equal(result.returns, [episode(j)[0] for j in expected])
    np.testing.assert_array_equal(result.lengths, [episode(j)[1] for j in expected])

    assigned = evaluate(CartPoleLinear(), venv, episodes=episodes, seed=1000)  # the same env, reused
    assert assigned.extra["episode_ids"] == list(range(episodes))
    np.testing.assert_array_equal(assigned.lengths, [episode(j)[1] for j in range(episodes)])


def test_first_finished_favours_short_episodes():
    """Why rlkit does not default to it. With as many sub-envs as episodes, every scored episode that is
    not one of the first ``n`` ended before the ``n``-th completion, while each first-round episode it
    displaced was still running then: the scored mean length can only go down."""
    venv = envs.make_vector("CartPole-v1", 5, autoreset=False)
    gaps = []
    policy = CartPoleLinear((0.0, -0.2, 1.0, 0.1))
    for seed in range(0, 100, 20):
        first = evaluate(policy, venv, episodes=5, seed=seed, protocol="first_finished")
        assigned = evaluate(policy, venv, episodes=5, seed=seed)
        gaps.append(assigned.lengths.mean() - first.lengths.mean())
    assert min(gaps) >= 0 and max(gaps) > 0
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        evaluate(CartPoleLinear(), venv, episodes=2, seed=0, protocol="best_of")
