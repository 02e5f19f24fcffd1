"""``rlkit diagnose RUN_DIR``: does this run's Q diverge, or is it predicted to?

Reads ``RUN_DIR/metrics.jsonl`` (or, when that is missing, the TensorBoard events under ``RUN_DIR/tb`` or
``RUN_DIR``), judges the run with :func:`rlkit.diagnostics.divergence.diagnose`, prints the verdict, and
writes ``diagnose.json`` (the verdict and every fit) and ``diagnose.png`` (|Q|, parameter norm and SEEM over
steps) next to the metrics.  Exit code 0: stable; 1: diverged or predicted to diverge; 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from rlkit.diagnostics.divergence import Thresholds, Verdict, diagnose
from rlkit.errors import ConfigError, DatasetError
from rlkit.logger import read_metrics
from rlkit.utils import atomic_write_text

EPILOG = """\
examples:
  rlkit train algo=td3bc env=hopper-medium diagnostics.seem.interval=10000
  rlkit diagnose runs/hopper-medium/td3bc/seed0-...
  rlkit diagnose RUN_DIR --optimizer sgd       # also predict the crash step
"""


def find_tb_dir(run_dir: Path) -> Path | None:
    for candidate in (run_dir / "tb", run_dir):
        if candidate.is_dir() and any(candidate.glob("events.out.tfevents.*")):
            return candidate
    return None


def read_tensorboard(tb_dir: Path) -> list[dict[str, Any]]:
    """Scalar events of a TensorBoard directory as ``metrics.jsonl``-style records (one per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    by_step: dict[int, dict[str, Any]] = {}
    for tag in acc.Tags().get("scalars", []):
        for event in acc.Scalars(tag):
            by_step.setdefault(int(event.step), {"step": int(event.step)})[tag] = float(event.value)
    return [by_step[s] for s in sorted(by_step)]


def load_records(path: str | Path) -> tuple[list[dict[str, Any]], Path, str]:
    """``(records, directory the outputs go to, source)`` for a run directory or a metrics.jsonl file."""
    path = Path(path)
    if path.is_file():
        run_dir, metrics = path.parent, path
    elif path.is_dir():
        run_dir, metrics = path, path / "metrics.jsonl"
    else:
        raise DatasetError(f"'{path}' does not exist; pass a run directory (the run_dir of `rlkit train`)")
    if metrics.is_file():
        records, source = read_metrics(metrics), str(metrics)
    else:
        tb_dir = find_tb_dir(run_dir)
        if tb_dir is None:
            raise DatasetError(f"'{run_dir}' holds neither metrics.jsonl nor TensorBoard events; pass the "
                               "run_dir of an `rlkit train` run")
        records, source = read_tensorboard(tb_dir), str(tb_dir)
    if not records:
        raise DatasetError(f"no metric records in {source}; is the run still starting?")
    return records, run_dir, source


def run_optimizer(run_dir: Path) -> str | None:
    """``algo.optimizer`` from the run's config.yaml when the algorithm records one."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        algo = OmegaConf.load(cfg_path).get("algo") or {}
        value = algo.get("optimizer")
    except Exception:  # a damaged config does not stop a diagnosis of the metrics
        return None
    return str(value) if value else None


def _fmt_fit(fit) -> str:
    if fit is None:
        return "n/a"
    name = {"power": "order", "exponential": "rate", "blowup": "exponent"}[fit.kind]
    extra = f", t*={fit.t_star:.0f}" if fit.t_star is not None else ""
    return f"{name} {fit.param:.3g} (R²={fit.r2:.3f}{extra})"


def summary_lines(v: Verdict, source: str) -> list[str]:
    lines = [f"verdict: {v.status.upper()}  ({source}, last step {v.last_step})"]
    if v.diverged_at is not None:
        lines.append(f"  diverged at step {v.diverged_at}: |Q| beyond "
                     + (f"{v.thresholds.bound_factor:g} × max|r|/(1-γ) = "
                        f"{v.thresholds.bound_factor * v.q_bound:.4g}" if v.q_bound else "the fallback growth rule"))
    if v.alarm_at is not None:
        lines.append(f"  SEEM alarm at step {v.alarm_at} (normalised SEEM > {v.thresholds.seem_threshold:g} for "
                     f"{v.thresholds.consecutive} consecutive evaluations)")
    if v.lead_steps is not None:
        lines.append(f"  early-warning lead: {v.lead_steps} steps")
    if v.status == "predicted":
        lines.append("  Q is still within bounds but SEEM predicts divergence (try algo.critic_layernorm=true)")
    for label, report in (("|Q|", v.q_growth), ("||θ||", v.norm_growth)):
        if report is not None:
            lines.append(f"  growth of {label} from step {v.growth_start}: power-law {_fmt_fit(report.power)}; "
                         f"exponential {_fmt_fit(report.exponential)}"
                         + (f"; blow-up {_fmt_fit(report.blowup)}" if v.optimizer == "sgd" else ""))
    if v.optimizer == "sgd":
        crash = "none predicted (no finite-time blow-up fits)" if v.crash_step is None else f"{v.crash_step:.0f}"
        lines.append(f"  predicted crash step (float32 overflow, SGD): {crash}")
    lines.extend(f"  note: {n}" for n in v.notes)
    return lines


def cmd_diagnose(args: list[str]) -> int:
    from rlkit.cli import ArgumentParser

    parser = ArgumentParser(prog="rlkit diagnose", epilog=EPILOG,
                            description="Judge whether a run's Q-values diverge or are predicted to (SEEM), "
                                        "fit growth orders, write diagnose.json and diagnose.png.",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="run directory (or its metrics.jsonl)")
    parser.add_argument("--optimizer", choices=("auto", "adam", "sgd"), default="auto",
                        help="optimizer of the critic; sgd also predicts the crash step (auto: config.yaml's "
                             "algo.optimizer, else adam)")
    th = Thresholds()
    parser.add_argument("--seem-threshold", type=float, default=th.seem_threshold,
                        help=f"normalised SEEM alarm level (default {th.seem_threshold})")
    parser.add_argument("--consecutive", type=int, default=th.consecutive,
                        help=f"evaluations above the threshold needed for an alarm (default {th.consecutive})")
    parser.add_argument("--bound-factor", type=float, default=th.bound_factor,
                        help=f"diverged when |Q| > factor · max|r|/(1-γ) (default {th.bound_factor:g})")
    parser.add_argument("--q-bound", type=float, default=None,
                        help="max|r|/(1-γ) in the critic's reward units, when the run did not log diag/q_bound")
    parser.add_argument("--no-plot", action="store_true", help="skip diagnose.png")
    parser.add_argument("--out", default=None, help="output directory (default: next to the metrics)")
    ns = parser.parse_args(args)
    if ns.consecutive < 1 or not math.isfinite(ns.seem_threshold) or ns.bound_factor <= 0:
        raise ConfigError("--consecutive must be >= 1, --seem-threshold finite and --bound-factor positive")

    records, run_dir, source = load_records(ns.run_dir)
    optimizer = ns.optimizer if ns.optimizer != "auto" else (run_optimizer(run_dir) or "adam")
    thresholds = Thresholds(ns.seem_threshold, ns.consecutive, ns.bound_factor, th.fallback_orders)
    verdict = diagnose(records, optimizer=optimizer, thresholds=thresholds, q_bound=ns.q_bound)
    if not verdict.q_key:
        raise DatasetError(f"{source} has no Q statistics (diag/q_max or train/q_mean); train with "
                           "diagnostics.seem.interval > 0")
    out_dir = Path(ns.out) if ns.out else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"run_dir": str(run_dir), "source": source, **verdict.to_dict()}
    atomic_write_text(out_dir / "diagnose.json", json.dumps(payload, indent=2, default=_json_default))
    lines = summary_lines(verdict, source)
    if not ns.no_plot:
        from rlkit.diagnostics.plot import plot_diagnosis

        png = plot_diagnosis(records, verdict, out_dir / "diagnose.png", title=run_dir.name)
        lines.append(f"  wrote {out_dir / 'diagnose.json'} and {png}")
    else:
        lines.append(f"  wrote {out_dir / 'diagnose.json'}")
    print("\n".join(lines))
    return verdict.exit_code


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
