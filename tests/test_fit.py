"""The algorithm/environment fit check (rlkit.fit): the regime's data needs and the algorithm's declared
observation/action kinds against the env config's metadata, before anything is built."""

from __future__ import annotations

import pytest
from hydra.utils import get_class

from rlkit import trainer
from rlkit.algorithm import Algorithm
from rlkit.cli import main
from rlkit.config import compose, group_options
from rlkit.errors import ConfigError
from rlkit.fit import check_fit, check_run_fit, fitting_envs
from rlkit.regimes.base import algorithm_regime


def refusal(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_run_fit(compose(list(overrides)))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_reward_free_pretraining_needs_urlb():
    message = refusal("algo=moss", "env=hopper-medium")
    assert message.startswith("algo=moss (regime pretrain) needs a URLB env")
    assert "urlb-walker, urlb-quadruped, urlb-jaco" in message and "urlb-*" in message


def test_offline_algorithm_refuses_atari():
    message = refusal("algo=td3bc", "env=atari100k-pong")
    assert "algo=td3bc (regime offline) needs an env with a dataset, vector observations and continuous actions" \
        in message
    assert "hopper-medium" in message and "antmaze-*" in message and "atari" not in message.split("lacks")[1]


def test_offline_algorithm_refuses_an_env_without_dataset():
    assert "which env=pendulum lacks" in refusal("algo=iql", "env=pendulum")


def test_pixel_agent_refuses_vector_envs():
    message = refusal("algo=storm", "env=hopper")
    assert "pixel observations and discrete actions" in message
    assert "atari100k-alien" in message and "tiny-catch" in message


def test_vector_agent_refuses_pixels():
    assert "algo=sac (regime online)" in refusal("algo=sac", "env=tiny-catch")


@pytest.mark.parametrize("overrides", [
    ("algo=sac", "env=pendulum"), ("algo=td3bc", "env=hopper-medium"), ("algo=moss", "env=urlb-walker"),
    ("algo=storm", "env=atari100k-pong"), ("algo=storm", "env=tiny-catch"), ("algo=iql", "env=antmaze-umaze"),
    ("algo=ddpg", "env=urlb-walker_flip"), ("algo=oper", "env=hopper-medium"),
    ("algo=moss", "env=urlb-walker_flip", "regime=finetune"), ("algo=sac", "env=urlb-walker_walk", "regime=online"),
])
def test_fitting_pairs_are_accepted(overrides):
    check_run_fit(compose(list(overrides)))


def test_the_regime_decides_the_data_needs():
    """The same class and env: offline needs a dataset, online takes any env, pretrain/finetune need URLB."""
    class Vector(Algorithm):
        pass

    hopper = compose(["env=hopper"]).env
    check_fit(Vector, "online", hopper)
    with pytest.raises(ConfigError, match="needs an env with a dataset, vector observations"):
        check_fit(Vector, "offline", hopper)
    for regime in ("pretrain", "finetune"):
        with pytest.raises(ConfigError, match=f"regime {regime}\\) needs a URLB env with vector observations"):
            check_fit(Vector, regime, hopper)
    check_fit(Vector, "offline", compose(["env=hopper-medium"]).env)
    check_fit(Vector, "finetune", compose(["env=urlb-walker_walk"]).env)


def test_every_algorithm_declares_its_kinds_and_every_env_has_an_algorithm():
    covered: set[str] = set()
    for algo in group_options("algo"):
        cfg = compose([f"algo={algo}"])
        cls = get_class(cfg.algo._target_)
        assert issubclass(cls, Algorithm)
        assert cls.observation in ("vector", "pixels", "any") and cls.action in ("continuous", "discrete", "any")
        covered |= set(fitting_envs(cls, algorithm_regime(cfg)))
    assert covered == set(group_options("env"))


def test_env_without_metadata_is_refused_in_one_line():
    class Vector(Algorithm):
        pass

    with pytest.raises(ConfigError, match="env 'mine' declares env.observation=None; set it to one of vector"):
        check_fit(Vector, "online", {"name": "mine", "dataset": None})


def test_trainer_refuses_before_making_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="needs a URLB env"):
        trainer.run(compose(["algo=moss", "env=hopper-medium", f"run_dir={run_dir}"]))
    assert not run_dir.exists()


def test_sweep_with_one_bad_combination_launches_nothing(capsys, tmp_path):
    sweep = tmp_path / "sweep"
    code = main(["train", "-m", "algo=td3bc", "env=hopper-medium,pendulum", "train.steps=10",
                 f"hydra.sweep.dir={sweep}"])
    err = capsys.readouterr().err
    assert code == 2 and "launching" not in err and not sweep.exists()
    assert "which env=pendulum lacks" in err and "[sweep job algo=td3bc env=pendulum train.steps=10" in err


def test_config_refusals_come_before_any_data(tmp_path, monkeypatch):
    """``algo=td3bc addon=self_reference env=hopper-medium`` is refused by the config alone: before the dataset
    is loaded (or collected) and before the run directory is made; so is a bad algorithm option."""
    import rlkit.regimes.offline as offline

    def no_data(cfg):
        raise AssertionError("the dataset was loaded before a refusal the config decides")

    monkeypatch.setattr(offline, "load_dataset", no_data)
    message = refusal("algo=td3bc", "addon=self_reference", "env=hopper-medium")
    assert "addon=self_reference augments URLB agents only" in message and "algo=td3bc" in message
    run_dir = tmp_path / "r"
    with pytest.raises(ConfigError, match="addon=self_reference augments URLB agents only"):
        trainer.run(compose(["algo=td3bc", "addon=self_reference", "env=hopper-medium", f"run_dir={run_dir}"]))
    assert not run_dir.exists()
    with pytest.raises(ConfigError, match="algo.update_order='sideways'"):
        trainer.run(compose(["algo=cql", "algo.update_order=sideways", "env=hopper-medium",
                             f"run_dir={tmp_path / 'r2'}"]))
