"""Divergence verdicts from logged metrics: growth-order fits, SGD crash-step prediction, SEEM alarm.

Input: the records of a run (``metrics.jsonl``, or its TensorBoard events), in particular the monitor's
``diag/q_max``, ``diag/param_norm``, ``diag/seem_normalized`` and ``diag/q_bound``
(:mod:`rlkit.diagnostics.monitor`); ``train/q_mean`` stands in for Q when diagnostics were off.

**Diverged** at the first logged step where ``|Q|`` is non-finite or exceeds ``bound_factor · q_bound``,
``q_bound = max|r'| / (1 - γ)`` the largest value any fixed point of the Bellman operator can take (so a
Q estimate 10× beyond it is not an estimate of any policy's return; the factor leaves room for the
transient overshoot of early TD learning; the SEEM authors' own code used 1000× for a similar purpose).
Without a bound (no diagnostics logged and none given), the weaker rule: ``|Q|`` is at least
``10^fallback_orders`` above its early level **and** still growing at the end of the run (power-law order
> 0.5 with R² > 0.9 over the last third), because legitimate learning from Q ≈ 0 can also gain orders of
magnitude but then levels off.

**Predicted** (the SEEM early warning, the paper's sign rule: SEEM > 0 predicts divergence) at the
``consecutive``-th consecutive evaluation with normalised SEEM above ``seem_threshold``.  Theory says any positive
value diverges; the threshold guards against round-off and against transient excursions.  Calibration on the
demonstration runs (TD3 without BC, hard target, hopper-random; ``tests/test_diagnose.py``): a stable critic's
rightmost eigenvalue sits in the cluster near 0 (|SEEM|/||A||_F ≲ 1e-3), but a LayerNorm critic on 1k
transitions showed isolated spikes up to 0.32 (121 evaluations: runs above 0.05 up to 3 long, above 0.1
never 2 in a row); self-excitation rose 0.04 → 0.17 → 0.37 → 0.56 over 75 steps and then held a
plateau of 0.72–0.77 (the paper's figure: ≈0.7–0.8) while Q exploded.  0.2 for 2 consecutive
evaluations has no false alarm on those runs, a factor 3.6 of margin below the plateau, and fires while
|Q| is still below ``q_bound``.

**Growth orders** (the SEEM paper's theory; its theorem statements not checked here; the fits are
measured, never assumed): over the growth segment (from the first step where ``|Q|`` exceeds ``q_bound`` -- or the
alarm, or the second half of the run when neither happened -- to the last finite value) least squares in log space of

* power law      ``log|y| = c + k log t``          (order k; working assumption with Adam: ``||θ|| ~ t``,
  ``Q ~ t^L`` for an L-layer ReLU critic, i.e. order 1 and ≈ L),
* exponential    ``log|y| = c + b t``               (rate b),
* finite-time blow-up ``log|y| = c - p log(t* - t)`` (``t* > t_end``; the SGD case: a norm obeying
  ``d||θ||/dt ∝ ||θ||^m``, m > 1, solves to ``(t* - t)^{-1/(m-1)}``),

each with its R².  For SGD runs the **crash step** is where the blow-up fit of ``|Q|`` reaches float32
overflow (``3.4e38``): ``t* - exp((c - log 3.4e38) / p)``; ``None`` when no finite-time blow-up fits
better than a power law (the best ``t*`` runs off to the edge of the search range).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
Q_KEYS = ("diag/q_max", "train/q_mean")


@dataclass(frozen=True)
class Thresholds:
    """Verdict thresholds (module docstring justifies the defaults)."""

    seem_threshold: float = 0.2
    consecutive: int = 2
    bound_factor: float = 10.0
    fallback_orders: float = 3.0


@dataclass(frozen=True)
class Fit:
    """One growth law fitted in log space: ``kind`` power | exponential | blowup."""

    kind: str
    coef: float       # c
    param: float      # order k, rate b, or exponent p
    r2: float
    start: int
    end: int
    t_star: float | None = None

    def log_predict(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if self.kind == "power":
            return self.coef + self.param * np.log(t)
        if self.kind == "exponential":
            return self.coef + self.param * t
        return self.coef - self.param * np.log(self.t_star - t)


@dataclass
class Series:
    """One metric over steps (sorted, the last record of a step wins)."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


def series(records: list[dict[str, Any]], key: str) -> Series:
    by_step: dict[int, float] = {}
    for rec in records:
        if key in rec and rec[key] is not None and "step" in rec:
            by_step[int(rec["step"])] = float(rec[key])
    steps = np.array(sorted(by_step), dtype=np.int64)
    return Series(steps, np.array([by_step[s] for s in steps], dtype=np.float64))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - pred) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res < 1e-12 else 0.0)


def _usable(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(values) & (np.abs(values) > 0) & (steps > 0)
    return steps[keep].astype(np.float64), np.log(np.abs(values[keep]))


def fit_power(steps: np.ndarray, values: np.ndarray) -> Fit | None:
    """``log|y| = c + k log t`` by least squares; None with fewer than 3 usable points."""
    t, ly = _usable(steps, values)
    if len(t) < 3:
        return None
    k, c = np.polyfit(np.log(t), ly, 1)
    return Fit("power", float(c), float(k), _r2(ly, c + k * np.log(t)), int(t[0]), int(t[-1]))


def fit_exponential(steps: np.ndarray, values: np.ndarray) -> Fit | None:
    """``log|y| = c + b t`` by least squares; None with fewer than 3 usable points."""
    t, ly = _usable(steps, values)
    if len(t) < 3:
        return None
    b, c = np.polyfit(t, ly, 1)
    return Fit("exponential", float(c), float(b), _r2(ly, c + b * t), int(t[0]), int(t[-1]))


def fit_blowup(steps: np.ndarray, values: np.ndarray, max_horizon: float = 1e3) -> Fit | None:
    """``log|y| = c - p log(t* - t)`` with ``t* = t_end + d``: for each ``d`` the best (c, p) is linear least
    squares; ``log d`` is searched (bounded scalar minimisation) over ``[1e-4, max_horizon]`` times the
    segment's span.  None when there are fewer than 4 usable points, when the best ``d`` sits at the upper
    edge (no finite-time blow-up distinguishable from slower growth) or when ``p <= 0``."""
    from scipy.optimize import minimize_scalar

    t, ly = _usable(steps, values)
    if len(t) < 4:
        return None
    span = max(t[-1] - t[0], 1.0)

    def solve(log_d: float) -> tuple[float, float, float]:
        x = -np.log(t[-1] + math.exp(log_d) - t)
        p, c = np.polyfit(x, ly, 1)
        return float(((ly - c - p * x) ** 2).sum()), float(c), float(p)

    lo, hi = math.log(1e-4 * span), math.log(max_horizon * span)
    grid = np.linspace(lo, hi, 60)
    best = grid[int(np.argmin([solve(g)[0] for g in grid]))]
    res = minimize_scalar(lambda g: solve(g)[0], bounds=(max(lo, best - 0.5), min(hi, best + 0.5)),
                          method="bounded", options={"xatol": 1e-4})
    log_d = float(res.x)
    if log_d > hi - 0.6:
        return None
    _, c, p = solve(log_d)
    if p <= 0:
        return None
    t_star = float(t[-1] + math.exp(log_d))
    pred = c - p * np.log(t_star - t)
    return Fit("blowup", c, p, _r2(ly, pred), int(t[0]), int(t[-1]), t_star)


def overflow_step(fit: Fit, limit: float = FLOAT32_MAX) -> float | None:
    """The step where the fitted ``|y|`` reaches ``limit`` (blow-up fits only: ``t* - exp((c - log limit)/p)``)."""
    if fit is None or fit.kind != "blowup":
        return None
    return float(fit.t_star - math.exp((fit.coef - math.log(limit)) / fit.param))


@dataclass
class GrowthReport:
    """Power-law, exponential (and blow-up) fits of one quantity over the growth segment."""

    power: Fit | None
    exponential: Fit | None
    blowup: Fit | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (asdict(v) if v is not None else None) for k, v in vars(self).items()}


def growth_report(s: Series, start: int, with_blowup: bool) -> GrowthReport | None:
    if len(s) == 0:
        return None
    sel = s.steps >= start
    steps, values = s.steps[sel], s.values[sel]
    return GrowthReport(fit_power(steps, values), fit_exponential(steps, values),
                        fit_blowup(steps, values) if with_blowup else None)


@dataclass
class Verdict:
    """The outcome of :func:`diagnose`; ``status`` is stable | predicted | diverged."""

    status: str
    diverged_at: int | None
    alarm_at: int | None
    lead_steps: int | None
    q_key: str
    q_bound: float | None
    growth_start: int | None
    q_growth: GrowthReport | None
    norm_growth: GrowthReport | None
    optimizer: str
    crash_step: float | None
    thresholds: Thresholds
    last_step: int
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "stable" else 1

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("q_growth", "norm_growth", "thresholds")}
        out["q_growth"] = self.q_growth.to_dict() if self.q_growth else None
        out["param_norm_growth"] = self.norm_growth.to_dict() if self.norm_growth else None
        out["thresholds"] = asdict(self.thresholds)
        out["exit_code"] = self.exit_code
        return out


def q_series(records: list[dict[str, Any]]) -> tuple[str, Series]:
    """The Q magnitude series: ``diag/q_max`` when logged, else ``train/q_mean``; ``("", empty)`` if neither."""
    for key in Q_KEYS:
        s = series(records, key)
        if len(s):
            return key, Series(s.steps, np.abs(s.values))
    return "", Series(np.zeros(0, np.int64), np.zeros(0))


def divergence_step(q: Series, q_bound: float | None, th: Thresholds) -> int | None:
    """First step where ``|Q|`` is non-finite or above ``bound_factor · q_bound`` (module docstring); with
    no bound, the fallback rule."""
    bad = ~np.isfinite(q.values)
    if q_bound is not None and q_bound > 0:
        bad |= q.values > th.bound_factor * q_bound
        idx = np.flatnonzero(bad)
        return int(q.steps[idx[0]]) if len(idx) else None
    idx = np.flatnonzero(bad)
    finite = q.values[np.isfinite(q.values)]
    if len(finite) >= 6:
        early = float(np.median(finite[:3]))
        high = np.flatnonzero(np.isfinite(q.values) & (q.values > max(early, 1e-8) * 10 ** th.fallback_orders))
        tail = q.steps >= q.steps[-1] - (q.steps[-1] - q.steps[0]) / 3
        fit = fit_power(q.steps[tail], q.values[tail])
        if len(high) and fit is not None and fit.param > 0.5 and fit.r2 > 0.9:
            idx = np.union1d(idx, high[:1])
    return int(q.steps[idx[0]]) if len(idx) else None


def alarm_step(seem: Series, th: Thresholds) -> int | None:
    """Step of the ``consecutive``-th consecutive evaluation with normalised SEEM above the threshold."""
    run = 0
    for step, value in zip(seem.steps, seem.values, strict=True):
        run = run + 1 if (np.isfinite(value) and value > th.seem_threshold) else 0
        if run >= th.consecutive:
            return int(step)
    return None


def diagnose(records: list[dict[str, Any]], optimizer: str = "adam", thresholds: Thresholds | None = None,
             q_bound: float | None = None) -> Verdict:
    """The verdict for one run's records (see the module docstring for every rule)."""
    th = thresholds or Thresholds()
    q_key, q = q_series(records)
    norm = series(records, "diag/param_norm")
    seem = series(records, "diag/seem_normalized")
    notes: list[str] = []
    if q_bound is None:
        bounds = series(records, "diag/q_bound").values
        bounds = bounds[np.isfinite(bounds)]
        q_bound = float(np.median(bounds)) if len(bounds) else None
    if q_bound is None:
        notes.append("no reward bound logged (diagnostics off?): divergence judged by the fallback growth rule")
    if not len(seem):
        notes.append("no SEEM logged: no early prediction (train with diagnostics.seem.interval > 0)")
    diverged_at = divergence_step(q, q_bound, th)
    alarm_at = alarm_step(seem, th)
    status = "diverged" if diverged_at is not None else ("predicted" if alarm_at is not None else "stable")

    if q_bound and np.any(q.values > q_bound):
        start = int(q.steps[np.flatnonzero(q.values > q_bound)[0]])
    elif diverged_at is not None:
        start = diverged_at
    elif alarm_at is not None:
        start = alarm_at
    else:
        start = int(q.steps[len(q) // 2]) if len(q) else 0
    sgd = optimizer.lower() == "sgd"
    q_growth = growth_report(q, start, with_blowup=sgd)
    norm_growth = growth_report(norm, start, with_blowup=sgd)
    crash = None
    if sgd:
        crash = overflow_step(q_growth.blowup) if q_growth else None
        if crash is None and norm_growth is not None and norm_growth.blowup is not None:
            crash = norm_growth.blowup.t_star
            notes.append("crash step from the parameter-norm blow-up time t* (no blow-up fit of Q)")
    lead = diverged_at - alarm_at if diverged_at is not None and alarm_at is not None else None
    last = int(max([q.steps[-1] if len(q) else 0, seem.steps[-1] if len(seem) else 0]))
    return Verdict(status, diverged_at, alarm_at, lead, q_key, q_bound, start, q_growth, norm_growth,
                   optimizer.lower(), crash, th, last, notes)
