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


def test_report_aggregates_the_sweep(sweep):
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", "report", str(sweep / "multirun"), "--reps", "200"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| bc | hopper-random | 2 |" in proc.stdout
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
