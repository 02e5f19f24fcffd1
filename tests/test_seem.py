"""SEEM (rlkit.diagnostics.seem) against closed forms, the TD dynamics it linearises, a per-sample-gradient
reference, and the training-time monitor's contract (schedule, fixed probe, no side effects)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.diagnostics.monitor import DiagnosticsMonitor
from rlkit.diagnostics.seem import (
    compute_seem,
    functional_critic,
    per_sample_gradients,
    seem_from_matrix,
    seem_matrix,
)
from rlkit.errors import ConfigError
from rlkit.nets import QEnsemble
from rlkit.replay.batch import Batch

GAMMA = 0.99


def numpy_seem(a: np.ndarray) -> tuple[float, float]:
    lam = np.linalg.eigvals(a).real.max()
    return lam, lam / np.linalg.norm(a)


class LinearFeatureCritic(nn.Module):
    """``Q(s, a) = wᵀ f(s, a)`` with fixed random tanh features: its per-sample gradient is exactly ``f``."""

    def __init__(self, obs_dim: int, act_dim: int, features: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(obs_dim + act_dim, features, generator=g) / (obs_dim + act_dim) ** 0.5)
        self.w = nn.Parameter(torch.randn(features, generator=g))

    def features(self, obs, act):
        return torch.tanh(torch.cat([obs, act], -1) @ self.proj)

    def forward(self, obs, act):
        return self.features(obs, act) @ self.w


def probe(n: int, obs_dim: int = 5, act_dim: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
            torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1)


def test_linear_critic_matches_closed_form_eigenvalue():
    obs, act, _, next_act = probe(24)  # n < P: A has no structural zero eigenvalues
    next_obs = 1.5 * obs  # bootstrap points "further out" along the data: a self-exciting case, SEEM > 0
    critic = LinearFeatureCritic(5, 2, features=64)
    not_done = (torch.arange(24) % 7 != 0).float()
    result = compute_seem(critic, lambda o: next_act, obs, act, next_obs, GAMMA, not_done, method="jacobian")
    f, f2 = critic.features(obs, act).double().numpy(), critic.features(next_obs, next_act).double().numpy()
    a = (GAMMA * not_done.double().numpy()[:, None] * f2 @ f.T - f @ f.T) / 64
    lam, normalized = numpy_seem(a)
    assert lam > 0.05 * np.linalg.norm(a)
    assert result.seem == pytest.approx(lam, rel=1e-5)
    assert result.seem_normalized == pytest.approx(normalized, rel=1e-5)
    assert result.frobenius == pytest.approx(np.linalg.norm(a), rel=1e-5)


def test_factored_kernel_of_a_linear_ensemble_member_is_closed_form():
    """A QEnsemble with no hidden layer is ``Q = x W + b``: the gradient is ``[x, 1]`` (P = d + 1 = 8)."""
    obs, act, next_obs, next_act = probe(6)
    q = QEnsemble(5, 2, hidden=(), ensemble_size=3)
    x, x2 = torch.cat([obs, act], -1).double().numpy(), torch.cat([next_obs, next_act], -1).double().numpy()
    a_ref = (GAMMA * (x2 @ x.T + 1) - (x @ x.T + 1)) / 8
    a = seem_matrix(functional_critic(q.member(2)), obs, act, next_obs, next_act, GAMMA, method="factored")
    np.testing.assert_allclose(a.numpy(), a_ref, rtol=1e-5, atol=1e-7)
    assert seem_from_matrix(a).seem == pytest.approx(numpy_seem(a_ref)[0], abs=1e-6 * np.linalg.norm(a_ref))


@pytest.mark.parametrize("layernorm", [False, True])
def test_factored_and_jacobian_kernels_agree(layernorm):
    torch.manual_seed(1)
    obs, act, next_obs, next_act = probe(48)
    q = QEnsemble(5, 2, hidden=(16, 12), ensemble_size=2, layernorm=layernorm)
    critic = functional_critic(q.member(1))
    not_done = (torch.rand(48) > 0.2).float()
    a_fact = seem_matrix(critic, obs, act, next_obs, next_act, GAMMA, not_done, method="factored")
    a_jac = seem_matrix(critic, obs, act, next_obs, next_act, GAMMA, not_done, method="jacobian", chunk=10)
    assert (a_fact - a_jac).abs().max() <= 1e-5 * a_jac.abs().max()
    assert seem_from_matrix(a_fact).seem == pytest.approx(seem_from_matrix(a_jac).seem, rel=1e-4, abs=1e-9)


def test_per_sample_gradients_are_member_slices_of_autograd():
    """vmap(grad) rows equal a per-sample autograd loop over the stacked ensemble, member 1's slices."""
    torch.manual_seed(2)
    obs, act, _, _ = probe(6)
    q = QEnsemble(5, 2, hidden=(8,), ensemble_size=2, layernorm=True)
    critic = functional_critic(q.member(1))
    np.testing.assert_allclose(critic(critic.params, obs, act).detach(), q(obs, act)[1].detach(), atol=1e-6)
    phi = per_sample_gradients(critic, obs, act, chunk=4)
    assert phi.shape == (6, critic.num_params)
    for i in range(6):
        grads = torch.autograd.grad(q(obs[i:i + 1], act[i:i + 1])[1].sum(), list(q.parameters()))
        ref = torch.cat([g[1].reshape(-1) for g in grads])
        torch.testing.assert_close(phi[i], ref, atol=1e-6, rtol=1e-5)


def test_terminal_transitions_leave_minus_the_gram():
    """All transitions terminal: ``A = -ΦΦᵀ/P`` is negative semi-definite, SEEM = -λ_min(ΦΦᵀ)/P <= 0."""
    obs, act, next_obs, next_act = probe(20)
    critic = functional_critic(QEnsemble(5, 2, hidden=(16,), ensemble_size=2).member(0))
    a = seem_matrix(critic, obs, act, next_obs, next_act, GAMMA, torch.zeros(20))
    phi = per_sample_gradients(critic, obs, act).double()
    gram = (phi @ phi.T).numpy() / critic.num_params
    assert seem_from_matrix(a).seem == pytest.approx(-np.linalg.eigvalsh(gram).min(), rel=1e-3, abs=1e-9)
    assert seem_from_matrix(a).seem <= 1e-12


def test_matrix_predicts_one_gradient_step_of_the_td_errors():
    """The linearisation SEEM rests on: after one step θ <- θ - η Σ_j δ_j ∇Q(x_j) (targets moving with θ),
    ``δ_new - δ ≈ η P A δ``; the residual is second order in η."""
    torch.manual_seed(3)
    obs, act, next_obs, next_act = probe(32)
    reward = torch.rand(32)
    q = QEnsemble(5, 2, hidden=(32, 32), ensemble_size=1)
    critic = functional_critic(q.member(0))

    def td_errors(params):
        return critic(params, obs, act) - reward - GAMMA * critic(params, next_obs, next_act)

    with torch.no_grad():
        delta = td_errors(critic.params)
    a = seem_matrix(critic, obs, act, next_obs, next_act, GAMMA)
    predicted = critic.num_params * (a @ delta.double())
    errors = []
    for eta in (1e-3, 5e-4):
        leaves = {k: v.clone().requires_grad_(True) for k, v in critic.params.items()}
        grads = torch.autograd.grad((critic(leaves, obs, act) * delta.detach()).sum(), list(leaves.values()))
        stepped = {k: v - eta * g for (k, v), g in zip(critic.params.items(), grads, strict=True)}
        change = (td_errors(stepped) - delta).double()
        errors.append(float((change - eta * predicted).norm() / (eta * predicted).norm()))
    assert errors[0] < 0.05
    assert errors[1] < 0.6 * errors[0]  # the error shrinks with η: a first-order match, not a coincidence


def test_non_finite_critic_gives_nan_not_an_exception():
    result = seem_from_matrix(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))
    assert np.isnan(result.seem) and np.isnan(result.seem_normalized)


# ------------------------------------------------------------------------------------------- monitor
def make_td3bc():
    from rlkit.algorithms.offline.td3bc import TD3BC

    obs_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    act_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    algo = TD3BC(obs_space, act_space, hidden=(16, 16))
    algo.obs_norm.set_stats(np.full(5, 0.5), np.full(5, 2.0))
    return algo


def raw_batch(n: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(n, 5, generator=g) * 2 + 0.5, action=torch.rand(n, 2, generator=g) * 4 - 2,
                 reward=torch.rand(n, generator=g), next_obs=torch.randn(n, 5, generator=g),
                 terminated=(torch.rand(n, generator=g) < 0.1).float(), indices=torch.arange(n))


def test_monitor_schedule_fixed_probe_and_no_side_effects():
    algo = make_td3bc()
    calls = []

    def probe_fn(n):
        calls.append(n)
        return raw_batch(n)

    monitor = DiagnosticsMonitor(algo, probe_fn, interval=10, batch=24)
    before = {k: v.clone() for k, v in algo.critic.state_dict().items()}
    rng = torch.get_rng_state()
    logged = {step: monitor.maybe_run(step - 1, step) for step in range(1, 31)}
    assert [s for s, m in logged.items() if m] == [1, 10, 20, 30]
    assert calls == [24]  # drawn once, kept
    assert all(torch.equal(before[k], v) for k, v in algo.critic.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    m = logged[10]
    for key in ("diag/seem", "diag/seem_normalized", "diag/q_mean", "diag/q_max", "diag/param_norm",
                "diag/grad_norm", "diag/q_bound", "diag/td_error", "diag/q_pi_mean"):
        assert key in m
    # resumed at step 15: evaluates at the same steps as the uninterrupted run, not at the restart
    resumed = DiagnosticsMonitor(algo, probe_fn, interval=10, batch=24)
    assert [s for s in range(16, 31) if resumed.maybe_run(s - 1, s)] == [20, 30]


def test_monitor_feeds_the_critic_its_own_input_space():
    """TD3+BC's critic sees normalised observations and actions in [-1, 1]: the monitor's Q statistics and
    SEEM must equal those computed by hand in that space."""
    algo = make_td3bc()
    batch = raw_batch(16, seed=1)
    metrics = DiagnosticsMonitor(algo, lambda n: batch, interval=5, batch=16).run()
    view = algo.critic_for_diagnostics()
    q1, policy = view.q, view.policy
    obs, act = (batch.obs - 0.5) / 2.0, batch.action / 2.0
    torch.testing.assert_close(view.inputs(batch.obs, batch.action)[1], act)
    with torch.no_grad():
        assert float(metrics["diag/q_mean"]) == pytest.approx(float(q1(obs, act).mean()), rel=1e-5)
    ref = compute_seem(q1, policy, obs, act, (batch.next_obs - 0.5) / 2.0, algo.gamma, 1 - batch.terminated)
    assert metrics["diag/seem"] == pytest.approx(ref.seem, rel=1e-6, abs=1e-12)
    assert float(metrics["diag/q_bound"]) == pytest.approx(float(batch.reward.max()) / (1 - algo.gamma), rel=1e-6)


def test_monitor_refuses_an_algorithm_without_a_critic():
    from rlkit.algorithm import Algorithm, DiagnosticsCritic

    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    class FunctionCritic(Algorithm):
        def critic_for_diagnostics(self):
            return DiagnosticsCritic(q=lambda obs, act: obs.sum(-1), policy=lambda obs: obs, gamma=0.99)

    with pytest.raises(ConfigError, match="exposes no critic"):
        DiagnosticsMonitor(Algorithm(space, space), lambda n: None, interval=10, batch=8)
    with pytest.raises(ConfigError, match="not an nn.Module"):
        DiagnosticsMonitor(FunctionCritic(space, space), lambda n: None, interval=10, batch=8)


OFFLINE = [("td3bc", "TD3BC"), ("iql", "IQL"), ("cql", "CQL"), ("awac", "AWAC"), ("onestep", "OneStepRL")]


@pytest.mark.parametrize(("module", "name"), OFFLINE)
def test_every_offline_critic_takes_the_layernorm_fix_and_the_monitor(module, name):
    """``algo.critic_layernorm=true`` (SEEM's LayerNorm fix, released code): LayerNorm after every hidden Linear of the
    critic and before its activation, none on the output layer, none in the actor; and every offline algorithm honours
    the ``critic_for_diagnostics`` contract (the monitor runs on raw batches and returns finite values)."""
    import importlib

    from rlkit.nets.mlp import EnsembleLayerNorm, EnsembleLinear

    cls = getattr(importlib.import_module(f"rlkit.algorithms.offline.{module}"), name)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    act_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    algo = cls(obs_space, act_space, critic_layernorm=True)
    kinds = [type(layer) for layer in algo.critic.net]
    linear = [i for i, k in enumerate(kinds) if k is EnsembleLinear]
    assert kinds[-1] is EnsembleLinear and len(linear) >= 2
    for i in linear[:-1]:
        assert kinds[i + 1] is EnsembleLayerNorm and not issubclass(kinds[i + 2], EnsembleLayerNorm | EnsembleLinear)
    assert EnsembleLayerNorm not in kinds[linear[-1]:]
    policies = [getattr(algo, k) for k in ("actor", "policy", "behavior")
                if isinstance(getattr(algo, k, None), nn.Module)]
    assert policies
    assert not any(isinstance(m, nn.LayerNorm | EnsembleLayerNorm) for p in policies for m in p.modules())
    metrics = DiagnosticsMonitor(algo, raw_batch, interval=1, batch=12).run()
    assert all(np.isfinite(float(v)) for v in metrics.values())
