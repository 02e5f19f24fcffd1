"""Helpers shared by the test modules (``from tests.helpers import ...``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from rlkit.data.dataset import Dataset
from rlkit.replay.batch import Batch


def metric_records(run_dir: Path) -> list[dict]:
    """A run's ``metrics.jsonl`` without the wall-clock entries (``time``, ``time/*``), which never repeat."""
    return [{k: v for k, v in json.loads(line).items() if k != "time" and not k.startswith("time/")}
            for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def interrupt() -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def at_step(regime_cls: type, step: int, action: Callable[[], None]) -> Iterator[None]:
    """Inside the block, ``action()`` runs when a run of ``regime_cls`` is about to take step ``step`` (e.g.
    :func:`interrupt` stops it there, or a signal is sent), then the step proceeds as usual."""
    original = regime_cls.train_step

    def train_step(self):
        if self.step == step:
            action()
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regime_cls, "train_step", train_step)
        yield


def dataset_batch(ds: Dataset, rows, weights=None) -> Batch:
    """The rows ``rows`` of an offline dataset as a training batch (unit weights unless given)."""
    rows = np.asarray(rows)
    t = torch.as_tensor
    return Batch(obs=t(ds.observations[rows]), action=t(ds.actions[rows]), reward=t(ds.rewards[rows]),
                 next_obs=t(ds.next_observations[rows]), terminated=t(ds.terminals[rows].astype(np.float32)),
                 indices=t(rows), weights=torch.ones(len(rows)) if weights is None else t(weights).float())
