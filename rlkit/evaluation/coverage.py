"""State coverage: how many distinct cells of a fixed low-dimensional projection of the state space a run has
visited, the exploration measure logged by the URLB regimes (Self-Reference, Zhao et al. 2025, argue that SR
retains the exploratory behaviour of pretraining during finetuning; coverage makes that measurable).

A state ``s`` (flattened, ``d`` values) is projected with a fixed Gaussian matrix ``P`` (``d x dims``, entries
``N(0, 1/d)``, seeded) and binned: ``cell(s) = floor(P^T s / cell_size)``.  ``cells`` counts the distinct cells since
the run started, ``recent`` those since the last log interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class StateCoverage:
    """Distinct visited cells of a seeded random projection (module docstring)."""

    def __init__(self, obs_dim: int, seed: int, dims: int = 3, cell_size: float = 0.5) -> None:
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((int(obs_dim), int(dims))) / np.sqrt(obs_dim)
        self.cell_size = float(cell_size)
        self.cells: set[tuple[int, ...]] = set()
        self.recent: set[tuple[int, ...]] = set()

    def add(self, obs: np.ndarray) -> None:
        flat = np.asarray(obs, dtype=np.float64).reshape(len(obs), -1)
        keys = np.floor(flat @ self.projection / self.cell_size).astype(np.int64)
        for key in map(tuple, keys):
            self.cells.add(key)
            self.recent.add(key)

    def metrics(self) -> dict[str, float]:
        """``urlb/coverage_cells`` (since the start) and ``urlb/coverage_recent_cells`` (since the last call)."""
        out = {"urlb/coverage_cells": float(len(self.cells)), "urlb/coverage_recent_cells": float(len(self.recent))}
        self.recent = set()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"cells": np.array(sorted(self.cells), dtype=np.int64).reshape(-1, self.projection.shape[1]),
                "recent": np.array(sorted(self.recent), dtype=np.int64).reshape(-1, self.projection.shape[1])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cells = set(map(tuple, np.asarray(state["cells"]).tolist()))
        self.recent = set(map(tuple, np.asarray(state["recent"]).tolist()))
