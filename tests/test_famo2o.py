"""FamO2O (Wang et al. 2023): the coefficient encoding, the coefficient ranges, the universal model's capped
AWR weight, uniform offline / balance-model online coefficients, the balance loss leaving the universal
model alone, the configuration at the paper's settings, and a CPU-sized learning check (slow)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.famo2o import FamO2O, map_coefficient, sinusoidal_encoding
from rlkit.algorithms.famo2o.family import coefficient_bounds
from rlkit.config import group_options
from tests.helpers import dataset_batch

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def make(base: str = "iql", **kwargs) -> FamO2O:
    from rlkit.config import compose

    cfg = compose(["algo=famo2o", f"algo.base={base}", "env=hopper-medium-replay"])
    small = {"iql": {"hidden": [32, 32]}, "awac": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]},
             "cql": {"actor_hidden": [32, 32], "critic_hidden": [32, 32]}}
    settings = {k: dict(v) for k, v in cfg.algo.settings.items()}
    for name in settings:
        settings[name]["base_params"] = {**dict(settings[name].get("base_params") or {}), **small[name]}
    return FamO2O(OBS, ACT, base=base, settings=settings, balance_hidden=[32, 32], env_family="mujoco",
                  **kwargs)


def batch(n: int = 64, seed: int = 0):
    from rlkit.data import Dataset

    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 5)).astype(np.float32)
    ds = Dataset(observations=obs, actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                 rewards=rng.normal(size=n).astype(np.float32), terminals=np.zeros(n, dtype=bool),
                 timeouts=np.arange(n) % 16 == 15, next_observations=obs + 0.1, provenance={"id": "synthetic"})
    return ds, dataset_batch(ds, np.arange(n))


def test_encoding_matches_its_formula():
    beta = torch.tensor([0.0, 1.0, 2.5, 14.0, -0.5])
    enc = sinusoidal_encoding(beta, dim=6, base=10000.0)
    assert enc.shape == (5, 6)
    for row, b in enumerate(beta.tolist()):
        for i in range(3):
            assert enc[row, 2 * i].item() == pytest.approx(math.sin(b / 10000.0 ** (2 * i / 6)), abs=1e-6)
            assert enc[row, 2 * i + 1].item() == pytest.approx(math.cos(b / 10000.0 ** (2 * i / 6)), abs=1e-6)


@pytest.mark.parametrize("mapping", ["paper", "released_cql"])
def test_coefficients_stay_inside_their_range(mapping):
    lo, hi = coefficient_bounds((0.5, 1.5), mapping)
    assert (lo, hi) == ((0.5, 1.5) if mapping == "paper" else (-0.5, 1.5))
    u = torch.tanh(torch.cat([torch.linspace(-30, 30, 2001), torch.randn(10000) * 5]))
    beta = map_coefficient(u, (0.5, 1.5), mapping)
    assert beta.min() >= lo and beta.max() <= hi
    assert beta.min() == pytest.approx(lo, abs=1e-5) and beta.max() == pytest.approx(hi, abs=1e-5)
    algo = make("cql", beta_mapping=mapping)
    fam = algo.family
    with torch.no_grad():  # push the balance model's outputs far out: the coefficients still stay inside
        for p in fam.model.parameters():
            p.mul_(50.0)
    obs = torch.randn(512, 5) * 10
    fam.online = True
    for beta in (fam.training_coefficients(obs), fam.acting_coefficients(obs), fam.sample(obs)[0]):
        assert beta.min() >= lo and beta.max() <= hi


def test_universal_model_weight_is_capped_at_100():
    algo = make("iql")
    ds, b = batch()
    algo.on_dataset(ds)
    _set_q_constant(algo.impl.critic_target, 1e3)  # Q̄ - V ≈ 1e3: exp(β (Q̄ - V)) is far above the cap
    metrics = algo.update(b).metrics
    assert float(metrics["train/adv_weight_mean"]) == pytest.approx(100.0)
    assert math.isfinite(float(metrics["train/actor_loss"]))


def _set_q_constant(q_ensemble: torch.nn.Module, value: float) -> None:
    """Every head of ``q_ensemble`` outputs ``value``: zero weights, the last layer's bias = value."""
    layers = [m for m in q_ensemble.modules() if hasattr(m, "bias") and m.bias is not None]
    with torch.no_grad():
        for p in q_ensemble.parameters():
            p.zero_()
        layers[-1].bias.fill_(value)


def test_offline_coefficients_are_iid_uniform_per_sample():
    fam = make("iql").family
    lo, hi = fam.beta_range
    obs = torch.zeros(40000, 5)  # identical states: the coefficient does not depend on the state offline
    beta = fam.training_coefficients(obs).numpy()
    assert beta.min() >= lo and beta.max() <= hi
    assert beta.mean() == pytest.approx((lo + hi) / 2, abs=0.03)
    assert beta.var() == pytest.approx((hi - lo) ** 2 / 12, rel=0.03)
    hist, _ = np.histogram(beta, bins=8, range=(lo, hi))
    assert hist.min() > 0.9 * len(beta) / 8 and hist.max() < 1.1 * len(beta) / 8
    assert abs(np.corrcoef(beta[:-1], beta[1:])[0, 1]) < 0.02  # independent draws
    assert len(np.unique(beta)) > 0.99 * len(beta)  # (float32 values collide a little)
    algo = make("iql")  # an offline update uses per-sample coefficients of that spread
    ds, b = batch(512)
    algo.on_dataset(ds)
    assert float(algo.update(b).metrics["train/beta_std"]) == pytest.approx((hi - lo) / math.sqrt(12), rel=0.1)


@pytest.mark.parametrize("base", ["iql", "awac", "cql"])
def test_online_coefficients_come_from_the_balance_model_without_gradient(base):
    algo = make(base)
    fam = algo.family
    algo.begin_phase("online")
    with torch.no_grad():  # a balance model whose output is u = tanh(0.3) with (almost) no noise
        for p in fam.model.parameters():
            p.zero_()
        if hasattr(fam.model, "log_std"):
            fam.model.log_std.fill_(-10.0)
        else:  # JaxCQL head: log σ = m · f(s) + b
            fam.model.log_std_offset.fill_(-20.0)
        fam.model.trunk[-1].bias[0] = 0.3
    expected = float(map_coefficient(torch.tanh(torch.tensor(0.3)), fam.beta_range, fam.mapping))
    obs = torch.randn(256, 5)
    beta = fam.training_coefficients(obs)
    assert not beta.requires_grad
    assert torch.allclose(beta, torch.full_like(beta, expected), atol=1e-3)
    assert torch.allclose(fam.acting_coefficients(obs), torch.full_like(beta, expected), atol=1e-6)
    algo.begin_phase("offline")
    assert fam.training_coefficients(obs).std() > 0.1  # uniform again


@pytest.mark.parametrize("base", ["iql", "awac"])
def test_balance_loss_moves_only_the_balance_model(base):
    algo = make(base)
    impl, fam = algo.impl, algo.family
    ds, b = batch()
    algo.on_dataset(ds)
    obs = impl.obs_norm(b.obs)
    frozen = {name: p.detach().clone() for name, p in impl.actor.named_parameters()}
    critic = {name: p.detach().clone() for name, p in impl.critic.named_parameters()}
    balance = [p.detach().clone() for p in fam.model.parameters()]
    fam.update(obs, lambda beta: impl.balance_q(obs, beta))
    for name, p in impl.actor.named_parameters():
        assert torch.equal(p, frozen[name]) and p.grad is None
    for name, p in impl.critic.named_parameters():
        assert torch.equal(p, critic[name])
    assert any(not torch.equal(p, q) for p, q in zip(fam.model.parameters(), balance))


def test_balance_model_learns_the_coefficient_with_the_highest_q():
    """A critic that prefers the universal model's action at the top of the range: the balance model moves
    its coefficients up (eq. 10 ascends Q through the encoding)."""
    algo = make("iql", balance_entropy=False)
    impl, fam = algo.impl, algo.family
    obs = torch.randn(256, 5)

    def q_of_beta(beta):  # a stand-in critic: Q rises with β
        return beta

    before = fam.acting_coefficients(obs).mean()
    for _ in range(200):
        fam.update(obs, q_of_beta)
    assert fam.acting_coefficients(obs).mean() > before + 1.0
    assert impl is algo.impl


@pytest.mark.parametrize("base", ["iql", "awac", "cql"])
def test_update_and_acting_run_and_are_deterministic(base):
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        algo = make(base)
        ds, b = batch()
        algo.on_dataset(ds)
        for phase in ("offline", "online"):
            algo.begin_phase(phase)
            for _ in range(3):
                metrics = algo.update(b).metrics
        action, _ = algo.act(ds.observations[:4], deterministic=False)
        outputs.append((float(metrics["train/actor_loss"]), action))
        assert np.all(np.abs(action) <= 1.0) and np.isfinite(float(metrics["train/critic_loss"]))
    assert outputs[0][0] == outputs[1][0] and np.array_equal(outputs[0][1], outputs[1][1])


def test_random_and_anneal_ablations():
    algo = make("iql", balance="anneal", anneal_steps=10)
    fam = algo.family
    obs = torch.randn(8, 5)
    assert torch.allclose(fam.acting_coefficients(obs), torch.full((8,), 1.0))
    algo.begin_phase("online")
    for _ in range(5):
        fam.tick()
    assert torch.allclose(fam.training_coefficients(obs), torch.full((8,), 3.0))
    for _ in range(50):
        fam.tick()
    assert torch.allclose(fam.acting_coefficients(obs), torch.full((8,), 5.0))
    assert not fam.trains(5)  # no balance model to train
    rand = make("iql", balance="random").family
    rand.online = True
    assert rand.acting_coefficients(torch.zeros(1000, 5)).std() > 0.5 and not rand.trains(5)


def test_checkpoint_round_trip_keeps_the_family():
    algo = make("iql")
    ds, b = batch()
    algo.on_dataset(ds)
    algo.begin_phase("online")
    for _ in range(5):
        algo.update(b)
    state = algo.state_dict()
    other = make("iql")
    other.load_state_dict(state)
    assert other.family.online and other.family.online_updates == 5
    obs = torch.randn(16, 5)
    assert torch.equal(other.family.acting_coefficients(obs), algo.family.acting_coefficients(obs))
    with pytest.raises(KeyError, match="family"):
        other.load_state_dict({k: v for k, v in state.items() if k != "family"})


def test_configuration_at_the_paper_settings(compose_cfg):
    assert "famo2o" in group_options("algo")
    cfg = compose_cfg("algo=famo2o", "env=hopper-medium-replay")
    assert (cfg.algo.base, cfg.algo.balance, cfg.train.steps, cfg.train.online_steps) == ("iql", "model", 10**6, 10**6)
    assert list(cfg.algo.settings.iql.beta_range) == [1.0, 5.0] and cfg.algo.settings.iql.balance_every == 5
    awac = compose_cfg("algo=famo2o", "algo.base=awac", "env=hopper-medium-replay")
    assert (awac.train.steps, awac.train.online_steps, awac.train.batch_size) == (75_000, 200_000, 1024)
    ant = compose_cfg("algo=famo2o", "env=antmaze-umaze")
    assert list(ant.algo.settings.iql.beta_range) == [8.0, 14.0] and ant.algo.settings.iql.balance_every == 1
    assert list(ant.algo.settings.awac.beta_range) == [9.0, 11.0]
    cql = compose_cfg("algo=famo2o", "algo.base=cql", "env=hopper-medium-replay")
    assert (cql.train.steps, cql.algo.settings.cql.base_params.cql_alpha) == (2_000_000, 1.0)
    assert list(awac.algo.settings.awac.base_params.actor_hidden) == [256] * 4
    assert awac.algo.settings.awac.base_params.actor_weight_decay == 1e-4
    built = make("awac")
    assert built.impl.actor_opt.defaults["weight_decay"] == 1e-4
    assert built.impl.actor.trunk[0].in_features == 5 + 6  # [s, enc(β)]


@pytest.mark.slow
def test_famo2o_online_phase_improves_on_its_offline_score(tmp_path):
    """CPU-sized learning check on hopper-medium-replay (locally collected when D4RL is unreachable):
    IQL+FamO2O, 2500 offline gradient steps then 2500 online steps; the online phase's final score beats
    the offline phase's (the bench/famo2o.py setting, seed 0)."""
    import argparse

    from bench.famo2o import run_one

    ns = argparse.Namespace(base="iql", env="hopper-medium-replay", offline_steps=2500, online_steps=2500,
                            eval_interval=1000, eval_episodes=5, final_episodes=10, checkpoint_interval=0,
                            device="cpu", threads=1, out=str(tmp_path), extra=[])
    summary = run_one("famo2o", 0, ns)
    assert summary["phases"]["online"] > summary["phases"]["offline"]


def test_released_advantage_weighting_averages_over_the_batchs_coefficients():
    """advantage_weighting=released: w_i = mean_j min(exp(β_j A_i), 100) (jax_iql/family_actor.py broadcasts the
    (B,) advantage against the (B, 1) coefficients); paper: w_i = min(exp(β_i A_i), 100)."""
    paper, released = make("iql"), make("iql", advantage_weighting="released")
    beta = torch.tensor([1.0, 2.0, 5.0])
    adv = torch.tensor([0.5, -1.0, 1.0])
    ones = torch.ones(3)
    expected = torch.stack([torch.exp(beta * a).clamp(max=100.0).mean() for a in adv])
    torch.testing.assert_close(released.impl.advantage_weights(beta, adv, ones), expected)
    torch.testing.assert_close(paper.impl.advantage_weights(beta, adv, ones),
                               torch.exp(beta * adv).clamp(max=100.0))
    assert float(released.impl.advantage_weights(beta, adv, ones)[2]) == pytest.approx(
        (math.exp(1.0) + math.exp(2.0) + 100.0) / 3)  # exp(5) is capped inside the mean


def test_released_weighting_is_refused_off_iql_and_bad_bases_in_one_line():
    from rlkit.config import compose
    from rlkit.errors import ConfigError

    with pytest.raises(ConfigError, match="use it with algo.base=iql"):
        make("awac", advantage_weighting="released")
    with pytest.raises(ConfigError, match=r"^bad value for 'algo.base': 'td3bc'; algo=famo2o takes one of: "
                                          r"iql, awac, cql$"):
        compose(["algo=famo2o", "algo.base=td3bc", "env=hopper-medium"])


def test_cli_refuses_an_unknown_base_without_a_traceback(capsys):
    from rlkit.cli import main

    assert main(["train", "algo=famo2o", "algo.base=td3bc", "env=hopper-medium", "--cfg"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "iql, awac, cql" in err and len(err.strip().splitlines()) == 1
