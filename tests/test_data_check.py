"""``rlkit data check``: collected files match their env; files from another model, shuffled rows and scaled
rewards are caught; bad input is one line with exit 2."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rlkit.cli import main
from rlkit.data.collect import POLICY_DIR
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
    lines = out.splitlines()
    for line in lines[lines.index(next(x for x in lines if x.startswith("quantity"))) + 1:-1]:  # all within tol
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
    ("ant-from-observation", "rebuilds states only for"),
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
    elif case == "ant-from-observation":
        args = [collected["ant"], "--from-observation"]
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


def _without_infos(src, dst, change=None):
    raw = read_raw(src)
    arrays = {k: raw[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    if change:
        change(arrays)
    return write_d4rl(dst, **arrays, provenance={"source": "collected", "id": "hopper-random-v2"})


def test_from_observation_checks_files_without_infos(capsys, tmp_path):
    """``--from-observation``: states rebuilt from hopper's observations (x = 0). A collected file stripped of
    ``infos/`` matches; the same rows with the healthy reward of the falling step removed (what Hopper-v5
    records) fail on the terminal rows only."""
    from rlkit.data.collect import collect_to_file

    src = collect_to_file("hopper-random-v2", steps=800, seed=0, out=tmp_path / "src.hdf5", num_envs=2)
    plain = _without_infos(src, tmp_path / "plain.hdf5")
    code, out, _ = _run(capsys, plain, "--rows", ROWS, "--from-observation")
    assert code == 0 and "rebuilt from the observations" in out, out

    def v5_terminal_reward(arrays):
        arrays["rewards"] = arrays["rewards"] - arrays["terminals"].astype(np.float32)

    code, out, _ = _run(capsys, _without_infos(src, tmp_path / "v5.hdf5", v5_terminal_reward), "--rows", ROWS,
                        "--from-observation")
    terminals = next(line for line in out.splitlines() if line.startswith("reward at terminals"))
    assert code == 1 and int(terminals.split()[3]) > 10 and terminals.split()[-1] == "0.0%", out


@pytest.mark.parametrize("path", sorted(POLICY_DIR.glob("*-medium-replay.hdf5")), ids=lambda p: p.stem)
def test_shipped_replay_buffers_step_like_their_env(capsys, path):
    """The shipped SAC replay buffers (no ``infos/``) were recorded on the dynamics of the env they name."""
    code, out, _ = _run(capsys, path, "--rows", ROWS, "--from-observation")
    assert code == 0, out
