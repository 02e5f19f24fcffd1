"""The CLI contract: help texts, `rlkit list`, and one-line errors with exit code 2 for bad input."""

import json
import subprocess
import sys

import pytest

from rlkit.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "rlkit train" in out and "rlkit eval" in out
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "resume=true" in out and "train.steps" in out


def test_list_shows_registered_options(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in ("sac", "bc", "pendulum", "hopper-medium", "uniform", "per"):
        assert f"  {name} " in out
    assert "Soft Actor-Critic" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "algo=nope"], "unknown algo 'nope'"),
        (["train", "env=hoper-medium"], "did you mean 'hopper-medium'"),
        (["train", "train.stepz=10"], "unknown config key 'train.stepz'"),
        (["train", "train.steps=abc"], "bad value for 'train.steps'"),
        (["train", "train.steps=-5"], "must be a positive integer"),
        (["train", "device=tpu"], "bad value for 'device'"),
        (["train", "eval.protocol=best_of"], "bad value for 'eval.protocol'"),
        (["train", "resume=maybe"], "bad value for 'resume'"),
        (["train", "-m", "hydra/launcher=pbs", "seed=0,1"], "unknown hydra/launcher 'pbs'"),
        (["train", "--frobnicate"], "unknown option '--frobnicate'"),
        (["train", "resume=true"], "resume=true needs"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["eval", "/nonexistent/run"], "not an rlkit run directory"),
        (["report", "/nonexistent/run"], "is not a directory"),
        (["eval"], "required"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, args, fragment):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_unknown_choice_lists_valid_choices(capsys):
    _, _, err = run_cli(capsys, "train", "sampler=bogus")
    assert "uniform" in err and "per" in err


def test_cfg_prints_composed_config(capsys):
    code, out, _ = run_cli(capsys, "train", "--cfg", "algo=bc", "env=hopper-medium", "seed=3")
    assert code == 0
    assert "seed: 3" in out and "hopper-medium-v2" in out and "rlkit.algorithms.offline.bc.BC" in out


def test_console_script_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", "train", "algo=missing"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    debug = subprocess.run([sys.executable, "-m", "rlkit.cli", "--debug", "train", "algo=missing"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_existing_run_is_not_overwritten(capsys, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    code, _, err = run_cli(capsys, "train", f"run_dir={run}")
    assert code == 2 and "already holds a run" in err


def test_slurm_launcher_without_slurm_is_one_line(capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)  # a machine without Slurm (like CI)
    code, _, err = run_cli(capsys, "train", "-m", "hydra/launcher=slurm", "seed=0,1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs" in err and "srun" in err and "submitit_local" in err
