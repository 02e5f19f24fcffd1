"""OAP's query schedule and query selection (Yang et al. 2023, "Boosting Offline RL with Action Preference
Query", Sec. 4.1 and Algorithm 1).

* rounds: ``schedule=fraction`` (rlkit's default) runs ``R`` rounds spread over the second part of the run,
  ``t_i = N (f + (1 - f) i / R)``, ``i = 0..R-1`` (``f = first_query_at``), so a run of any length labels
  against a policy that has trained for a fraction ``f`` of it; the paper's schedules are in absolute updates:
  every ``M`` updates (OAP-Interval, Sec. 5.3) at ``t = M, 2M, ... < N``, or a single round at ``t = N - M``
  (OAP-FT: all queries at the end, then ``M`` updates of fine-tuning);
* round size: the remaining budget split evenly over the remaining rounds (the last round takes the
  remainder), so the total is exactly ``K_total`` and is derived from counters that survive a resume;
* selection: the ``k`` rows with the largest divergence ``l_i = ||π(s_i) - a_i||²``, rows never queried
  before first ("unqueried first", paper Table 5).
"""

from __future__ import annotations

import torch

from rlkit.errors import ConfigError

SCHEDULES = ("fraction", "interval", "end")


def round_steps(max_steps: int, period: int, schedule: str, first_query_at: float = 0.5, rounds: int = 5
                ) -> list[int]:
    """The update counts after which a query round runs (see the module docstring)."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"bad value for 'algo.schedule': {schedule!r}; choose fraction, interval (OAP-Interval) or "
                          "end (OAP-FT)")
    if schedule == "fraction":
        if not 0.0 < first_query_at < 1.0 or rounds < 1:
            raise ConfigError(f"algo.first_query_at must be in (0, 1) and algo.rounds >= 1, got {first_query_at} "
                              f"and {rounds}")
        steps = sorted({int(round(max_steps * (first_query_at + (1 - first_query_at) * i / rounds)))
                        for i in range(rounds)})
        steps = [s for s in steps if 0 < s < max_steps]
        if not steps:
            raise ConfigError(f"train.steps={max_steps} is too short for a query round; raise train.steps")
        return steps
    if period <= 0:
        raise ConfigError(f"algo.query_period must be positive, got {period}")
    steps = list(range(period, max_steps, period)) if schedule == "interval" else [max_steps - period]
    steps = [s for s in steps if 0 < s < max_steps]
    if not steps:
        raise ConfigError(f"algo.query_period={period} leaves no query round before train.steps={max_steps}; "
                          "lower algo.query_period below train.steps")
    return steps


def round_size(limit: int | None, used: int, rounds_left: int, candidates: int) -> int:
    """Queries of the next round: ``(limit - used) // rounds_left`` (all candidates when ``limit`` is None,
    the unlimited-query ablation), never more than the candidates or the remaining budget."""
    if rounds_left <= 0:
        return 0
    if limit is None:
        return candidates
    remaining = max(int(limit) - int(used), 0)
    return min(remaining // rounds_left, candidates)


def select_queries(divergence: torch.Tensor, queried: torch.Tensor, k: int, unqueried_first: bool = True,
                   candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Row indices of the ``k`` largest ``divergence`` values among ``candidates`` (all rows when None);
    with ``unqueried_first`` every never-queried row ranks above every queried one.  Ties keep the lower
    row index first (stable sort), so the choice is deterministic."""
    rows = torch.arange(divergence.shape[0], device=divergence.device) if candidates is None else candidates
    if k <= 0 or rows.numel() == 0:
        return rows[:0]
    order = torch.sort(divergence[rows], descending=True, stable=True).indices
    if unqueried_first:  # a stable sort on the queried flag keeps the divergence order within each group
        order = order[torch.sort(queried[rows][order].to(torch.uint8), stable=True).indices]
    return rows[order[:k]]
