"""Closed-form checks of the offline algorithms' losses (TD3+BC, IQL, CQL, AWAC, one-step RL).

Critics are given fixed weights so that their values are known by hand: all weights zero and one output
bias per head (``Q_k(s, a) = b_k``), or a network that computes ``Q(s, a) = Σ_d a_d + b`` exactly
(``relu(a) - relu(-a) = a``).  Each test then recomputes the loss from its equation and compares it with
the value the algorithm reports for the same update.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from rlkit.algorithms.offline.awac import AWAC
from rlkit.algorithms.offline.common import cosine_lr_lambda, gaussian_log_prob, return_scale
from rlkit.algorithms.offline.cql import CQL
from rlkit.algorithms.offline.iql import IQL, expectile_loss
from rlkit.algorithms.offline.onestep import (
    OneStepRL,
    truncated_normal_log_prob,
    truncated_normal_mean,
    truncated_normal_sample,
)
from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.data.dataset import Dataset
from rlkit.errors import DatasetError
from rlkit.nets.mlp import EnsembleLinear
from rlkit.replay.batch import Batch
from tests.helpers import dataset_batch

OBS_DIM, ACT_DIM = 3, 2
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
SMALL = (8, 8)


def make_batch(n: int = 6, seed: int = 0, weights=None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(n, OBS_DIM, generator=g),
        action=torch.rand(n, ACT_DIM, generator=g) * 1.8 - 0.9,
        reward=torch.randn(n, generator=g),
        next_obs=torch.randn(n, OBS_DIM, generator=g),
        terminated=(torch.arange(n) % 3 == 0).float(),
        indices=torch.arange(n),
        weights=torch.ones(n) if weights is None else torch.as_tensor(weights, dtype=torch.float32),
    )


def linear_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.Linear | EnsembleLinear)]


@torch.no_grad()
def set_constant(module: nn.Module, values) -> None:
    """Zero every weight; the output bias of member ``k`` becomes ``values[k]`` (a float for an MLP)."""
    for p in module.parameters():
        p.zero_()
    last = linear_layers(module)[-1]
    last.bias.copy_(torch.as_tensor(values, dtype=torch.float32).view_as(last.bias))


@torch.no_grad()
def set_action_sum(critic: nn.Module, bias: float) -> None:
    """Make a 2-hidden-layer QEnsemble compute ``Q(s, a) = Σ_d a_d + bias`` for every member."""
    set_constant(critic, [bias] * critic.ensemble_size)
    first, second, last = linear_layers(critic)
    for d in range(ACT_DIM):
        first.weight[:, OBS_DIM + d, 2 * d] = 1.0
        first.weight[:, OBS_DIM + d, 2 * d + 1] = -1.0
        second.weight[:, 2 * d, 2 * d] = 1.0
        second.weight[:, 2 * d + 1, 2 * d + 1] = 1.0
        last.weight[:, 2 * d, 0] = 1.0
        last.weight[:, 2 * d + 1, 0] = -1.0


def test_action_sum_critic_is_exact():
    algo = AWAC(OBS_SPACE, ACT_SPACE, hidden=SMALL)
    set_action_sum(algo.critic, 0.25)
    b = make_batch()
    expected = b.action.sum(-1) + 0.25
    torch.testing.assert_close(algo.critic(b.obs, b.action), expected.expand(2, -1))


# ---------------------------------------------------------------------------------------------- helpers
def test_expectile_loss_by_hand():
    diff = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    expected = torch.tensor([0.3 * 4, 0.3 * 0.25, 0.0, 0.7 * 1, 0.7 * 9])
    torch.testing.assert_close(expectile_loss(diff, 0.7), expected)
    # τ = 0.5 is half the squared error
    torch.testing.assert_close(expectile_loss(diff, 0.5), 0.5 * diff**2)


def test_gaussian_log_prob_matches_torch():
    mean, log_std, a = torch.randn(4, 3), torch.randn(4, 3) * 0.3, torch.randn(4, 3)
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(a).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(a, mean, log_std), ref)


def test_truncated_normal_matches_scipy():
    mean = torch.tensor([[-0.8, 0.0, 0.6]], dtype=torch.float64)
    log_std = torch.tensor([[-1.0, 0.0, -0.3]], dtype=torch.float64)
    a = torch.tensor([[-0.9, 0.2, 0.99]], dtype=torch.float64)
    std = log_std.exp()
    lo, hi = (-1 - mean) / std, (1 - mean) / std
    ref_logp = stats.truncnorm.logpdf(a.numpy(), lo.numpy(), hi.numpy(), loc=mean.numpy(), scale=std.numpy())
    ref_mean = stats.truncnorm.mean(lo.numpy(), hi.numpy(), loc=mean.numpy(), scale=std.numpy())
    logp = truncated_normal_log_prob(a, mean, log_std).numpy()
    np.testing.assert_allclose(logp, ref_logp.sum(-1), rtol=1e-9)
    np.testing.assert_allclose(truncated_normal_mean(mean, log_std).numpy(), ref_mean, rtol=1e-9)
    torch.manual_seed(0)
    samples = truncated_normal_sample(mean.expand(20000, 3), log_std.expand(20000, 3))
    assert samples.abs().max() <= 1.0
    np.testing.assert_allclose(samples.mean(0).numpy(), ref_mean[0], atol=0.02)


def test_cosine_schedule_endpoints():
    f = cosine_lr_lambda(100)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert f(250) == pytest.approx(0.0)  # stays at zero after the horizon (optax), no restart


def tiny_dataset(returns_per_episode=((1.0, 2.0), (3.0, 4.0))) -> Dataset:
    rewards = np.concatenate([np.asarray(ep, dtype=np.float32) for ep in returns_per_episode])
    n = len(rewards)
    obs = np.arange(n * OBS_DIM, dtype=np.float32).reshape(n, OBS_DIM)
    timeouts = np.zeros(n, bool)
    timeouts[np.cumsum([len(ep) for ep in returns_per_episode]) - 1] = True
    return Dataset(obs, np.zeros((n, ACT_DIM), np.float32), rewards, np.zeros(n, bool), timeouts, obs + 1)


def test_reward_scale_by_return_and_shift():
    ds = tiny_dataset()  # episode returns 3 and 7
    assert return_scale(ds) == pytest.approx(1000.0 / 4.0)
    algo = IQL(OBS_SPACE, ACT_SPACE, hidden=SMALL, reward_scale_by_return=True, reward_scale=2.0,
               reward_shift=-1.0)
    algo.on_dataset(ds)
    r = torch.tensor([1.0, -2.0])
    torch.testing.assert_close(algo.transform_reward(r), r * 500.0 - 1.0)
    with pytest.raises(DatasetError, match="reward_scale_by_return=false"):
        IQL(OBS_SPACE, ACT_SPACE, hidden=SMALL, reward_scale_by_return=True).on_dataset(
            tiny_dataset(((1.0, 1.0), (2.0, 0.0))))


def test_observation_standardisation_uses_std_plus_1e3():
    ds = tiny_dataset()
    algo = TD3BC(OBS_SPACE, ACT_SPACE, hidden=SMALL)
    algo.on_dataset(ds)
    mean, std = ds.observations.mean(0), ds.observations.std(0) + 1e-3
    obs, _ = algo.critic_input(ds.observations)
    np.testing.assert_allclose(obs.numpy(), (ds.observations - mean) / std, rtol=1e-5)
    raw = IQL(OBS_SPACE, ACT_SPACE, hidden=SMALL)  # the IQL reference code does not standardise
    raw.on_dataset(ds)
    np.testing.assert_allclose(raw.critic_input(ds.observations)[0].numpy(), ds.observations)


# ---------------------------------------------------------------------------------------------- TD3+BC
@pytest.mark.parametrize("reweight_eval", [False, True])
def test_td3bc_losses_with_constant_critic(reweight_eval):
    algo = TD3BC(OBS_SPACE, ACT_SPACE, hidden=SMALL, policy_delay=1, critic_lr=0.0, alpha=2.5,
                 reweight_eval=reweight_eval)
    set_constant(algo.critic, [-1.5, 0.7])
    set_constant(algo.critic_target, [0.4, 0.9])
    w = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.2, 0.8])
    b = make_batch(weights=w)
    pi0 = torch.tanh(algo.actor(b.obs)).detach()
    m = algo.update(b).metrics

    y = b.reward + 0.99 * (1 - b.terminated) * 0.4
    c = w if reweight_eval else torch.ones_like(w)
    critic = (c * (-1.5 - y) ** 2).mean() + (c * (0.7 - y) ** 2).mean()
    torch.testing.assert_close(m["train/critic_loss"], critic)
    # λ = α / mean|Q1| = 2.5 / 1.5, so -λ mean(w Q1) = +2.5 mean(w); BC term mean_i w_i mean_d (π - a)²
    bc = (w * ((pi0 - b.action) ** 2).mean(-1)).mean()
    torch.testing.assert_close(m["train/lambda"], torch.tensor(2.5 / 1.5))
    torch.testing.assert_close(m["train/bc_loss"], bc)
    torch.testing.assert_close(m["train/actor_loss"], 2.5 * w.mean() + bc)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_td3_without_bc_for_the_divergence_study(optimizer):
    # bc_coef = 0 (SEEM's TD3 on offline data): the actor loss is the Q term alone; the BC term is still logged
    algo = TD3BC(OBS_SPACE, ACT_SPACE, hidden=SMALL, policy_delay=1, alpha=2.5, bc_coef=0.0, optimizer=optimizer)
    set_constant(algo.critic, [-1.5, 0.7])
    w = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.2, 0.8])
    m = algo.update(make_batch(weights=w)).metrics
    torch.testing.assert_close(m["train/actor_loss"], 2.5 * w.mean())
    assert m["train/bc_loss"] > 0
    assert isinstance(algo.critic_opt, torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)


# ---------------------------------------------------------------------------------------------- IQL
@pytest.mark.parametrize("reweight_eval", [False, True])
def test_iql_losses_and_capped_weight(reweight_eval):
    algo = IQL(OBS_SPACE, ACT_SPACE, hidden=SMALL, value_lr=0.0, temperature=3.0, expectile=0.7,
               orthogonal_init=False, reweight_eval=reweight_eval)
    set_constant(algo.critic, [0.3, -0.2])
    set_constant(algo.critic_target, [1.5, 2.0])
    set_constant(algo.value, 0.5)
    w = torch.tensor([0.5, 2.0, 6.0, 10.0, 1.0, 0.1])
    b = make_batch(weights=w)
    action = b.action.clamp(-1 + 1e-5, 1 - 1e-5)
    logp0 = algo.actor.log_prob(b.obs, action).detach()
    m = algo.update(b).metrics

    c = w if reweight_eval else torch.ones_like(w)
    u = torch.full_like(w, 1.5 - 0.5)  # min target Q - V
    torch.testing.assert_close(m["train/value_loss"], (c * 0.7 * u**2).mean())
    # the priority multiplies exp(β A) inside the cap: exp(3) w = [10.0, 40.2, 120.5, 200.9, 20.1, 2.0]
    adv_weight = (math.exp(3.0) * w).clamp(max=100.0)
    assert (adv_weight == 100.0).sum() == 2
    torch.testing.assert_close(m["train/adv_weight_mean"], adv_weight.mean())
    torch.testing.assert_close(m["train/actor_loss"], -(adv_weight * logp0).mean())
    y = b.reward + 0.99 * (1 - b.terminated) * 0.5
    torch.testing.assert_close(m["train/critic_loss"], (c * ((0.3 - y) ** 2 + (-0.2 - y) ** 2)).mean())


# ---------------------------------------------------------------------------------------------- CQL
def _cql(**kw) -> CQL:
    algo = CQL(OBS_SPACE, ACT_SPACE, actor_hidden=SMALL, critic_hidden=SMALL, orthogonal_init=False,
               cql_n_actions=4, cql_alpha=5.0, **kw)
    set_constant(algo.critic, [0.6, -0.4])
    set_constant(algo.critic_target, [1.0, 0.2])
    return algo


def _td(b: Batch) -> torch.Tensor:
    y = b.reward + 0.99 * (1 - b.terminated) * 0.2
    return ((0.6 - y) ** 2).mean() + ((-0.4 - y) ** 2).mean()


@pytest.mark.parametrize("temp", [1.0, 0.5])
def test_cql_plain_logsumexp_gap_is_log_of_sample_count(temp):
    algo = _cql(cql_importance_sample=False, cql_temp=temp)
    b = make_batch()
    m = algo.update(b).metrics
    n = 4
    gap = temp * math.log(3 * n + 1)  # logsumexp over 3n + 1 equal values, minus the data value
    torch.testing.assert_close(m["train/cql_gap"], torch.tensor(gap))
    torch.testing.assert_close(m["train/td_loss"], _td(b))
    torch.testing.assert_close(m["train/critic_loss"], _td(b) + 5.0 * 2 * gap)


def test_cql_importance_sampled_gap_with_known_log_probs():
    algo = _cql(cql_importance_sample=True)
    log_p = 0.5

    def fixed_samples(obs, n, noise=None):  # n actions per state with log π = 0.5
        return torch.zeros(n, obs.shape[0], ACT_DIM), torch.full((n, obs.shape[0]), log_p)

    algo._sample = fixed_samples
    b = make_batch()
    m = algo.update(b).metrics
    n = 4
    # [Q - log 0.5^|A|] * n, [Q - log π] * 2n  ->  gap = log(n 2^|A| + 2n e^{-log π})
    gap = math.log(n * 2**ACT_DIM + 2 * n * math.exp(-log_p))
    torch.testing.assert_close(m["train/cql_gap"], torch.tensor(gap))
    torch.testing.assert_close(m["train/critic_loss"], _td(b) + 5.0 * 2 * gap)


@pytest.mark.parametrize("target_gap, direction", [(1.0, +1), (10.0, -1)])
def test_cql_lagrange_penalty_and_multiplier_direction(target_gap, direction):
    algo = _cql(cql_importance_sample=False, lagrange=True, target_action_gap=target_gap)
    b = make_batch()
    m = algo.update(b).metrics
    gap = math.log(13)
    expected = _td(b) + math.e * 5.0 * 2 * (gap - target_gap)  # α' = exp(1) at the start
    torch.testing.assert_close(m["train/critic_loss"], expected)
    # α' grows while the measured gap exceeds the target and shrinks otherwise
    assert direction * (algo.log_alpha_prime.item() - 1.0) > 0


def test_cql_actor_loss_is_weighted_sac_objective():
    algo = _cql(cql_importance_sample=False)
    w = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.2, 0.8])
    b = make_batch(weights=w)
    torch.manual_seed(3)
    _, logp = algo.actor(b.obs).rsample_with_log_prob()
    torch.manual_seed(3)
    m = algo.update(b).metrics
    # α = 1 at the start, min_k Q_k = -0.4 everywhere
    torch.testing.assert_close(m["train/actor_loss"], (w * (logp.detach() + 0.4)).mean())


@pytest.mark.parametrize("per_member", [False, True])
def test_cql_critic_loss_matches_a_loop_reference(monkeypatch, per_member):
    """The batched critic loss (one stacked critic call over data, uniform and policy actions) equals CQL(H)
    eq. 4 computed state by state, member by member, with the importance-sampled log-sum-exp, in float64
    and with random weights; ``per_member`` routes the stacked critic through its per-member ``addmm`` path.
    Draws are replayed from the same seed in the order the update takes them: the target action, the
    uniform actions, then the policy actions (``_sample`` equals the actor on n copies of each state)."""
    import rlkit.nets.mlp as mlp

    monkeypatch.setattr(mlp, "PER_MEMBER_ELEMENTS", 0 if per_member else mlp.PER_MEMBER_ELEMENTS)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        n, alpha_cql = 3, 5.0
        algo = CQL(OBS_SPACE, ACT_SPACE, actor_hidden=SMALL, critic_hidden=SMALL, cql_n_actions=n,
                   cql_alpha=alpha_cql, normalize_obs=False)
        with torch.no_grad():  # move the critics away from the near-zero output layer of the init
            for net in (algo.critic, algo.critic_target):
                for prm in net.parameters():
                    prm.normal_(0.0, 0.7)
        b = make_batch(5)
        obs, act, nobs = b.obs.double(), b.action.double(), b.next_obs.double()
        rew, not_done = b.reward.double(), 1.0 - b.terminated.double()
        torch.manual_seed(7)
        loss, parts = algo.critic_loss(obs, act, nobs, rew, not_done, 1.0, b)

        torch.manual_seed(7)
        with torch.no_grad():
            next_action, _ = algo.actor(nobs).rsample_with_log_prob()
            rand = torch.empty(n, *act.shape).uniform_(-1.0, 1.0)
            both = torch.cat([obs, nobs])
            pi, pi_logp = algo.actor(both.expand(n, *both.shape)).rsample_with_log_prob()
        cur, nxt = pi[:, :5], pi[:, 5:]
        cur_logp, nxt_logp = pi_logp[:, :5], pi_logp[:, 5:]
        members = [algo.critic.member(k) for k in range(2)]
        targets = [algo.critic_target.member(k) for k in range(2)]

        def q(net, s, a):
            return net(s.view(1, -1), a.view(1, -1))[0]

        log_unif = ACT_DIM * math.log(0.5)
        expected = torch.zeros(())
        for k, net in enumerate(members):
            td, gap = torch.zeros(()), torch.zeros(())
            for i in range(5):
                y = rew[i] + 0.99 * not_done[i] * min(q(t, nobs[i], next_action[i]) for t in targets)
                q_data = q(net, obs[i], act[i])
                terms = ([q(net, obs[i], rand[j, i]) - log_unif for j in range(n)]
                         + [q(net, obs[i], nxt[j, i]) - nxt_logp[j, i] for j in range(n)]
                         + [q(net, obs[i], cur[j, i]) - cur_logp[j, i] for j in range(n)])
                td = td + (q_data - y.detach()) ** 2 / 5
                gap = gap + (torch.logsumexp(torch.stack(terms), 0) - q_data) / 5
            expected = expected + td + alpha_cql * gap
            torch.testing.assert_close(parts["cql_gap"][k], gap, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
        grads = torch.autograd.grad(loss, list(algo.critic.parameters()))
        ref_grads = torch.autograd.grad(expected, list(algo.critic.parameters()))
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-10)
    finally:
        torch.set_default_dtype(dtype)


# ---------------------------------------------------------------------------------------------- AWAC
def test_awac_advantage_weights_and_losses():
    algo = AWAC(OBS_SPACE, ACT_SPACE, hidden=SMALL, critic_lr=0.0, awac_lambda=0.25)
    set_action_sum(algo.critic, 0.3)
    set_action_sum(algo.critic_target, 0.3)
    algo.actor.sample = lambda obs, noise=None: torch.zeros(obs.shape[0], ACT_DIM)  # V(s) = Q(s, 0) = 0.3
    w = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.2, 0.8])
    b = make_batch(weights=w)
    b.action[0] = torch.tensor([0.9, 0.8])  # advantage 1.7 -> exp(6.8) = 898, capped at 100
    logp0 = algo.actor.log_prob(b.obs, b.action).detach()
    m = algo.update(b).metrics

    y = b.reward + 0.99 * (1 - b.terminated) * 0.3
    q = b.action.sum(-1) + 0.3
    torch.testing.assert_close(m["train/critic_loss"], 2 * ((q - y) ** 2).mean())
    adv_weight = torch.exp(b.action.sum(-1) / 0.25).clamp(max=100.0)
    assert adv_weight[0] == 100.0
    torch.testing.assert_close(m["train/adv_weight_mean"], adv_weight.mean())
    torch.testing.assert_close(m["train/actor_loss"], -(w * adv_weight * logp0).mean())


def test_awac_released_variant_batch_softmax_weights_from_the_critic_before_its_step():
    """variant=released (rail-berkeley/rlkit awac_trainer.py): w = B softmax(A / β), no cap, A from the critic
    before its step (critic_lr=1 moves the critic a lot in this very update), policy N(tanh f(s), σ²)."""
    algo = AWAC(OBS_SPACE, ACT_SPACE, hidden=SMALL, critic_lr=1.0, variant="released", awac_beta=2.0)
    set_action_sum(algo.critic, 0.3)
    set_action_sum(algo.critic_target, 0.3)
    algo.actor.sample = lambda obs: torch.zeros(obs.shape[0], ACT_DIM)  # V(s) = Q(s, 0) = 0.3; a' = 0
    w = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.2, 0.8])
    b = make_batch(weights=w)
    b.action[0] = torch.tensor([0.9, 0.8])  # A = 1.7: exp(1.7 / 2) is not capped in a softmax
    logp0 = algo.actor.log_prob(b.obs, b.action).detach()
    m = algo.update(b).metrics

    y = b.reward + 0.99 * (1 - b.terminated) * 0.3
    q = b.action.sum(-1) + 0.3
    torch.testing.assert_close(m["train/critic_loss"], 2 * ((q - y) ** 2).mean())
    adv_weight = len(w) * torch.softmax(b.action.sum(-1) / 2.0, dim=0)
    torch.testing.assert_close(m["train/adv_weight_max"], adv_weight.max())
    torch.testing.assert_close(m["train/actor_loss"], -(w * adv_weight * logp0).mean())


def test_awac_released_policy_has_a_tanh_mean_and_a_sigmoid_bounded_log_std():
    algo = AWAC(OBS_SPACE, ACT_SPACE, hidden=SMALL, variant="released")
    with torch.no_grad():
        algo.actor.log_std_logits.copy_(torch.tensor([-50.0, 50.0]))
        for p in algo.actor.trunk.parameters():
            p.mul_(100.0)
    mean, log_std = algo.actor(torch.randn(64, OBS_DIM))
    assert mean.abs().max() <= 1.0 and mean.abs().max() > 0.99
    torch.testing.assert_close(log_std[0], torch.tensor([-6.0, 0.0]))


# ---------------------------------------------------------------------------------------------- one-step RL
def sarsa_dataset() -> Dataset:
    n = 12
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(n + 1, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-0.9, 0.9, size=(n, ACT_DIM)).astype(np.float32)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    timeouts[5], terminals[8] = True, True  # row 5 is cut (no next action); row 8 ends the episode
    return Dataset(obs[:-1], actions, rng.normal(size=n).astype(np.float32), terminals, timeouts, obs[1:])


@pytest.mark.parametrize("reweight_eval", [False, True])
def test_sarsa_target_uses_dataset_next_action(reweight_eval):
    ds = sarsa_dataset()
    algo = OneStepRL(OBS_SPACE, ACT_SPACE, hidden=SMALL, bc_steps=0, q_steps=5, policy_steps=1,
                     reweight_eval=reweight_eval)
    algo.on_dataset(ds)
    set_action_sum(algo.critic, 0.1)
    set_action_sum(algo.critic_target, -0.2)
    rows = np.array([0, 4, 5, 8, 11])
    w = np.array([0.5, 2.0, 3.0, 1.0, 4.0], np.float32)
    m = algo.update(dataset_batch(ds, rows, w)).metrics

    a, a_next = ds.actions[rows], ds.actions[np.minimum(rows + 1, len(ds) - 1)]
    q = a.sum(-1) + 0.1
    y = ds.rewards[rows] + 0.99 * (1 - ds.terminals[rows]) * (a_next.sum(-1) - 0.2)
    valid = np.array([1, 1, 0, 1, 0], np.float32)  # timeout row 5 and the last row have no a'
    c = w if reweight_eval else 1.0
    expected = (valid * c * (q - y) ** 2).sum() / valid.sum()
    assert m["train/critic_loss"].item() == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(algo._sarsa["next_action"][:-1].numpy(), ds.actions[1:])


def test_onestep_policy_starts_from_behaviour_and_regresses_weighted_log_likelihood():
    ds = sarsa_dataset()
    algo = OneStepRL(OBS_SPACE, ACT_SPACE, hidden=SMALL, bc_steps=2, q_steps=1, policy_steps=3,
                     temperature=0.0)
    algo.on_dataset(ds)
    rows = np.arange(6)
    w = np.array([0.5, 2.0, 3.0, 1.0, 4.0, 0.1], np.float32)
    for _ in range(2):
        algo.update(dataset_batch(ds, rows))
    b = dataset_batch(ds, rows, w)
    mean, log_std = algo.behavior(b.obs)
    logp = truncated_normal_log_prob(b.action.clamp(-1 + 1e-4, 1 - 1e-4), mean, log_std).detach()
    m = algo.update(b).metrics  # first policy update: π ← β̂, weights exp(0 · A) = 1
    torch.testing.assert_close(m["train/actor_loss"], -(torch.as_tensor(w) * logp).mean())
    torch.testing.assert_close(m["train/adv_weight_mean"], torch.tensor(1.0))


def test_awac_released_preset_composes_the_authors_settings(compose_cfg):
    from rlkit.regimes.base import build_algorithm

    cfg = compose_cfg("algo=awac", "algo.variant=released", "env=hopper-medium")
    assert cfg.train.batch_size == 1024 and cfg.algo.awac_beta == 2.0 and not cfg.algo.normalize_obs
    algo = build_algorithm(cfg, OBS_SPACE, ACT_SPACE, torch.device("cpu"))
    assert [m.out_features for m in algo.actor.trunk.modules() if isinstance(m, nn.Linear)] == [256] * 4 + [ACT_DIM]
    assert algo.actor_opt.param_groups[0]["weight_decay"] == 1e-4
    assert compose_cfg("algo=awac", "env=hopper-medium").train.batch_size == 256  # the CORL reading stays default
