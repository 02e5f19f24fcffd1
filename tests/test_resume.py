"""Exact resume: a run interrupted mid-way and resumed ends with the same metrics as an uninterrupted
run with the same seed (CPU), for the online (SAC) and offline (BC) regimes; bad resumes are refused."""

import json

import pytest

from rlkit import trainer
from rlkit.errors import CheckpointError
from rlkit.regimes.offline import OfflineRegime
from rlkit.regimes.online import OnlineRegime
from tests.helpers import at_step, interrupt, metric_records


def run_interrupted_then_resumed(compose_cfg, regime_cls, run_dir, at, overrides):
    with at_step(regime_cls, at, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose_cfg(*overrides, f"run_dir={run_dir}"))
    assert (run_dir / "checkpoints").is_dir()
    return trainer.run(compose_cfg(*overrides, f"run_dir={run_dir}", "resume=true"))


ONLINE = ["algo=sac", "env=pendulum", "train.steps=500", "train.warmup_steps=150", "train.batch_size=32",
          "train.log_interval=100", "eval.interval=200", "eval.episodes=2", "eval.num_envs=2",
          "checkpoint.interval=0", "train.buffer_capacity=1000", "algo.hidden=[32,32]", "train.num_envs=2"]


def test_online_resume_is_exact(compose_cfg, tmp_path):
    full = trainer.run(compose_cfg(*ONLINE, f"run_dir={tmp_path / 'full'}"))
    resumed = run_interrupted_then_resumed(compose_cfg, OnlineRegime, tmp_path / "cut", 338, ONLINE)
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
    assert full["final_returns"] == resumed["final_returns"]
    assert full["steps"] == resumed["steps"] == 500


@pytest.fixture(scope="module")
def random_hopper_file(tmp_path_factory):
    from rlkit.data.collect import collect_to_file

    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return collect_to_file("hopper-random-v2", steps=3000, seed=0, out=path, num_envs=4)


def offline_overrides(path):
    return ["algo=bc", "env=hopper-random", f"env.dataset.path={path}", "env.dataset.source=file",
            "train.steps=300", "train.log_interval=50", "eval.interval=100", "eval.episodes=2",
            "eval.num_envs=2", "checkpoint.interval=100", "algo.hidden=[32,32]", "train.batch_size=64"]


def test_offline_resume_is_exact(compose_cfg, tmp_path, random_hopper_file):
    overrides = offline_overrides(random_hopper_file)
    full = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))
    resumed = run_interrupted_then_resumed(compose_cfg, OfflineRegime, tmp_path / "cut", 137,
                                           overrides)
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
    assert full["final_normalized_score"] == resumed["final_normalized_score"]
    assert resumed["dataset_provenance"]["source"] == "collected"


def test_changed_config_and_corrupt_checkpoint_are_refused(compose_cfg, tmp_path, random_hopper_file):
    overrides = offline_overrides(random_hopper_file)
    run_dir = tmp_path / "run"
    trainer.run(compose_cfg(*overrides, "train.steps=100", f"run_dir={run_dir}"))
    with pytest.raises(CheckpointError, match="differs in: algo.lr"):
        trainer.run(compose_cfg(*overrides, "algo.lr=1e-3", f"run_dir={run_dir}", "resume=true"))
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="holds no intact checkpoint"):
        trainer.run(compose_cfg(*overrides, f"run_dir={run_dir}", "resume=true"))
    assert (newest.parent / (newest.name + ".corrupt")).exists()  # set aside, never deleted


def test_truncated_newest_checkpoint_resumes_from_the_previous_one(compose_cfg, tmp_path, random_hopper_file,
                                                                    capsys):
    """A cut-short newest checkpoint: one warning naming it, the file renamed aside, and the run continues
    exactly from the previous checkpoint (same metrics as the uninterrupted run)."""
    overrides = offline_overrides(random_hopper_file)
    run_dir = tmp_path / "run"
    trainer.run(compose_cfg(*overrides, f"run_dir={run_dir}"))  # checkpoints kept: steps 200 and 300
    full = metric_records(run_dir)
    newest = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    capsys.readouterr()
    summary = trainer.run(compose_cfg(*overrides, f"run_dir={run_dir}", "resume=true"))
    err = capsys.readouterr().err
    assert f"{newest.name}' is corrupt or truncated" in err and "resuming from the previous checkpoint" in err
    assert (newest.parent / (newest.name + ".corrupt")).exists()
    assert summary["steps"] == 300 and metric_records(run_dir) == full


def test_preemption_signal_checkpoints_then_requeued_job_resumes_exactly(compose_cfg, tmp_path, random_hopper_file):
    """A Slurm/submitit preemption: SIGUSR2 arrives mid-step; the run finishes that step, saves a checkpoint,
    then hands the signal to the handler installed before it (submitit's requeue, here a stand-in that
    exits). The requeued job, the same command with ``resume=auto``, ends exactly as an uninterrupted run."""
    import os
    import signal

    overrides = offline_overrides(random_hopper_file)
    trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))

    forwarded = []

    def requeue_and_exit(signum, frame):
        forwarded.append(signum)
        raise SystemExit(-1)

    cut = tmp_path / "cut"
    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    try:
        with at_step(OfflineRegime, 137, lambda: os.kill(os.getpid(), signal.SIGUSR2)), pytest.raises(SystemExit):
            trainer.run(compose_cfg(*overrides, f"run_dir={cut}", "resume=auto"))
        assert forwarded == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is requeue_and_exit  # restored for the requeue
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert sorted(p.name for p in (cut / "checkpoints").iterdir())[-1] == "step_0000000138.pt"
    assert json.loads((cut / "summary.json").read_text())["finished"] is False
    resumed = trainer.run(compose_cfg(*overrides, f"run_dir={cut}", "resume=auto"))
    assert resumed["finished"] is True and resumed["steps"] == 300
    assert metric_records(tmp_path / "full") == metric_records(cut)


def test_auto_resume_starts_fresh_and_keeps_an_uncheckpointed_attempt(compose_cfg, tmp_path, random_hopper_file):
    overrides = offline_overrides(random_hopper_file) + ["train.steps=60", "eval.interval=0"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 50, "train/loss": 1.0}\n')  # killed before a checkpoint
    summary = trainer.run(compose_cfg(*overrides, f"run_dir={run_dir}", "resume=auto"))
    assert summary["finished"] is True and summary["steps"] == 60
    aside = list(run_dir.glob("abandoned-*/metrics.jsonl"))
    assert len(aside) == 1 and '"step": 50' in aside[0].read_text()
    assert '"step": 50, "train/loss": 1.0' not in (run_dir / "metrics.jsonl").read_text()


def test_checkpoints_from_before_a_new_config_key_stay_resumable(compose_cfg):
    """A key added to config.yaml after a checkpoint was written (here eval.protocol) does not block the
    resume while it sits at its default (the old behaviour); set otherwise, or any changed key, it does."""
    from rlkit.config import config_fingerprint, resume_differences

    _, current = config_fingerprint(compose_cfg("algo=sac", "env=pendulum"))
    older = {k: v for k, v in current.items() if k != "eval.protocol"}
    assert current["eval.protocol"] == "assigned" and resume_differences(older, current) == []
    _, other = config_fingerprint(compose_cfg("algo=sac", "env=pendulum", "eval.protocol=first_finished"))
    assert resume_differences(older, other) == ["eval.protocol"]
    _, changed = config_fingerprint(compose_cfg("algo=sac", "env=pendulum", "algo.gamma=0.9"))
    assert resume_differences(older, changed) == ["algo.gamma"]


def test_a_run_in_a_worker_thread_trains(compose_cfg, tmp_path):
    """Signal handlers can only be installed from the main thread; a run started from another thread (a
    notebook, a thread pool) trains without them instead of failing."""
    import threading

    cfg = compose_cfg(*ONLINE, "train.steps=200", "eval.interval=0", f"run_dir={tmp_path / 'run'}")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("summary", trainer.run(cfg)))
    worker.start()
    worker.join()
    assert result["summary"]["finished"] and result["summary"]["steps"] == 200


def test_report_leaves_out_runs_stopped_before_their_first_evaluation(compose_cfg, tmp_path, random_hopper_file):
    """`rlkit report` on a sweep where one run was stopped before its first evaluation: that run has no score
    (``final_return: null``), is named and left out of the table; with no scored run at all, one line says so."""
    from rlkit.errors import ConfigError
    from rlkit.evaluation.report import build_report

    overrides = offline_overrides(random_hopper_file)
    trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'sweep' / 'done'}"))
    with at_step(OfflineRegime, 60, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'sweep' / 'cut'}"))
    cut = json.loads((tmp_path / "sweep" / "cut" / "summary.json").read_text())
    assert cut["final_return"] is None and cut["steps"] == 60
    text = build_report([str(tmp_path / "sweep")], reps=20)
    assert "1 runs. Left out, stopped before their first evaluation:" in text
    assert str(tmp_path / "sweep" / "cut") in text
    assert "| bc | hopper-random | 1 |" in text
    with pytest.raises(ConfigError, match="none of the 1 runs .* reached an evaluation"):
        build_report([str(tmp_path / "sweep" / "cut")], reps=20)
