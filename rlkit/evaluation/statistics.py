"""Aggregate statistics over runs and tasks, with rliable semantics (Agarwal et al. 2021).

Scores are a matrix ``X`` of shape ``(runs, tasks)`` (normalised scores, one row per seed).

* ``iqm``: interquartile mean -- the 25 %-trimmed mean of all entries (``scipy.stats.trim_mean``).
* ``optimality_gap``: ``mean(max(γ - x, 0))`` with threshold ``γ`` (1.0 for fractions).
* ``stratified_bootstrap_ci``: percentile confidence interval of a statistic, resampling runs with
  replacement *within each task* (column), ``reps`` times.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def _as_matrix(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got shape {x.shape}")
    return x


def iqm(scores) -> float:
    return float(stats.trim_mean(_as_matrix(scores).reshape(-1), proportiontocut=0.25))


def mean(scores) -> float:
    return float(_as_matrix(scores).mean())


def median(scores) -> float:
    """Median over tasks of the per-task mean score (the Atari convention)."""
    return float(np.median(_as_matrix(scores).mean(axis=0)))


def optimality_gap(scores, threshold: float = 1.0) -> float:
    return float(np.maximum(threshold - _as_matrix(scores), 0.0).mean())


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": mean,
    "median": median,
    "iqm": iqm,
    "optimality_gap": optimality_gap,
}


def stratified_bootstrap_ci(scores, statistic: Callable[[np.ndarray], float] = iqm, reps: int = 2000,
                            confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(point, low, high)``: the statistic and its percentile CI under a stratified bootstrap."""
    x = _as_matrix(scores)
    runs, tasks = x.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = np.take_along_axis(np.broadcast_to(x, (reps, runs, tasks)), rows, axis=1)
    values = np.array([statistic(r) for r in resampled])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(statistic(x)), float(low), float(high)


def performance_profile(scores, taus: np.ndarray) -> np.ndarray:
    """Fraction of runs (pooled over tasks) whose score exceeds each threshold ``tau``."""
    x = _as_matrix(scores).reshape(-1)
    return (x[None, :] > np.asarray(taus)[:, None]).mean(axis=1)
