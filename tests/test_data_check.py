"""``rlkit data check``: collected files match their env; files from another model, shuffled rows and scaled
rewards are caught; bad input is one line with exit 2."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rlkit.cli import main
from rlkit.data.hdf5 import read_raw, write_d4rl

ROWS = "300"


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """Small files collected with the shipped medium policies: hopper and walker2d on rlkit's envs, and
    walker2d on gymnasium's Walker2d-v5 (another model: right-foot friction 1.9)."""
    from rlkit import envs
    from rlkit.data.collect import POLICY_DIR, collect_to_file, load_policy, rollout

    root = tmp_path_factory.mktemp("check")
    files = {task: collect_to_file(f"{task}-medium-v2", steps=1200, seed=0, out=root / f"{task}.hdf5", num_envs=2)
             for task in ("hopper", "walker2d")}
    policy = load_policy(POLICY_DIR / "walker2d-medium.pt", envs.make_vector("walker2d", 1))
    arrays = rollout("Walker2d-v5", policy, 1200, 0, 2)
    infos = {k: arrays.pop(k) for k in ("qpos", "qvel")}
    files["ant"] = collect_to_file("ant-random-v2", steps=600, seed=0, out=root / "ant.hdf5", num_envs=2)
    files["walker2d-v5"] = write_d4rl(root / "walker2d-v5.hdf5", **arrays, infos=infos,
                                      provenance={"source": "collected", "id": "walker2d-medium-v2"})
    return files


def _run(capsys, *args):
    code = main(["data", "check", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _rewrite(src, dst, change):
    raw = read_raw(src)
    arrays = {k: raw[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    infos = {k: raw[f"infos/{k}"] for k in ("qpos", "qvel")}
    change(arrays, infos)
    return write_d4rl(dst, **arrays, infos=infos, provenance={"source": "collected", "id": "walker2d-medium-v2"})


@pytest.mark.parametrize("task, gym_id, model", [("hopper", "Hopper-v4", "hopper.xml"),
                                                  ("walker2d", "Walker2d-v4", "walker2d.xml"),
                                                  ("ant", "Ant-v4", "ant.xml")])  # ant: rewards read lagging xpos
def test_collected_file_matches_its_env(capsys, collected, task, gym_id, model):
    code, out, _ = _run(capsys, collected[task], "--rows", ROWS)
    assert code == 0, out
    assert f"{gym_id}, model file {model}" in out
    assert out.rstrip().splitlines()[-1].startswith("MATCH")
    for line in out.splitlines()[4:-1]:  # every quantity: all rows within tolerance
        assert line.split()[-1] == "100.0%" or line.split()[1] == "0", line


def test_file_recorded_on_the_v5_walker_is_caught(capsys, collected):
    code, out, _ = _run(capsys, collected["walker2d-v5"], "--rows", ROWS)
    assert code == 1 and "MISMATCH" in out
    # and it does match the model it was recorded on
    code, out, _ = _run(capsys, collected["walker2d-v5"], "--rows", ROWS, "--env", "Walker2d-v5")
    assert code == 0 and "walker2d_v5.xml" in out


def test_shuffled_rows_are_caught(capsys, collected, tmp_path):
    """Every column permuted the same way: each row is still self-consistent, its successor is not."""
    perm = np.random.default_rng(0).permutation(1200)

    def shuffle(arrays, infos):
        for d in (arrays, infos):
            for k in d:
                d[k] = d[k][perm]

    code, out, _ = _run(capsys, _rewrite(collected["walker2d"], tmp_path / "shuffled.hdf5", shuffle), "--rows", ROWS)
    assert code == 1
    next_obs = next(line for line in out.splitlines() if line.startswith("next observation"))
    assert float(next_obs.split()[-1].rstrip("%")) < 50


def test_scaled_rewards_are_caught(capsys, collected, tmp_path):
    def scale(arrays, infos):
        arrays["rewards"] = arrays["rewards"] * 1.01

    code, out, _ = _run(capsys, _rewrite(collected["walker2d"], tmp_path / "scaled.hdf5", scale), "--rows", ROWS)
    assert code == 1
    reward = next(line for line in out.splitlines() if line.startswith("reward "))
    assert float(reward.split()[-1].rstrip("%")) < 10


def test_env_comes_from_the_d4rl_file_name(capsys, collected, tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"  # D4RL's name of hopper-medium-v2
    _rewrite(collected["hopper"], path, lambda arrays, infos: None)  # provenance names walker2d
    code, out, _ = _run(capsys, path, "--rows", "50")
    assert code == 0 and "Hopper-v4" in out


@pytest.mark.parametrize("case, fragment", [
    ("no-infos", "infos/qpos"),
    ("unknown-env", "unknown environment"),
    ("antmaze", "AntMaze"),
    ("other-task", "not a file of this env"),
    ("missing", "neither an existing file"),
    ("rows", "--rows must be an integer"),
])
def test_bad_input_is_one_line_exit_2(capsys, collected, tmp_path, case, fragment):
    path = collected["hopper"]
    args = [path]
    if case == "no-infos":
        raw = read_raw(path)
        path = write_d4rl(tmp_path / "x.hdf5", **{k: raw[k] for k in ("observations", "actions", "rewards",
                                                                       "terminals", "timeouts")})
        args = [path, "--env", "hopper"]
    elif case == "unknown-env":
        args = [path, "--env", "no-such-env-v0"]
    elif case == "antmaze":
        args = [path, "--env", "antmaze-umaze"]
    elif case == "other-task":
        args = [path, "--env", "walker2d"]
    elif case == "missing":
        args = [tmp_path / "absent.hdf5"]
    elif case == "rows":
        args = [path, "--rows", "many"]
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_d4rl_named_copy_is_found_by_id(capsys, collected, tmp_path, monkeypatch):
    """``PATH_OR_ID``: a dataset id resolves to its cached D4RL file."""
    monkeypatch.setenv("RLKIT_DATA", str(tmp_path))
    (tmp_path / "d4rl").mkdir()
    shutil.copy(collected["hopper"], tmp_path / "d4rl" / "hopper_medium-v2.hdf5")
    code, out, _ = _run(capsys, "hopper-medium-v2", "--rows", "50")
    assert code == 0 and "hopper_medium-v2.hdf5" in out
