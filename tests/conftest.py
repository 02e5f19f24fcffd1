"""Shared test fixtures: small, fast, deterministic configurations."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def compose_cfg():
    from rlkit.config import compose

    def _compose(*overrides: str):
        return compose(["logging.progress=false", "logging.tensorboard=false", *overrides])

    return _compose
