"""The env catalog (rlkit.envs.catalog): one table row per env, composed by Hydra like a YAML file, with its
score reference beside it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from rlkit.cli import main
from rlkit.config import compose, group_descriptions, group_options
from rlkit.envs import catalog
from rlkit.errors import ConfigError
from rlkit.evaluation.scores import normalize, reference


def test_every_option_is_listed_once_with_metadata():
    names = group_options("env")
    generated = catalog.env_configs()
    assert len(generated) == 4 * 7 + 6 + 26 + 3 + 12 + 6
    assert set(generated) | {"pendulum", "tiny-catch"} == set(names)
    descriptions = group_descriptions("env")
    for name, node in generated.items():
        env = node["env"]
        assert env["name"] == name and descriptions[name] == env["description"]
        assert env["observation"] in ("vector", "pixels") and env["action"] in ("continuous", "discrete")
        assert env["suite"] in ("d4rl", "atari100k", "urlb", "dmc")


# The env blocks of the YAML files the catalog replaced (configs/env/*.yaml before the catalog), verbatim (the
# locomotion descriptions name v4 since the envs moved from v5 to the recording dynamics, and Atari carries
# STORM's life counter, issue 24),
# plus the fit metadata. All 75 generated configs were compared key by key with the YAML files' composed
# configs before those were deleted; these literals keep one per family.
OLD_BLOCKS = {
    "hopper-medium": ({
        "name": "hopper-medium", "id": "hopper", "family": "mujoco", "kwargs": {},
        "description": "D4RL hopper-medium-v2 dataset, evaluated on Hopper-v4; D4RL-normalized score.",
        "score": {"table": "d4rl", "task": "hopper"},
        "dataset": {"id": "hopper-medium-v2", "source": "auto", "path": None}}, {}),
    "walker2d": ({
        "name": "walker2d", "id": "walker2d", "family": "mujoco", "kwargs": {}, "dataset": None,
        "description": "Walker2d-v4 (gymnasium MuJoCo) for online training, D4RL-normalized scores.",
        "score": {"table": "d4rl", "task": "walker2d"}}, {}),
    "antmaze-umaze-diverse": ({
        "name": "antmaze-umaze-diverse", "id": "antmaze-umaze-diverse", "family": "antmaze",
        "description": "D4RL antmaze-umaze-diverse-v2 dataset, evaluated on D4RL's AntMaze (umaze maze, 700-step "
                       "limit) rebuilt on MuJoCo 3; score 100 x success rate.",
        "kwargs": {"v2_resets": True}, "score": {"table": "d4rl", "task": "antmaze"},
        "dataset": {"id": "antmaze-umaze-diverse-v2", "source": "auto", "path": None}},
        {"eval.interval": 100000, "eval.episodes": 100}),
    "atari100k-ms_pacman": ({
        "name": "atari100k-ms_pacman", "id": "atari100k-ms_pacman", "family": "atari",
        "description": "MsPacman on Atari 100k, STORM protocol (64x64 RGB, sticky 0.25, skip 4, raw rewards, "
                       "life-loss flag).",
        "kwargs": {"reseed_every_reset": True, "life_counter": "on_loss"},
        "score": {"table": "atari", "task": "ms_pacman"}, "dataset": None},
        {"train.steps": 100000, "eval.interval": 0, "eval.episodes": 20, "eval.num_envs": 5,
         "eval.deterministic": False}),
    "urlb-jaco": ({
        "name": "urlb-jaco", "id": "urlb-jaco", "family": "urlb_jaco", "kwargs": {"obs_type": "states"},
        "description": "URLB jaco reward-free pretraining env (jaco_reach_top_left dynamics, 250-step episodes); "
                       "pretrain 2M frames.",
        "score": None, "dataset": None},
        {"train.steps": 2000000, "train.warmup_steps": 4000, "eval.interval": 0, "eval.episodes": 10,
         "checkpoint.interval": 100000, "pretrain.snapshot_frames": [100000, 500000, 1000000, 2000000]}),
    "urlb-quadruped_run": ({
        "name": "urlb-quadruped_run", "id": "urlb-quadruped_run", "family": "urlb_quadruped",
        "description": "URLB quadruped run (dm_control states, 1000-step episodes); finetune task, score = return / "
                      "888 (expert).",
        "kwargs": {"obs_type": "states"}, "score": {"table": "urlb", "task": "quadruped_run"}, "dataset": None},
        {"train.steps": 100000, "train.warmup_steps": 4000, "eval.interval": 10000, "eval.episodes": 10,
         "eval.at_start": True, "checkpoint.interval": 50000}),
}


@pytest.mark.parametrize("name", sorted(OLD_BLOCKS))
def test_generated_config_composes_like_the_yaml_it_replaced(name):
    old_env, old_keys = OLD_BLOCKS[name]
    cfg = compose([f"env={name}"])
    env = OmegaConf.to_container(cfg.env, resolve=True)
    metadata = {k: env.pop(k) for k in ("observation", "action", "suite")}
    assert env == old_env
    assert metadata["observation"] == ("pixels" if name.startswith("atari") else "vector")
    for key, value in old_keys.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert cfg.train.batch_size == 256 and cfg.train.log_interval == 1000  # keys it does not set: root defaults


@pytest.mark.parametrize(("table", "task", "low", "high"), [
    ("d4rl", "hopper", -20.272305, 3234.3), ("d4rl", "halfcheetah-medium-v2", -280.178953, 12135.0),
    ("d4rl", "walker2d", 1.629008, 4592.3), ("d4rl", "ant", -325.6, 3879.7), ("d4rl", "antmaze", 0.0, 1.0),
    ("atari", "pong", -20.7, 14.6), ("atari", "up_n_down", 533.4, 11693.2), ("atari", "MsPacman", 307.3, 6951.6),
    ("urlb", "walker_flip", 0.0, 799.0), ("urlb", "jaco_reach_top_right", 0.0, 223.0),
])
def test_score_references_are_the_published_numbers(table, task, low, high):
    assert reference(table, task) == (low, high)


def test_every_scored_env_has_a_reference():
    for node in catalog.env_configs().values():
        score = node["env"]["score"]
        if score is not None:
            low, high = reference(score["table"], score["task"])
            assert high > low


def test_a_new_row_is_one_entry(monkeypatch):
    """A game added to the Atari table composes as `env=atari100k-<game>` and is scored by its row."""
    tennis = catalog.AtariGame("tennis", "Tennis", -23.8, -8.3)
    monkeypatch.setattr(catalog, "ATARI100K", (*catalog.ATARI100K, tennis))
    assert "atari100k-tennis" in group_options("env")
    cfg = compose(["algo=storm", "env=atari100k-tennis"])
    assert cfg.env.id == "atari100k-tennis" and cfg.env.score.task == "tennis" and cfg.train.steps == 100000
    assert normalize("atari", "tennis", [-8.3]) == pytest.approx([1.0])


def test_unknown_env_suggests_a_catalog_name():
    with pytest.raises(ConfigError, match="did you mean 'hopper-medium'"):
        compose(["env=hoper-medium"])


def test_list_shows_catalog_and_yaml_envs(capsys):
    assert main(["list", "envs"]) == 0
    out = capsys.readouterr().out
    assert "hopper-medium-replay" in out and "urlb-walker_flip" in out and "tiny-catch" in out
    assert "score = return / 799 (expert)" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "[vector/continuous +data]" in lines["hopper-medium"] and "[pixels/discrete]" in lines["atari100k-pong"]
    assert "[vector/continuous]" in lines["pendulum"]


def test_a_yaml_file_cannot_shadow_a_row(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "hopper-medium.yaml").write_text("# @package _global_\nenv: {name: x}\n")
    monkeypatch.setenv("RLKIT_CONFIG_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="'hopper-medium' is both a row of rlkit.envs.catalog and .*medium.yaml"):
        compose(["env=hopper-medium"])


def test_an_env_kept_outside_the_package_is_listed_and_checked(tmp_path, monkeypatch):
    """A YAML env on RLKIT_CONFIG_PATH joins the options and the fit check reads its metadata."""
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "my-cartpole.yaml").write_text(
        "# @package _global_\nenv: {name: my-cartpole, description: CartPole-v1, id: CartPole-v1, family: classic, "
        "suite: null, observation: vector, action: discrete, kwargs: {}, score: null, dataset: null}\n")
    monkeypatch.setenv("RLKIT_CONFIG_PATH", str(tmp_path))
    from rlkit.fit import check_run_fit

    assert "my-cartpole" in group_options("env")
    with pytest.raises(ConfigError, match="algo=sac .*continuous actions, which env=my-cartpole lacks"):
        check_run_fit(compose(["algo=sac", "env=my-cartpole"]))
