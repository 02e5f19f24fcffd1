"""The ``rlkit diagnose`` figure: |Q|, the critic's parameter norm and normalised SEEM over training steps,
with the divergence bound, the SEEM threshold, the alarm and the divergence step marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlkit.diagnostics.divergence import Verdict, q_series, series
from rlkit.utils import atomic_path


def plot_diagnosis(records: list[dict[str, Any]], verdict: Verdict, path: str | Path, title: str = "") -> Path:
    """Write a three-panel PNG to ``path`` (atomically) and return it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    _, q = q_series(records)
    norm = series(records, "diag/param_norm")
    seem = series(records, "diag/seem_normalized")
    fig, axes = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True)
    ax_q, ax_n, ax_s = axes

    finite = np.isfinite(q.values) & (q.values > 0)
    ax_q.semilogy(q.steps[finite], q.values[finite], color="tab:blue", lw=1.5, label=f"|Q| ({verdict.q_key})")
    if verdict.q_bound:
        ax_q.axhline(verdict.q_bound, color="grey", ls=":", lw=1, label="max|r|/(1-γ)")
        ax_q.axhline(verdict.q_bound * verdict.thresholds.bound_factor, color="tab:red", ls=":", lw=1,
                     label=f"divergence bound (×{verdict.thresholds.bound_factor:g})")
    ax_q.set_ylabel("|Q| on probe")

    if len(norm):
        ax_n.plot(norm.steps, norm.values, color="tab:green", lw=1.5)
    else:
        ax_n.text(0.5, 0.5, "parameter norm not logged", ha="center", va="center", transform=ax_n.transAxes)
    ax_n.set_ylabel("||θ_Q1||")

    if len(seem):
        ax_s.plot(seem.steps, seem.values, color="tab:purple", marker="o", ms=3, lw=1.2)
        ax_s.axhline(verdict.thresholds.seem_threshold, color="tab:red", ls=":", lw=1, label="alarm threshold")
        ax_s.axhline(0.0, color="grey", lw=0.6)
    else:
        ax_s.text(0.5, 0.5, "SEEM not logged (diagnostics.seem.interval=0)", ha="center", va="center",
                  transform=ax_s.transAxes)
    ax_s.set_ylabel("SEEM / ||A||_F")
    ax_s.set_xlabel("training step")

    for ax in axes:
        if verdict.alarm_at is not None:
            ax.axvline(verdict.alarm_at, color="tab:orange", ls="--", lw=1.2,
                       label="SEEM alarm" if ax is ax_q else None)
        if verdict.diverged_at is not None:
            ax.axvline(verdict.diverged_at, color="tab:red", ls="--", lw=1.2,
                       label="diverged" if ax is ax_q else None)
        if verdict.crash_step is not None and np.isfinite(verdict.crash_step):
            ax.axvline(verdict.crash_step, color="black", ls="-.", lw=1,
                       label="predicted crash (SGD)" if ax is ax_q else None)
        ax.grid(alpha=0.3)
    ax_q.legend(fontsize=8, loc="upper left")
    lead = f", lead {verdict.lead_steps} steps" if verdict.lead_steps is not None else ""
    fig.suptitle(f"{title}{': ' if title else ''}{verdict.status}{lead}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
