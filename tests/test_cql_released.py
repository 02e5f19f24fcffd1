"""CQL's switches that reproduce the authors' released code (aviralkumar2907/CQL) and the algo=cql_authors
preset: the rlkit-side mechanics, checked on closed-form cases (the update-for-update check against the
reference itself is the bench ``python -m bench.fidelity --ref cql=PATH``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlkit.algorithms.offline.cql import CQL, CQLActor
from rlkit.config import compose
from rlkit.errors import ConfigError
from rlkit.nets import TanhGaussian
from rlkit.replay import Batch

OBS = spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_tanh_eps_log_prob_is_the_released_form():
    mean = torch.tensor([[0.3, -4.0]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.2]], dtype=torch.float64)
    u = torch.tensor([[0.9, -9.0]], dtype=torch.float64)
    gauss = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    released = TanhGaussian(mean, log_std, tanh_eps=1e-6)._log_prob_pre_tanh(u)
    exact = TanhGaussian(mean, log_std)._log_prob_pre_tanh(u)
    assert torch.allclose(released, gauss - torch.log(1 - torch.tanh(u) ** 2 + 1e-6).sum(-1), rtol=1e-12)
    assert torch.allclose(exact, gauss - torch.log(1 - torch.tanh(u) ** 2).sum(-1), rtol=1e-9)
    # near the ends of (-1, 1) the epsilon caps the correction: the two forms part
    assert (released - exact).abs().item() > 1.0


def test_plain_log_std_head_has_no_scale_or_offset_and_clips_at_the_floor():
    torch.manual_seed(0)
    actor = CQLActor(4, 2, (8,), log_std_affine=False, log_std_min=-5.0)
    names = {n for n, _ in actor.named_parameters()}
    assert not any(n.startswith("log_std_") for n in names)
    with torch.no_grad():
        actor.trunk[-1].bias[2:] = -30.0  # the log-std half of the last layer
        actor.trunk[-1].weight[2:] = 0.0
    assert torch.equal(actor(torch.zeros(3, 4)).log_std, torch.full((3, 2), -5.0))
    affine = CQLActor(4, 2, (8,))
    assert {"log_std_multiplier", "log_std_offset"} <= {n for n, _ in affine.named_parameters()}


def test_bc_mean_clip_applies_to_the_dataset_log_likelihood_only():
    actor = CQLActor(4, 2, (8,), log_std_affine=False, log_std_min=-5.0, bc_mean_clip=9.0)
    with torch.no_grad():
        actor.trunk[-1].weight.zero_()
        actor.trunk[-1].bias.copy_(torch.tensor([20.0, -20.0, 0.0, 0.0]))
    obs, action = torch.zeros(1, 4), torch.tensor([[0.5, -0.5]])
    expected = TanhGaussian(torch.tensor([[9.0, -9.0]]), torch.zeros(1, 2)).log_prob(action)
    assert torch.allclose(actor.log_prob(obs, action), expected)
    assert torch.equal(actor(obs).mean, torch.tensor([[20.0, -20.0]]))


def test_released_order_backpropagates_through_the_stepped_critic():
    """The policy's graph is recorded before the Q step and back-propagated after it: with a linear critic
    ``Q_k(s, a) = [s, a] W_k + b_k`` the gradient with respect to ``a`` is exactly the *stepped* ``W_k``."""
    torch.manual_seed(0)
    algo = CQL(OBS, ACT, critic_hidden=(), actor_hidden=(8,), update_order="released")
    action = torch.zeros(5, 2, requires_grad=True)
    q = algo._critic_before_step(torch.randn(5, 4), action)
    before = algo.critic.net[0].weight.detach().clone()
    loss = algo.critic(torch.randn(7, 4), torch.randn(7, 2)).pow(2).sum()  # any step of the critic
    algo.critic_opt.zero_grad()
    loss.backward()
    algo.critic_opt.step()
    after = algo.critic.net[0].weight.detach()
    assert not torch.equal(before, after)
    critic_grads = [p.grad.clone() for p in algo.critic.parameters()]
    q.sum().backward()
    expected = after[:, 4:, 0].sum(0)  # Σ_k ∂Q_k/∂a with the stepped weights
    assert torch.allclose(action.grad, expected.expand(5, 2))
    for p, g in zip(algo.critic.parameters(), critic_grads, strict=True):  # the policy's graph leaves Q alone
        assert torch.equal(p.grad, g)


def _batch(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(16, 4, generator=g), action=torch.rand(16, 2, generator=g) * 1.8 - 0.9,
                 reward=torch.randn(16, generator=g), next_obs=torch.randn(16, 4, generator=g),
                 terminated=torch.zeros(16), weights=torch.ones(16))


def _cql(order: str, **kwargs) -> CQL:
    torch.manual_seed(1)
    return CQL(OBS, ACT, actor_hidden=(16,), critic_hidden=(16,), normalize_obs=False, update_order=order,
               **kwargs)


def test_released_order_sees_the_new_alpha():
    """Frozen critic (lr 0): the orders differ only in the α the policy loss reads; released reads
    ``exp(log α)`` after α's step."""
    corl, released = _cql("corl", critic_lr=0.0), _cql("released", critic_lr=0.0)
    torch.manual_seed(2)
    m_corl = corl.update(_batch(0)).metrics
    torch.manual_seed(2)
    m_rel = released.update(_batch(0)).metrics
    assert torch.equal(corl.log_alpha, released.log_alpha)  # α's own step is the same
    assert m_corl["train/alpha"] == 1.0 and m_rel["train/alpha"] == released.log_alpha.exp()
    entropy_term = -m_rel["train/entropy"]  # mean log π
    gap = m_rel["train/actor_loss"] - m_corl["train/actor_loss"]
    assert torch.allclose(gap, (m_rel["train/alpha"] - 1.0) * entropy_term, rtol=1e-5, atol=1e-7)


def test_released_equals_corl_when_alpha_and_critic_do_not_move():
    corl = _cql("corl", critic_lr=0.0, alpha_lr=0.0)
    released = _cql("released", critic_lr=0.0, alpha_lr=0.0)
    for step in range(3):
        for algo in (corl, released):
            torch.manual_seed(10 + step)
            algo.update(_batch(step))
    for p, q in zip(corl.actor.parameters(), released.actor.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-7)


def test_bad_switch_values_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="algo.update_order='sideways'; choose corl or released"):
        CQL(OBS, ACT, update_order="sideways")
    with pytest.raises(ConfigError, match="algo.tanh_log_prob='approx'; choose exact or eps"):
        CQL(OBS, ACT, tanh_log_prob="approx")


def test_authors_preset_composes_the_released_settings():
    algo = compose(["algo=cql_authors", "env=hopper-medium"]).algo
    assert (algo.cql_alpha, algo.actor_lr, algo.critic_lr, algo.bc_steps) == (5.0, 1e-4, 3e-4, 39999)
    assert (algo.log_std_affine, algo.log_std_min, algo.tanh_log_prob, algo.bc_mean_clip) == (False, -5.0, "eps", 9.0)
    assert (algo.update_order, algo.normalize_obs, algo.released_init, algo.orthogonal_init) == (
        "released", False, True, False)
    default = compose(["algo=cql", "env=hopper-medium"]).algo
    assert (default.update_order, default.cql_alpha, default.actor_lr) == ("corl", 10.0, 3e-5)


def test_released_init_bounds_and_biases():
    torch.manual_seed(0)
    algo = CQL(OBS, ACT, actor_hidden=(64, 32), critic_hidden=(64, 32), orthogonal_init=False, released_init=True)
    actor = [m for m in algo.actor.trunk if isinstance(m, torch.nn.Linear)]
    assert actor[0].weight.abs().max() <= 1 / math.sqrt(64) and actor[1].weight.abs().max() <= 1 / math.sqrt(32)
    assert actor[0].weight.abs().max() > 0.9 / math.sqrt(64)  # the bound reads the output width, not the input's
    assert torch.all(actor[0].bias == 0.1) and torch.all(actor[1].bias == 0.1)
    assert actor[2].weight.abs().max() <= 1e-3 and actor[2].bias.abs().max() <= 1e-3
    critic = algo.critic.net
    assert torch.all(critic[0].bias == 0.1) and critic[-1].weight.abs().max() <= 3e-3
    with pytest.raises(ConfigError, match="orthogonal_init and algo.released_init are both true"):
        CQL(OBS, ACT, released_init=True)


def test_authors_preset_on_antmaze_is_the_antmaze_script():
    algo = compose(["algo=cql_authors", "env=antmaze-umaze"]).algo
    assert (algo.lagrange, algo.cql_alpha, algo.target_action_gap, algo.log_alpha_prime_init) == (True, 5.0, 1.0, 0.0)
    assert (algo.reward_scale, algo.reward_shift, algo.max_target_backup, algo.cql_clip_diff_min) == (
        4.0, -2.0, False, None)
    assert list(algo.critic_hidden) == [256, 256, 256] and algo.update_order == "released"
    cql = CQL(OBS, ACT, actor_hidden=(8,), critic_hidden=(8,), lagrange=True, log_alpha_prime_init=0.0)
    assert cql.log_alpha_prime.item() == 0.0 and CQL(OBS, ACT, actor_hidden=(8,)).log_alpha_prime.item() == 1.0
