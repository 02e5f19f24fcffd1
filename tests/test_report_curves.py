"""`rlkit report` learning curves: an offline_to_online run's two phases share one step axis (offline gradient
steps, then online env steps) with the boundary marked."""

from __future__ import annotations

from rlkit import trainer
from rlkit.evaluation.report import build_report, curve_points, load_summaries, phase_boundary
from rlkit.logger import read_metrics
from tests.test_offline_to_online import IQL, OFFLINE_STEPS, o2o_overrides


def test_phase_boundary_is_the_last_offline_step():
    records = [{"step": 25, "phase": "offline"}, {"step": 40, "phase": "offline"}, {"step": 50, "phase": "online"}]
    assert phase_boundary(records) == 40
    assert phase_boundary(records[:2]) is None  # offline phase only: nothing to mark
    assert phase_boundary([{"step": 5}]) is None  # single-phase regimes tag no phase


def test_offline_to_online_curve_marks_the_boundary(compose_cfg, tmp_path, hopper_random_file):
    run_dir = tmp_path / "o2o"
    trainer.run(compose_cfg(*o2o_overrides(hopper_random_file, *IQL), f"run_dir={run_dir}"))
    summaries = load_summaries([run_dir])
    curves, boundaries = curve_points(summaries)
    assert boundaries == {"hopper-random": {OFFLINE_STEPS}}
    (steps, _), = curves["hopper-random"]["iql"]
    assert steps.min() < OFFLINE_STEPS < steps.max()  # evaluations on both sides of the boundary, one axis
    phases = {r["step"]: r["phase"] for r in read_metrics(run_dir / "metrics.jsonl") if "eval/return_mean" in r}
    assert phases[OFFLINE_STEPS] == "offline" and phases[int(steps.max())] == "online"
    build_report([str(run_dir)], reps=20)
    assert (run_dir / "learning_curves.png").stat().st_size > 1000
