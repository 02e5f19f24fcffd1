"""Priority resampling plug-ins for offline RL: functions from a dataset to per-transition priorities,
consumed by the replay buffer's weighted sampler (``sampler=oper_r | oper_a | red``)."""

from rlkit.algorithms.resampling.oper import (
    normalize_priorities,
    oper_a_priorities,
    oper_a_weights,
    oper_r_priorities,
    return_priorities,
)
from rlkit.algorithms.resampling.red import red_priorities

__all__ = [
    "normalize_priorities",
    "oper_a_priorities",
    "oper_a_weights",
    "oper_r_priorities",
    "red_priorities",
    "return_priorities",
]
