"""The rliable figures of URLB papers (Agarwal et al. 2021; as reported by URLB, CIC, MOSS and Self-Reference):
per method, over all its runs (seeds x tasks, expert-normalised final scores), the median, IQM, mean and
optimality gap with 95% stratified-bootstrap CIs, and the performance profile ``P(score > tau)`` with bootstrap
bands, as PNG plots and a Markdown table; a method with an add-on (``rnd+self_reference``) sits beside its
base agent, and a side-by-side table gives the add-on's change of each aggregate.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.evaluation import statistics as st

METRICS = {"median": st.median, "iqm": st.iqm, "mean": st.mean, "optimality_gap": st.optimality_gap}
TAUS = np.linspace(0.0, 1.2, 61)
TITLES = {"median": "Median", "iqm": "IQM", "mean": "Mean", "optimality_gap": "Optimality Gap"}


def _method(summary: dict[str, Any]) -> str:
    addon = summary.get("addon")
    return f"{summary['algo']}+{addon}" if addon else str(summary["algo"])


def urlb_matrices(summaries: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per method, the ``(seeds, tasks)`` matrix of its URLB runs (tasks it ran, seeds cut to the fewest)."""
    runs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in summaries:
        if s.get("score_table") == "urlb" and s.get("final_normalized_score") is not None:
            runs[_method(s)][s["env"]].append(float(s["final_normalized_score"]))
    out = {}
    for name, tasks in runs.items():
        seeds = min(len(v) for v in tasks.values())
        out[name] = np.array([v[:seeds] for _, v in sorted(tasks.items())]).T
    return dict(sorted(out.items(), key=lambda kv: (kv[0].split("+")[0], kv[0])))


def aggregates(matrices: dict[str, np.ndarray], reps: int) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{method: {metric: (point, low, high)}}`` with stratified-bootstrap 95% CIs."""
    return {m: {k: st.stratified_bootstrap_ci(x, fn, reps=reps) for k, fn in METRICS.items()}
            for m, x in matrices.items()}


def profile_bands(x: np.ndarray, reps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Performance profile over :data:`TAUS` and its 95% stratified-bootstrap band."""
    rng = np.random.default_rng(seed)
    runs, tasks = x.shape
    point = st.performance_profile(x, TAUS)
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    boots = np.array([st.performance_profile(np.take_along_axis(x, r, axis=0), TAUS) for r in rows])
    low, high = np.quantile(boots, [0.025, 0.975], axis=0)
    return point, low, high


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


def plot_aggregates(agg: dict[str, dict[str, tuple[float, float, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(agg)
    colors = _colors(names)
    fig, axes = plt.subplots(1, 4, figsize=(13, 0.45 * len(names) + 1.4), sharey=True)
    for ax, metric in zip(axes, METRICS):
        for i, name in enumerate(names):
            point, low, high = agg[name][metric]
            ax.barh(i, high - low, left=low, height=0.6, color=colors[name], alpha=0.75,
                    hatch="//" if "+" in name else None)
            ax.plot([point, point], [i - 0.3, i + 0.3], color="k", lw=1.5)
        ax.set_title(TITLES[metric])
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("expert-normalised score")
    axes[0].set_yticks(range(len(names)), names)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_profiles(matrices: dict[str, np.ndarray], reps: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = _colors(list(matrices))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, x in matrices.items():
        point, low, high = profile_bands(x, reps)
        ax.plot(TAUS, point, color=colors[name], ls="--" if "+" in name else "-", label=name)
        ax.fill_between(TAUS, low, high, color=colors[name], alpha=0.15)
    ax.set_xlabel(r"expert-normalised score $\tau$")
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _colors(names: list[str]) -> dict[str, Any]:
    import matplotlib

    bases = sorted({n.split("+")[0] for n in names})
    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(bases.index(n.split("+")[0]) % 10) for n in names}


def side_by_side(agg: dict[str, dict[str, tuple[float, float, float]]]) -> list[tuple[str, str]]:
    """Pairs ``(base, base+addon)`` present in ``agg``."""
    return [(n.split("+")[0], n) for n in agg if "+" in n and n.split("+")[0] in agg]


def urlb_rliable(summaries: list[dict[str, Any]], out_dir: Path, reps: int = 2000) -> str:
    """Write ``urlb_aggregates.png`` and ``urlb_profiles.png`` to ``out_dir``; return the Markdown tables."""
    matrices = urlb_matrices(summaries)
    if not matrices:
        return ""
    agg = aggregates(matrices, reps)

    def cell(v: tuple[float, float, float]) -> str:
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"

    lines = ["## URLB aggregates (rliable: all runs of a method, expert-normalised; 95% stratified-bootstrap CIs)",
             "", "| method | runs (seeds x tasks) | median | IQM | mean | optimality gap |",
             "|---|---|---|---|---|---|"]
    for name, x in matrices.items():
        lines.append(f"| {name} | {x.shape[0]} x {x.shape[1]} | " + " | ".join(cell(agg[name][k]) for k in METRICS)
                     + " |")
    pairs = side_by_side(agg)
    if pairs:
        lines += ["", "### With and without the add-on", "",
                  "| agent | IQM base | IQM +add-on | change | OG base | OG +add-on | change |",
                  "|---|---|---|---|---|---|---|"]
        for base, plus in pairs:
            b_iqm, p_iqm = agg[base]["iqm"][0], agg[plus]["iqm"][0]
            b_og, p_og = agg[base]["optimality_gap"][0], agg[plus]["optimality_gap"][0]
            d_iqm = 100 * (p_iqm - b_iqm) / max(abs(b_iqm), 1e-9)
            d_og = 100 * (p_og - b_og) / max(abs(b_og), 1e-9)
            lines.append(f"| {plus} | {b_iqm:.3f} | {p_iqm:.3f} | {d_iqm:+.1f}% | {b_og:.3f} | {p_og:.3f} "
                         f"| {d_og:+.1f}% |")
    a = plot_aggregates(agg, Path(out_dir) / "urlb_aggregates.png")
    p = plot_profiles(matrices, min(reps, 500), Path(out_dir) / "urlb_profiles.png")
    lines += ["", f"Aggregate intervals: {a}", f"Performance profiles: {p}"]
    return "\n".join(lines) + "\n"
