"""Shared test fixtures: small, fast, deterministic configurations."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)


@pytest.fixture
def compose_cfg():
    from rlkit.config import compose

    def _compose(*overrides: str):
        return compose(["logging.progress=false", "logging.tensorboard=false", *overrides])

    return _compose
