"""The expert critic of OAP's oracle, fitted by FQE to a shipped SAC expert (rlkit.data.expert_critic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def policies():
    from rlkit.data.expert_critic import _policies

    return _policies("hopper")


def test_mixture_policy_follows_its_two_ends(policies):
    from rlkit.data.expert_critic import MixturePolicy

    expert, medium, space = policies
    obs = np.stack([np.linspace(-0.5, 0.5, 11, dtype=np.float32) * (i + 1) for i in range(16)])
    pure = MixturePolicy(expert, medium, 1.0, 0.0, space.low, space.high, seed=0)
    np.testing.assert_allclose(pure(obs), expert.algo.act(obs, None, deterministic=True)[0], atol=1e-6)
    torch.manual_seed(5)
    reference = medium(obs)
    torch.manual_seed(5)
    np.testing.assert_array_equal(MixturePolicy(expert, medium, 0.0, 0.3, space.low, space.high, seed=0)(obs),
                                  reference)
    noisy = MixturePolicy(expert, medium, 1.0, 0.3, space.low, space.high, seed=0)(obs)
    assert (noisy >= space.low).all() and (noisy <= space.high).all()
    assert 0.1 < np.std(noisy - pure(obs)) < 0.5  # σ = 0.3 of the half range (1), clipped at the bounds


def test_fqe_with_zero_discount_regresses_the_reward(policies):
    """γ = 0: FQE's fixed point is ``E[r | s, a]``; hopper's reward is a smooth function of (s, a, s')."""
    from rlkit.data.expert_critic import collect, fit

    expert, medium, _ = policies
    data = collect("hopper", expert, medium, 2_000, seed=1, num_envs=4)
    assert data.sim_states is not None and data.size > 1_900
    torch.set_num_threads(1)
    fitted = fit(expert, data, 1_500, gamma=0.0, tau=1.0, lr=1e-3, seed=0, log_every=500)
    critic = expert.algo.critic
    critic.load_state_dict(fitted["critic"])
    with torch.no_grad():
        q = critic(torch.as_tensor(data.observations),
                   expert.algo.from_env_action(torch.as_tensor(data.actions))).numpy()
    r = data.rewards
    for k in range(q.shape[0]):
        r2 = 1 - np.mean((q[k] - r) ** 2) / np.var(r)
        assert r2 > 0.8, (k, r2)
    assert fitted["td_loss"][-1][1] < fitted["td_loss"][0][1]
