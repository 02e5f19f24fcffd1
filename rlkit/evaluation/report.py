"""``rlkit report``: aggregate runs' ``summary.json`` files into per-task and aggregate tables (with
stratified-bootstrap confidence intervals over seeds), saved as Markdown and CSV, and learning curves
from ``metrics.jsonl`` drawn to a PNG."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.errors import ConfigError
from rlkit.evaluation import statistics as st
from rlkit.logger import read_metrics
from rlkit.utils import atomic_write_text


def find_runs(paths: list[str]) -> list[Path]:
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").exists():
            runs.append(p)
        elif p.is_dir():
            runs.extend(sorted(s.parent for s in p.rglob("summary.json")))
        else:
            raise ConfigError(f"'{p}' is not a directory; pass run directories or folders that contain runs")
    if not runs:
        raise ConfigError(f"no summary.json under {', '.join(paths)}; finished runs write one")
    return runs


def load_summaries(runs: list[Path]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        try:
            summary = json.loads((run / "summary.json").read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"'{run / 'summary.json'}' is not valid JSON ({exc.msg})") from exc
        summary["run_dir"] = str(run)
        out.append(summary)
    return out


def method(summary: dict[str, Any]) -> str:
    """The label a run is grouped under: its algorithm, with ``+<addon>`` when it ran with an add-on."""
    addon = summary.get("addon")
    return f"{summary['algo']}+{addon}" if addon else str(summary["algo"])


def _score(summary: dict[str, Any]) -> float:
    s = summary.get("final_normalized_score")
    return float(s if s is not None else summary.get("final_return", float("nan")))


def per_task_rows(summaries: list[dict[str, Any]], reps: int) -> list[dict[str, Any]]:
    # runs measured under different evaluation protocols are never averaged together
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        groups[(method(s), s["env"], s.get("eval_protocol") or "")].append(s)
    rows = []
    for (algo, env, _), items in sorted(groups.items()):
        scores = np.array([_score(s) for s in items])
        best = np.array([s.get("best_score") if s.get("best_score") is not None else np.nan for s in items])
        point, low, high = st.stratified_bootstrap_ci(scores[:, None], st.mean, reps=reps)
        rows.append({
            "algo": algo, "env": env, "seeds": len(items),
            "normalized": items[0].get("final_normalized_score") is not None,
            "table": items[0].get("score_table"),
            "final_mean": point, "final_std": float(scores.std()), "ci_low": low, "ci_high": high,
            "best_mean": float(np.nanmean(best)) if np.isfinite(best).any() else float("nan"),
            "steps": int(np.mean([s["steps"] for s in items])),
            "wall_time_s": float(np.mean([s["wall_time_s"] for s in items])),
            "provenance": (items[0].get("dataset_provenance") or {}).get("source"),
            "protocol": items[0].get("eval_protocol"),
        })
    return rows


def aggregate_rows(summaries: list[dict[str, Any]], reps: int) -> list[dict[str, Any]]:
    """Mean, median, IQM and optimality gap over tasks per algorithm (normalised scores only)."""
    by_algo: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    tables: dict[str, str] = {}
    for s in summaries:
        if s.get("final_normalized_score") is None:
            continue
        by_algo[method(s)][s["env"]].append(float(s["final_normalized_score"]))
        tables[method(s)] = s.get("score_table") or ""
    rows = []
    for algo, tasks in sorted(by_algo.items()):
        n = min(len(v) for v in tasks.values())
        matrix = np.array([v[:n] for v in tasks.values()]).T  # (runs, tasks)
        threshold = 100.0 if tables[algo] == "d4rl" else 1.0
        row: dict[str, Any] = {"algo": algo, "tasks": matrix.shape[1], "seeds": n}
        stats_fns = {"mean": st.mean, "median": st.median, "iqm": st.iqm,
                     "optimality_gap": lambda x, t=threshold: st.optimality_gap(x, t)}
        for name, fn in stats_fns.items():
            point, low, high = st.stratified_bootstrap_ci(matrix, fn, reps=reps)
            row[name], row[f"{name}_ci"] = point, (low, high)
        rows.append(row)
    return rows


def phase_boundary(records: list[dict[str, Any]]) -> int | None:
    """The step where an ``offline_to_online`` run's online phase starts: the last step logged in the
    ``offline`` phase (its end-of-phase evaluation), when some record is tagged ``online``; else None."""
    offline = [r["step"] for r in records if r.get("phase") == "offline"]
    online = any(r.get("phase") == "online" for r in records)
    return max(offline) if offline and online else None


def curve_points(summaries: list[dict[str, Any]]):
    """Per env and method, the runs' (steps, scores) evaluation curves; per env, the phase boundaries of its
    ``offline_to_online`` runs (offline gradient steps, then online env steps, on one step axis)."""
    curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
    boundaries: dict[str, set[int]] = defaultdict(set)
    for s in summaries:
        metrics_path = Path(s["run_dir"]) / "metrics.jsonl"
        if not metrics_path.exists():
            continue
        records = read_metrics(metrics_path)
        key = "eval/normalized_score" if s.get("final_normalized_score") is not None else "eval/return_mean"
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            steps, values = map(np.array, zip(*points))
            curves[s["env"]][method(s)].append((steps, values))
            boundary = phase_boundary(records)
            if boundary is not None:
                boundaries[s["env"]].add(boundary)
    return curves, boundaries


def learning_curves(summaries: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, boundaries = curve_points(summaries)
    if not curves:
        return None
    envs = sorted(curves)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for algo, runs in sorted(curves[env].items()):
            grid = np.unique(np.concatenate([s for s, _ in runs]))
            values = np.array([np.interp(grid, s, v) for s, v in runs])
            mean = values.mean(0)
            ax.plot(grid, mean, label=f"{algo} ({len(runs)})")
            if len(runs) > 1:
                ax.fill_between(grid, values.min(0), values.max(0), alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("step")
        if boundaries.get(env):
            first, left = min(boundaries[env]), ax.get_xlim()[0]
            ax.axvspan(left, first, color="0.92", zorder=0)
            ax.set_xlim(left=left)
            for b in sorted(boundaries[env]):
                ax.axvline(b, color="k", linestyle="--", linewidth=1)
            for text, align in (("offline ", "right"), (" online", "left")):
                ax.text(first, 0.97, text, transform=ax.get_xaxis_transform(), ha=align, va="top", fontsize=8)
            ax.set_xlabel("offline gradient steps | online env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("score")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _domain(summary: dict[str, Any]) -> str:
    if summary.get("urlb_domain"):
        return str(summary["urlb_domain"])
    env = str(summary.get("env", ""))
    return env.removeprefix("urlb-").split("_")[0]


def urlb_tables(summaries: list[dict[str, Any]], reps: int = 2000) -> dict[str, list[dict[str, Any]]]:
    """Per domain, one row per algorithm: per-task normalised mean with its stratified-bootstrap 95% CI over
    seeds, and IQM / optimality gap over seeds x tasks with CIs (rliable semantics, Agarwal et al. 2021)."""
    runs: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for s in summaries:
        if s.get("score_table") != "urlb" or s.get("final_normalized_score") is None:
            continue
        runs[_domain(s)][method(s)][s["env"]].append(float(s["final_normalized_score"]))
    tables: dict[str, list[dict[str, Any]]] = {}
    for domain in sorted(runs):
        rows = []
        for algo, tasks in sorted(runs[domain].items()):
            row: dict[str, Any] = {"algo": algo, "tasks": {}}
            for env, scores in sorted(tasks.items()):
                row["tasks"][env] = (*st.stratified_bootstrap_ci(np.array(scores)[:, None], st.mean, reps=reps),
                                     len(scores))
            seeds = min(len(v) for v in tasks.values())
            matrix = np.array([v[:seeds] for _, v in sorted(tasks.items())]).T  # (seeds, tasks)
            row["seeds"] = seeds
            row["iqm"] = st.stratified_bootstrap_ci(matrix, st.iqm, reps=reps)
            row["optimality_gap"] = st.stratified_bootstrap_ci(matrix, st.optimality_gap, reps=reps)
            rows.append(row)
        tables[domain] = rows
    return tables


def urlb_markdown(tables: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: one table per URLB domain (per-task means, IQM and optimality gap with CIs)."""

    def cell(point: float, low: float, high: float) -> str:
        return f"{point:.3f} [{low:.3f}, {high:.3f}]"

    lines = ["## URLB per domain (expert-normalised final scores, 95% stratified-bootstrap CIs)"]
    for domain, rows in tables.items():
        envs = sorted({env for r in rows for env in r["tasks"]})
        lines += ["", f"### {domain}", "", "| algo | seeds | " + " | ".join(envs) + " | IQM | optimality gap |",
                  "|---" * (len(envs) + 4) + "|"]
        for r in rows:
            cells = [cell(*r["tasks"][e][:3]) + f" (n={r['tasks'][e][3]})" if e in r["tasks"] else "-" for e in envs]
            lines.append(f"| {r['algo']} | {r['seeds']} | " + " | ".join(cells)
                         + f" | {cell(*r['iqm'])} | {cell(*r['optimality_gap'])} |")
    return "\n".join(lines) + "\n"


def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.2f}"


def evaluated(summaries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The summaries with a final evaluation, and the run directories of those without one (a run stopped
    before its first evaluation writes ``final_return: null``): they have no score to average."""
    scored = [s for s in summaries if s.get("final_return") is not None]
    return scored, [s["run_dir"] for s in summaries if s.get("final_return") is None]


def build_report(paths: list[str], out_dir: str | None = None, reps: int = 2000) -> str:
    runs = find_runs(paths)
    summaries, unscored = evaluated(load_summaries(runs))
    if not summaries:
        raise ConfigError(f"none of the {len(unscored)} runs under {', '.join(paths)} reached an evaluation "
                          "(stopped before the first); resume them or lower eval.interval")
    out = Path(out_dir or paths[0])
    if out.is_file():
        out = out.parent
    task_rows = per_task_rows(summaries, reps)
    agg_rows = aggregate_rows(summaries, reps)
    count = f"{len(summaries)} runs." + (f" Left out, stopped before their first evaluation: {', '.join(unscored)}."
                                         if unscored else "")
    lines = ["# rlkit report", "", count, "", "## Per task (final evaluation)", "",
             "| algo | env | seeds | score mean ± std | 95% CI | best (mean) | steps | data | protocol |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in task_rows:
        unit = f" ({r['table']})" if r["normalized"] else " (return)"
        lines.append(f"| {r['algo']} | {r['env']} | {r['seeds']} | {_fmt(r['final_mean'])} ± "
                     f"{_fmt(r['final_std'])}{unit} | [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
                     f"{_fmt(r['best_mean'])} | {r['steps']} | {r['provenance'] or '-'} | {r['protocol'] or '-'} |")
    if agg_rows:
        lines += ["", "## Aggregate over tasks (normalized scores, 95% stratified bootstrap CIs)", "",
                  "| algo | tasks | seeds | mean | median | IQM | optimality gap |", "|---|---|---|---|---|---|---|"]
        for r in agg_rows:
            cells = [f"{_fmt(r[k])} [{_fmt(r[k + '_ci'][0])}, {_fmt(r[k + '_ci'][1])}]"
                     for k in ("mean", "median", "iqm", "optimality_gap")]
            lines.append(f"| {r['algo']} | {r['tasks']} | {r['seeds']} | " + " | ".join(cells) + " |")
    urlb = urlb_tables(summaries, reps)
    if urlb:
        lines += ["", urlb_markdown(urlb).rstrip()]
        from rlkit.evaluation.rliable_plots import urlb_rliable

        lines += ["", urlb_rliable(summaries, out, reps).rstrip()]
    png = learning_curves(summaries, out / "learning_curves.png")
    if png:
        lines += ["", f"Learning curves: {png}"]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text)
    with open(out / "report.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(task_rows[0].keys()))
        writer.writeheader()
        writer.writerows(task_rows)
    (out / "report.csv.tmp").replace(out / "report.csv")
    return text
