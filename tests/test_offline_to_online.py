"""The offline_to_online regime: one buffer that starts with the dataset, phase-tagged logs, phase scores
in summary.json, exact resume in both phases and across the boundary, and the one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlkit import trainer
from rlkit.errors import ConfigError
from rlkit.regimes.offline_to_online import OfflineToOnlineRegime
from tests.helpers import at_step, interrupt, metric_records

OFFLINE_STEPS = 40


def o2o_overrides(path, *extra):
    return ["env=hopper-random", f"env.dataset.path={path}", "env.dataset.source=file", "seed=3",
            f"train.steps={OFFLINE_STEPS}", "train.online_steps=30", "train.batch_size=32",
            "train.log_interval=10", "eval.interval=25", "eval.episodes=2", "eval.num_envs=2",
            "checkpoint.interval=0", "train.buffer_capacity=5000", *extra]


FAMO2O = ["algo=famo2o", "+algo.base_params.hidden=[32,32]", "algo.balance_hidden=[32,32]", "algo.balance_every=2"]
IQL = ["algo=iql", "regime=offline_to_online", "algo.hidden=[32,32]"]


@pytest.mark.parametrize("algo", [FAMO2O, IQL], ids=["famo2o", "iql"])
def test_resume_is_exact_in_both_phases_and_across_the_boundary(compose_cfg, tmp_path, hopper_random_file, algo):
    overrides = o2o_overrides(hopper_random_file, *algo)
    full = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))
    cut = tmp_path / "cut"
    with at_step(OfflineToOnlineRegime, 17, interrupt), pytest.raises(KeyboardInterrupt):  # offline phase
        trainer.run(compose_cfg(*overrides, f"run_dir={cut}"))
    with at_step(OfflineToOnlineRegime, OFFLINE_STEPS + 11, interrupt), pytest.raises(KeyboardInterrupt):  # online
        trainer.run(compose_cfg(*overrides, f"run_dir={cut}", "resume=true"))
    resumed = trainer.run(compose_cfg(*overrides, f"run_dir={cut}", "resume=true"))
    assert metric_records(tmp_path / "full") == metric_records(cut)
    assert full["final_returns"] == resumed["final_returns"] and resumed["steps"] == OFFLINE_STEPS + 30
    assert full["phases"] == resumed["phases"]

    records = metric_records(cut)
    assert all(r["phase"] == ("offline" if r["step"] <= OFFLINE_STEPS else "online") for r in records)
    boundary = [r for r in records if r["step"] == OFFLINE_STEPS and "eval/normalized_score" in r]
    assert len(boundary) == 1 and boundary[0]["eval/episodes"] == 2  # the offline phase's score
    assert full["phases"]["offline"] == boundary[0]["eval/normalized_score"]
    assert full["phases"]["online"] == full["final_normalized_score"]


def test_resume_from_the_boundary_checkpoint(compose_cfg, tmp_path, hopper_random_file):
    """The checkpoint written at the end of the offline phase continues into the online phase exactly."""
    overrides = o2o_overrides(hopper_random_file, *FAMO2O)
    trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))
    cut = tmp_path / "cut"
    with at_step(OfflineToOnlineRegime, OFFLINE_STEPS + 1, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose_cfg(*overrides, f"run_dir={cut}"))
    boundary = cut / "checkpoints" / f"step_{OFFLINE_STEPS:010d}.pt"
    assert boundary.exists()
    for newer in (cut / "checkpoints").glob("step_*.pt"):
        if newer != boundary:
            newer.unlink()
    trainer.run(compose_cfg(*overrides, f"run_dir={cut}", "resume=true"))
    assert metric_records(tmp_path / "full") == metric_records(cut)


def test_buffer_starts_with_the_dataset_and_grows_online(compose_cfg, tmp_path, hopper_random_file):
    from rlkit.data import load

    dataset = load("hopper-random-v2", source="file", path=str(hopper_random_file))
    cfg = compose_cfg(*o2o_overrides(hopper_random_file, *IQL), f"run_dir={tmp_path / 'r'}")
    regime = OfflineToOnlineRegime(cfg, tmp_path / "r")
    regime.setup()
    storage = regime.buffer.storage
    assert storage.capacity == 5000 and len(storage) == dataset.size
    np.testing.assert_array_equal(storage.arrays["obs"][: dataset.size], dataset.observations)
    for _ in range(OFFLINE_STEPS):
        regime.train_step()
        regime.step += regime.step_increment
    assert len(storage) == dataset.size  # offline updates add nothing
    regime.start_online()
    regime.train_step()
    assert len(storage) == dataset.size + 1 and regime.updates_done == OFFLINE_STEPS + 1
    regime.close()


def test_default_capacity_is_two_million(compose_cfg):
    cfg = compose_cfg("algo=iql", "regime=offline_to_online", "env=hopper-medium-replay")
    assert cfg.train.buffer_capacity is None and OfflineToOnlineRegime.default_capacity == 2_000_000
    assert cfg.algo.actor_lr_schedule == "constant"  # IQL's fine-tuning config: no learning-rate decay
    assert compose_cfg("algo=iql", "env=hopper-medium-replay").algo.actor_lr_schedule == "cosine"


def test_online_steps_zero_runs_the_offline_phase_only(compose_cfg, tmp_path, hopper_random_file, capsys):
    overrides = o2o_overrides(hopper_random_file, *IQL, "train.online_steps=0")
    summary = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'r'}"))
    assert "train.online_steps=0: offline phase only" in capsys.readouterr().err
    assert summary["steps"] == OFFLINE_STEPS and summary["phases"]["online"] is None
    assert summary["phases"]["offline"] == summary["final_normalized_score"]
    assert {r["phase"] for r in metric_records(tmp_path / "r")} == {"offline"}
    run = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert run["regime"] == "offline_to_online" and run["online_steps"] == 0


def test_env_without_dataset_is_refused_in_one_line(compose_cfg, tmp_path):
    with pytest.raises(ConfigError) as err:
        trainer.run(compose_cfg("algo=iql", "regime=offline_to_online", "env=hopper", f"run_dir={tmp_path / 'r'}"))
    message = str(err.value)  # the fit check (rlkit/fit.py) refuses before anything is built
    assert "needs an env with a dataset" in message and "env=hopper lacks" in message and "\n" not in message


def test_bc_is_refused_in_one_line(compose_cfg, tmp_path, hopper_random_file):
    cfg = compose_cfg(*o2o_overrides(hopper_random_file, "algo=bc", "regime=offline_to_online"),
                      f"run_dir={tmp_path / 'r'}")
    with pytest.raises(ConfigError) as err:
        trainer.run(cfg)
    message = str(err.value)
    assert "algo=bc does not train in regime=offline_to_online" in message and "\n" not in message


@pytest.mark.parametrize("algo", ["awac", "cql", "td3bc"])
def test_other_offline_bases_fine_tune(compose_cfg, tmp_path, hopper_random_file, algo):
    hidden = {"awac": "algo.hidden=[32,32]", "cql": "algo.actor_hidden=[32,32]", "td3bc": "algo.hidden=[32,32]"}
    overrides = o2o_overrides(hopper_random_file, f"algo={algo}", "regime=offline_to_online", hidden[algo],
                              "train.online_steps=10", "eval.interval=0")
    summary = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'r'}"))
    assert summary["steps"] == OFFLINE_STEPS + 10 and None not in summary["phases"].values()
