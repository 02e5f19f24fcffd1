"""Behaviour of the offline algorithms as units: configs, LayerNorm option, exact resume, sample weights,
decoupled batches, policy delay / schedules / phases, acting, and finite training on a real buffer."""

from __future__ import annotations

import copy
import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.algorithms.offline.awac import AWAC
from rlkit.algorithms.offline.cql import CQL
from rlkit.algorithms.offline.iql import IQL
from rlkit.algorithms.offline.onestep import OneStepRL
from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.data.dataset import Dataset
from rlkit.nets.mlp import EnsembleLayerNorm
from rlkit.replay import ColumnarStorage, ReplayBuffer, make_sampler
from rlkit.replay.batch import Batch
from tests.helpers import dataset_batch

OBS_DIM, ACT_DIM, N = 4, 2, 400
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
H = (32, 32)

FACTORIES = {
    "td3bc": lambda **kw: TD3BC(OBS_SPACE, ACT_SPACE, hidden=H, **kw),
    "iql": lambda **kw: IQL(OBS_SPACE, ACT_SPACE, hidden=H, **{"max_steps": 1000, **kw}),
    "cql": lambda **kw: CQL(OBS_SPACE, ACT_SPACE, actor_hidden=H, critic_hidden=H, cql_n_actions=3, **kw),
    "awac": lambda **kw: AWAC(OBS_SPACE, ACT_SPACE, hidden=H, **kw),
    "onestep": lambda **kw: OneStepRL(OBS_SPACE, ACT_SPACE, hidden=H, **{
        "bc_steps": 2, "q_steps": 3, "policy_steps": 50, **kw}),
}
#: metric keys of the policy terms and of the evaluation (critic / value / behaviour) terms
POLICY_KEYS = {"td3bc": ["train/actor_loss", "train/bc_loss"], "iql": ["train/actor_loss"],
               "cql": ["train/actor_loss"], "awac": ["train/actor_loss"], "onestep": ["train/actor_loss"]}
EVAL_KEYS = {"td3bc": ["train/critic_loss"], "iql": ["train/value_loss", "train/critic_loss"],
             "cql": ["train/critic_loss", "train/td_loss", "train/cql_gap"], "awac": ["train/critic_loss"],
             "onestep": ["train/critic_loss", "train/bc_loss"]}
#: keyword arguments freezing the networks the policy term reads, so that it depends on its own batch only
FREEZE_EVAL = {"td3bc": {"critic_lr": 0.0}, "iql": {"value_lr": 0.0}, "cql": {}, "awac": {"critic_lr": 0.0},
               "onestep": {"critic_lr": 0.0, "behavior_lr": 0.0}}


def random_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    obs = (rng.normal(size=(N + 1, OBS_DIM)) * 2 + 1).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(N, ACT_DIM)).astype(np.float32)
    rewards = (obs[:-1, 0] - actions[:, 0] ** 2).astype(np.float32)
    terminals = np.zeros(N, bool)
    terminals[rng.choice(N, 4, replace=False)] = True
    timeouts = np.zeros(N, bool)
    timeouts[49::50] = True
    return Dataset(obs[:-1], actions, rewards, terminals, timeouts, obs[1:])


def make_algo(name: str, dataset: Dataset | None = None, seed: int = 0, **kw):
    torch.manual_seed(seed)
    algo = FACTORIES[name](**kw)
    algo.on_dataset(dataset if dataset is not None else random_dataset())
    return algo


def updates_until_policy_term(name: str) -> int:
    """Updates to run before the one whose metrics contain the policy term (one-step RL: its phase 1)."""
    return 3 if name == "onestep" else 0


def run(algo, batches) -> dict[str, torch.Tensor]:
    metrics = {}
    for b in batches:
        metrics = algo.update(b).metrics
    return metrics


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", list(FACTORIES))
def test_yaml_config_builds_the_algorithm(compose_cfg, name):
    from rlkit.regimes.base import build_algorithm

    cfg = compose_cfg(f"algo={name}", "env=hopper-medium")
    algo = build_algorithm(cfg, OBS_SPACE, ACT_SPACE, torch.device("cpu"))
    assert algo.regimes[0] == "offline"
    assert type(algo).__name__.lower().startswith(name[:3])


def test_family_defaults_and_interpolated_schedule(compose_cfg):
    cfg = compose_cfg("algo=iql", "env=hopper-medium", "train.steps=1234")
    assert cfg.algo.reward_scale_by_return is True and cfg.algo.max_steps == 1234
    ant = compose_cfg("algo=iql", "env=hopper-medium", "env.family=antmaze")
    assert (ant.algo.expectile, ant.algo.temperature, ant.algo.reward_shift) == (0.9, 10.0, -1.0)
    assert ant.algo.reward_scale_by_return is False
    cql = compose_cfg("algo=cql", "env=hopper-medium", "env.family=antmaze")
    assert cql.algo.lagrange is True and list(cql.algo.critic_hidden) == [256] * 5


# ---------------------------------------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("layernorm", [False, True])
def test_critic_layernorm_only_in_critics(name, layernorm):
    algo = make_algo(name, critic_layernorm=layernorm)
    layers = list(algo.critic.net)
    norms = [i for i, layer in enumerate(layers) if isinstance(layer, EnsembleLayerNorm)]
    assert len(norms) == (len(H) if layernorm else 0)  # one per hidden layer, both heads
    for i in norms:  # after the hidden Linear, before the activation
        assert isinstance(layers[i + 1], nn.ReLU) and layers[i - 1].__class__.__name__ == "EnsembleLinear"
    actors = [getattr(algo, a) for a in ("actor", "behavior", "policy") if hasattr(algo, a)]
    for actor in actors:
        assert not any(isinstance(m, nn.LayerNorm | EnsembleLayerNorm) for m in actor.modules())
    if name == "iql":
        assert any(isinstance(m, nn.LayerNorm) for m in algo.value.modules()) == layernorm


# ---------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("name", list(FACTORIES))
def test_state_dict_round_trip_gives_identical_next_update(name):
    ds = random_dataset()
    rng = np.random.default_rng(1)
    batches = [dataset_batch(ds, rng.integers(0, N, 16)) for _ in range(5)]
    algo = make_algo(name, ds, seed=0)
    run(algo, batches[:3])  # 3 updates: TD3+BC's next update is an actor step, one-step RL's a policy step
    buffer = io.BytesIO()
    torch.save(algo.state_dict(), buffer)
    buffer.seek(0)
    restored = make_algo(name, ds, seed=123)  # different initial weights
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    for b in batches[3:]:
        torch.manual_seed(7)
        m1 = algo.update(b).metrics
        torch.manual_seed(7)
        m2 = restored.update(b).metrics
        assert m1.keys() == m2.keys()
        for key in m1:
            torch.testing.assert_close(torch.as_tensor(m1[key]), torch.as_tensor(m2[key]), rtol=0, atol=0)
    flat1, flat2 = flatten(algo.state_dict()), flatten(restored.state_dict())
    assert flat1.keys() == flat2.keys()
    for key, value in flat1.items():
        assert torch.equal(value, flat2[key]) if isinstance(value, torch.Tensor) else value == flat2[key], key


def flatten(state, prefix: str = "") -> dict:
    """Nested state dicts (modules, optimizers) as one flat ``{path: value}`` mapping."""
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("name", list(FACTORIES))
def test_updates_reduce_the_losses_on_a_fixed_batch(name):
    ds = random_dataset()
    algo = make_algo(name, ds, **({"bc_steps": 30, "q_steps": 30, "policy_steps": 30} if name == "onestep"
                                  else {}))
    b = dataset_batch(ds, np.arange(64))
    keys = {"td3bc": ["train/critic_loss", "train/bc_loss"], "iql": ["train/value_loss", "train/critic_loss"],
            "cql": ["train/critic_loss"], "awac": ["train/critic_loss", "train/actor_loss"],
            "onestep": ["train/critic_loss", "train/bc_loss"]}[name]
    history = [algo.update(b).metrics for _ in range(30)]
    for key in keys:
        values = [float(m[key]) for m in history if key in m]
        assert values[-1] < values[0], (key, values[0], values[-1])
    if name == "onestep":  # the policy stage: the weighted log-likelihood rises on its own batch
        policy = [float(algo.update(b).metrics["train/actor_loss"]) for _ in range(30)]
        assert policy[-1] < policy[0]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_training_from_a_replay_buffer_stays_finite(name):
    ds = random_dataset()
    algo = make_algo(name, ds, **({"bc_steps": 40, "q_steps": 60, "policy_steps": 60} if name == "onestep"
                                  else {}))
    buffer = ReplayBuffer(ColumnarStorage.from_arrays(ds.columns()), make_sampler("uniform", seed=0))
    for _ in range(120):
        metrics = algo.update(buffer.sample(32)).metrics
        for key, value in metrics.items():
            assert np.isfinite(float(value)), key
    assert all(torch.isfinite(p).all() for p in algo.state_dict().values() if isinstance(p, torch.Tensor))


# ---------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("reweight_eval", [False, True])
def test_weights_scale_exactly_the_documented_terms(name, reweight_eval):
    """Constant weights k: policy terms scale by k; evaluation terms only with reweight_eval."""
    ds = random_dataset()
    rng = np.random.default_rng(2)
    rows = [rng.integers(0, N, 16) for _ in range(updates_until_policy_term(name) + 1)]
    k = 0.5
    extra = {"td3bc": {"policy_delay": 1}, "iql": {"temperature": 0.1}}.get(name, {})  # IQL: never capped
    a1 = make_algo(name, ds, reweight_eval=reweight_eval, **extra)
    a2 = make_algo(name, ds, reweight_eval=reweight_eval, **extra)  # same seed: identical networks
    torch.manual_seed(5)
    m1 = [a1.update(dataset_batch(ds, r)).metrics for r in rows]
    torch.manual_seed(5)
    m2 = [a2.update(dataset_batch(ds, r, np.full(16, k))).metrics for r in rows]
    eval_scale = k if reweight_eval else 1.0
    first_eval = m1[0], m2[0]
    for key in EVAL_KEYS[name]:
        torch.testing.assert_close(first_eval[1][key], eval_scale * first_eval[0][key])
    if reweight_eval and name == "onestep":
        return  # its policy term comes after evaluation steps that differed by the weights
    for key in POLICY_KEYS[name]:
        torch.testing.assert_close(m2[-1][key], k * m1[-1][key])


@pytest.mark.parametrize("name", list(FACTORIES))
def test_decoupled_policy_batch_feeds_only_the_policy_terms(name):
    ds = random_dataset()
    rng = np.random.default_rng(3)
    steps = updates_until_policy_term(name) + 1
    main = [dataset_batch(ds, rng.integers(0, N, 16)) for _ in range(steps)]
    prio = [dataset_batch(ds, rng.integers(0, N, 16), rng.uniform(0.5, 2.0, 16)) for _ in range(steps)]
    kw = {**FREEZE_EVAL[name], **({"policy_delay": 1} if name == "td3bc" else {})}
    decoupled, main_only, prio_only = (make_algo(name, ds, **kw) for _ in range(3))  # identical copies

    def go(algo, batches):
        torch.manual_seed(11)
        return [algo.update(b).metrics for b in batches]

    m_dec = go(decoupled, [Batch(b, policy_batch=p) for b, p in zip(main, prio)])
    m_main = go(main_only, main)
    m_prio = go(prio_only, prio)
    for key in EVAL_KEYS[name]:  # evaluation terms read the main batch
        torch.testing.assert_close(m_dec[0][key], m_main[0][key])
    for key in POLICY_KEYS[name]:  # policy terms read the prioritised batch, with its weights
        torch.testing.assert_close(m_dec[-1][key], m_prio[-1][key])
        assert not torch.allclose(m_dec[-1][key], m_main[-1][key])


# ---------------------------------------------------------------------------------------------- schedules
def test_td3bc_actor_and_targets_move_every_policy_delay_steps():
    ds = random_dataset()
    algo = make_algo("td3bc", ds, policy_delay=2)
    b = dataset_batch(ds, np.arange(32))
    for i in range(1, 5):
        before = [p.clone() for p in algo.actor.parameters()]
        target_before = [p.clone() for p in algo.critic_target.parameters()]
        m = algo.update(b).metrics
        moved = any(not torch.equal(p, q) for p, q in zip(before, algo.actor.parameters()))
        target_after = algo.critic_target.parameters()
        target_moved = any(not torch.equal(p, q) for p, q in zip(target_before, target_after))
        assert moved == target_moved == (i % 2 == 0) == ("train/actor_loss" in m)


def test_iql_actor_learning_rate_decays_by_cosine():
    ds = random_dataset()
    algo = make_algo("iql", ds, actor_lr=1e-3, max_steps=10)
    b = dataset_batch(ds, np.arange(16))
    lrs = []
    for _ in range(12):
        algo.update(b)
        lrs.append(algo.actor_opt.param_groups[0]["lr"])
    assert lrs[4] == pytest.approx(1e-3 * 0.5) and lrs[9] == pytest.approx(0.0) and lrs[11] == 0.0
    assert algo.critic_opt.param_groups[0]["lr"] == 3e-4


def test_onestep_phases():
    ds = random_dataset()
    algo = make_algo("onestep", ds, bc_steps=3, q_steps=2, policy_steps=2)
    b = dataset_batch(ds, np.arange(16))
    obs = ds.observations[:5]
    metrics = [algo.update(b).metrics for _ in range(3)]
    assert [m["train/phase"] for m in metrics] == [1.0, 1.0, 1.0]
    assert "train/critic_loss" in metrics[1] and "train/critic_loss" not in metrics[2]  # q_steps = 2
    behavior_act = algo.act(obs)[0]
    behavior_mean = algo.behavior(torch.as_tensor(obs))[0].detach().numpy()
    np.testing.assert_allclose(behavior_act, behavior_mean, rtol=1e-6)
    algo.update(b)  # first policy update: π starts as a copy of β̂, then takes one step
    assert algo.phase == 2 and not np.allclose(algo.act(obs)[0], behavior_act)
    algo.update(b)
    frozen = copy.deepcopy(algo.state_dict())
    m = algo.update(b).metrics  # phase 3: nothing moves
    assert m == {"train/phase": 3.0}
    for key, value in algo.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, frozen[key]), key


# ---------------------------------------------------------------------------------------------- acting
@pytest.mark.parametrize("name", list(FACTORIES))
def test_act_returns_env_scale_actions_and_diagnostics_use_critic_inputs(name):
    box = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 4.0], np.float32))
    cls = {"td3bc": TD3BC, "iql": IQL, "cql": CQL, "awac": AWAC, "onestep": OneStepRL}[name]
    torch.manual_seed(0)
    sizes = {"actor_hidden": H, "critic_hidden": H} if name == "cql" else {"hidden": H}
    algo = cls(OBS_SPACE, box, **sizes)
    algo.on_dataset(random_dataset())
    obs = np.random.default_rng(0).normal(size=(7, OBS_DIM)).astype(np.float32)
    action, state = algo.act(obs)
    assert action.shape == (7, ACT_DIM) and state is None
    assert (action >= box.low).all() and (action <= box.high).all()
    np.testing.assert_array_equal(algo.act(obs, deterministic=True)[0], action)
    view = algo.critic_for_diagnostics()
    q_fn, policy_fn = view.q, view.policy
    assert view.gamma == algo.gamma
    obs_in, act_in = algo.critic_input(obs, action)
    with torch.no_grad():
        pi = policy_fn(obs_in)
        np.testing.assert_allclose(algo.to_env_action(pi), action, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(act_in, pi.clamp(-1, 1), rtol=1e-5, atol=1e-6)
        assert q_fn(obs_in, act_in).shape == (7,)
        torch.testing.assert_close(q_fn(obs_in, act_in), algo.critic(obs_in, act_in)[0])


@pytest.mark.slow
def test_td3bc_compiled_losses_match_eager():
    """``compile=True`` (torch.compile of both loss functions) computes the same update (no target noise,
    whose random stream differs under inductor)."""
    ds = random_dataset()
    eager = make_algo("td3bc", ds, policy_noise=0.0)
    compiled = make_algo("td3bc", ds, policy_noise=0.0, compile=True)
    for rows in np.array_split(np.arange(64), 4):
        m1, m2 = eager.update(dataset_batch(ds, rows)).metrics, compiled.update(dataset_batch(ds, rows)).metrics
        for key in m1:
            torch.testing.assert_close(m2[key], m1[key], rtol=1e-4, atol=1e-5)
