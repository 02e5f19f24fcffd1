"""The algorithm contract (rlkit/algorithm.py): declared regimes, TD-error priorities for prioritized
replay, the typed policy batch, named seeds, and a method added from outside the package through
``RLKIT_CONFIG_PATH`` (the README's "Adding a method" example)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit import trainer
from rlkit.algorithm import Algorithm, UpdateResult
from rlkit.errors import ConfigError
from rlkit.replay import Batch
from rlkit.utils import derive_seed

ROOT = Path(__file__).resolve().parents[1]
OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def small_offline(path, *extra):
    return ["env=hopper-random", f"env.dataset.path={path}", "env.dataset.source=file", "train.steps=200",
            "train.log_interval=100", "eval.interval=0", "eval.episodes=1", "eval.num_envs=1",
            "train.batch_size=64", "checkpoint.interval=0", *extra]


def random_batch(n=16, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(n, 5, generator=g), action=torch.rand(n, 2, generator=g) * 2 - 1,
                 reward=torch.randn(n, generator=g), next_obs=torch.randn(n, 5, generator=g),
                 terminated=(torch.rand(n, generator=g) < 0.1).float(), indices=torch.arange(n),
                 weights=torch.ones(n))


CRITIC_ALGOS = [("rlkit.algorithms.offline.td3bc", "TD3BC"), ("rlkit.algorithms.offline.iql", "IQL"),
                ("rlkit.algorithms.offline.cql", "CQL"), ("rlkit.algorithms.offline.awac", "AWAC"),
                ("rlkit.algorithms.online.sac", "SAC")]


def make(module: str, name: str):
    import importlib

    cls = vars(importlib.import_module(module))[name]
    sizes = {"actor_hidden": [32], "critic_hidden": [32], "cql_n_actions": 2} if name == "CQL" else {"hidden": [32, 32]}
    return cls(OBS, ACT, **sizes)


@pytest.mark.parametrize(("module", "name"), CRITIC_ALGOS)
def test_critic_algorithms_return_td_priorities_only_when_asked(module, name):
    algo = make(module, name)
    assert algo.provides_priorities
    assert algo.update(random_batch()).priorities is None
    algo.priority_feedback = True
    result = algo.update(random_batch(seed=1))
    assert isinstance(result, UpdateResult)
    p = result.priorities
    assert p.shape == (16,) and torch.isfinite(p).all() and (p >= 0).all() and not p.requires_grad


def test_td3bc_priorities_are_the_mean_absolute_td_error_of_both_critics():
    """``p_i = mean_k |Q_k(s_i, a_i) - y_i|`` with the same target noise as the update's critic loss."""
    algo = make("rlkit.algorithms.offline.td3bc", "TD3BC")
    algo.priority_feedback = True
    b = random_batch(seed=2)
    torch.manual_seed(7)
    _, q, target = algo.critic_loss(b.obs, b.action, b.reward, b.next_obs, b.terminated, None)
    expected = (q - target).abs().mean(0)
    torch.manual_seed(7)
    torch.testing.assert_close(algo.update(b).priorities, expected)


def test_onestep_gives_priorities_in_every_phase(hopper_random_file):
    from rlkit.algorithms.offline.onestep import OneStepRL
    from rlkit.data import load

    ds = load("hopper-random-v2", source="file", path=str(hopper_random_file))
    algo = OneStepRL(ds_space(ds.observation_dim), gym.spaces.Box(-1.0, 1.0, (ds.action_dim,), np.float32),
                     hidden=[16, 16], bc_steps=2, q_steps=2, policy_steps=2, normalize_obs=False)
    algo.on_dataset(ds)
    algo.priority_feedback = True
    from tests.helpers import dataset_batch

    for _ in range(6):  # BC + SARSA, then the policy phase, then nothing moves
        p = algo.update(dataset_batch(ds, np.arange(8))).priorities
        assert p.shape == (8,) and torch.isfinite(p).all()


def ds_space(dim):
    return gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)


def test_per_on_offline_data_learns_priorities_and_logs_them(compose_cfg, tmp_path, hopper_random_file):
    run_dir = tmp_path / "per"
    trainer.run(compose_cfg("algo=td3bc", "sampler=per", "algo.hidden=[32,32]", f"run_dir={run_dir}",
                            *small_offline(hopper_random_file)))
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    stats = [r for r in logged if "replay/priority_mean" in r]
    assert [r["step"] for r in stats] == [100, 200]
    # every row starts at priority 1 (the initial maximum); learned TD errors move the mean off it
    assert all(r["replay/priority_mean"] != pytest.approx(1.0) for r in stats)
    assert all(r["replay/priority_max"] >= r["replay/priority_mean"] for r in stats)


def test_per_is_refused_for_an_algorithm_without_priorities(compose_cfg, tmp_path, hopper_random_file):
    cfg = compose_cfg("algo=bc", "sampler=per", f"run_dir={tmp_path / 'bc'}", *small_offline(hopper_random_file))
    with pytest.raises(ConfigError, match="algo=bc does not compute; use sampler=uniform, oper_r"):
        trainer.run(cfg)


def test_regime_must_be_one_the_algorithm_declares(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="algo=sac does not train in regime=offline; it declares online"):
        trainer.run(compose_cfg("algo=sac", "env=pendulum", "regime=offline", f"run_dir={tmp_path / 'r'}"))


def test_policy_batch_is_a_typed_field_not_a_column():
    main, policy = random_batch(4), random_batch(4, seed=3)
    assert main.policy_batch is None
    main.policy_batch = policy
    assert "policy_batch" not in main and main.policy_batch is policy
    moved = main.to("cpu")
    assert moved.policy_batch is not None and torch.equal(moved.policy_batch.obs, policy.obs)


def test_named_seeds_are_stable_and_independent():
    assert derive_seed(0, "warmup actions") == derive_seed(0, "warmup actions")
    seeds = {derive_seed(s, p) for s in range(3) for p in ("a", "b", "c")}
    assert len(seeds) == 9 and all(0 <= s < 2**32 for s in seeds)


def test_the_core_never_probes_algorithms():
    """No ``hasattr``/``getattr`` on an algorithm object anywhere in ``rlkit/`` (the contract is explicit)."""
    offenders = []
    for path in (ROOT / "rlkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr",
                                                                                                  "getattr"):
                target = ast.unparse(node.args[0])
                if "algo" in target:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders


def test_a_method_added_from_outside_trains_through_rlkit_train(tmp_path, hopper_random_file):
    """README "Adding a method": tests/example_algorithm holds one module and one YAML; with the folder on
    RLKIT_CONFIG_PATH (and the module importable) `rlkit train algo=toy` trains, logs and evaluates it."""
    example = ROOT / "tests" / "example_algorithm"
    env = {**os.environ, "RLKIT_CONFIG_PATH": str(example), "PYTHONPATH": str(example)}
    listed = subprocess.run([sys.executable, "-m", "rlkit.cli", "list", "algos"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert "toy" in listed.stdout and "Adding a method" in listed.stdout
    cmd = [sys.executable, "-m", "rlkit.cli", "train", "algo=toy", f"run_dir={tmp_path / 'toy'}",
           "logging.progress=false", "logging.tensorboard=false", "num_threads=1",
           *small_offline(hopper_random_file, "train.steps=300", "eval.episodes=2", "eval.num_envs=2")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = [json.loads(line)["train/bc_loss"] for line in (tmp_path / "toy" / "metrics.jsonl").read_text()
              .splitlines() if "train/bc_loss" in line]
    assert len(losses) == 3 and losses[-1] < losses[0]
    summary = json.loads((tmp_path / "toy" / "summary.json").read_text())
    assert summary["finished"] and summary["algo"] == "toy" and len(summary["final_returns"]) == 2


def test_algorithm_target_must_implement_the_contract(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match="is not an rlkit Algorithm subclass"):
        trainer.run(compose_cfg("algo=bc", "env=hopper-random", "algo._target_=collections.OrderedDict",
                                f"run_dir={tmp_path / 'x'}"))


class _Stateless(Algorithm):
    pass


def test_default_hooks_do_nothing():
    algo = _Stateless(OBS, ACT)
    assert algo.reset_state("s", np.array([True])) == "s"
    assert algo.critic_for_diagnostics() is None and algo.replay_spec(0).columns is None
    assert algo.priority_feedback is False
