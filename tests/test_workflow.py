"""End-to-end CLI workflow: a multirun sweep (joblib launcher), `rlkit report` over it, and
`rlkit eval` of one of its runs, as a user would run them."""

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from rlkit.data.collect import collect_to_file

    root = tmp_path_factory.mktemp("sweep")
    data = collect_to_file("hopper-random-v2", steps=2000, seed=0, out=root / "hopper-random.hdf5", num_envs=4)
    cmd = [sys.executable, "-m", "rlkit.cli", "train", "-m", "algo=bc", "env=hopper-random", "seed=0,1",
           f"env.dataset.path={data}", "env.dataset.source=file", "train.steps=200", "eval.interval=100",
           "eval.episodes=2", "eval.num_envs=2", "algo.hidden=[32,32]", "logging.progress=false",
           "num_threads=1"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_multirun_writes_one_run_per_seed(sweep):
    summaries = sorted(sweep.glob("multirun/*/*/summary.json"))
    assert len(summaries) == 2
    seeds = sorted(json.loads(p.read_text())["seed"] for p in summaries)
    assert seeds == [0, 1]
    for p in summaries:
        run = p.parent
        assert (run / "config.yaml").exists() and (run / "metrics.jsonl").exists()
        assert list((run / "tb").glob("events.out.tfevents.*"))
        assert list((run / "checkpoints").glob("step_*.pt"))
        summary = json.loads(p.read_text())
        assert summary["dataset_provenance"]["source"] == "collected"
        assert summary["versions"]["torch"]
        assert summary["eval_protocol"] == "2 assigned episodes; deterministic policy"


def test_report_aggregates_the_sweep(sweep):
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", "report", str(sweep / "multirun"), "--reps", "200"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| bc | hopper-random | 2 |" in proc.stdout
    assert "| 2 assigned episodes; deterministic policy |" in proc.stdout
    assert (sweep / "multirun" / "report.md").exists()
    assert (sweep / "multirun" / "report.csv").exists()
    assert (sweep / "multirun" / "learning_curves.png").stat().st_size > 1000


def test_eval_reproduces_the_final_evaluation(sweep):
    run = sorted(sweep.glob("multirun/*/0"))[0]
    summary = json.loads((run / "summary.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", "eval", str(run), "--episodes", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["returns"] == pytest.approx(summary["final_returns"])


def test_submitit_local_sweep_runs_each_job(tmp_path):
    """The cluster path end to end without a cluster: submitit's local executor runs each job of the sweep
    as its own process, with the same job function (and resume=auto) a Slurm array job uses."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cmd = [sys.executable, "-m", "rlkit.cli", "train", "-m", "hydra/launcher=submitit_local", "resume=auto",
           "seed=0,1", "algo=sac", "env=pendulum", "train.steps=300", "train.warmup_steps=100",
           "eval.interval=0", "eval.episodes=1", "eval.num_envs=1", "algo.hidden=[32,32]",
           "logging.progress=false", "num_threads=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/summary.json"))]
    assert [s["seed"] for s in summaries] == [0, 1]
    assert all(s["finished"] and s["steps"] == 300 for s in summaries)
    assert summaries[0]["final_returns"] != summaries[1]["final_returns"]
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # submitit's job folders


def test_slurm_preset_composes_to_submitits_slurm_launcher():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from rlkit.config import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0
    assert launcher.signal_delay_s >= 60  # time to finish a step and write a checkpoint before the kill


def test_a_failed_job_makes_the_sweep_exit_1(sweep, tmp_path):
    """One job of two cannot read its dataset: the other still runs, and the sweep's exit code and last line
    say which job failed (scripts that launch sweeps rely on the exit code)."""
    good = next(sweep.glob("hopper-random.hdf5"))
    cmd = [sys.executable, "-m", "rlkit.cli", "train", "-m", "algo=bc", "env=hopper-random",
           f"env.dataset.path={tmp_path / 'missing.hdf5'},{good}", "env.dataset.source=file", "train.steps=20",
           "eval.interval=0", "eval.episodes=1", "eval.num_envs=1", "algo.hidden=[16,16]",
           "logging.progress=false", "num_threads=1", "hydra.sweep.dir=out"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("rlkit: 1 of 2 runs failed (jobs 0 in out)")
    assert "missing.hdf5" in (tmp_path / "out" / "0" / "error.txt").read_text()
    assert json.loads((tmp_path / "out" / "1" / "summary.json").read_text())["finished"] is True
