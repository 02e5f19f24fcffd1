"""ReD: return-based data rebalance (Yue et al., arXiv 2210.09241).

Resample each transition in proportion to its normalised episodic return plus a floor:
``p_i ∝ (G_i - G_min) / (G_max - G_min) + p_base`` -- the same priorities as OPER-R (one implementation,
:func:`rlkit.algorithms.resampling.oper.return_priorities`); ReD applies them to *all* loss terms (no decoupling),
which keeps the data's support and only shifts density.  The ReD paper's exact ``p_base`` is UNCONFIRMED;
we use the authors' code values (0 for locomotion/kitchen, 0.2 for AntMaze).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlkit.algorithms.resampling.oper import oper_r_priorities


def red_priorities(dataset, p_base: float | None = None, env_cfg=None, **_: Any) -> np.ndarray:
    return oper_r_priorities(dataset, p_base=p_base, env_cfg=env_cfg)
