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


@pytest.fixture(scope="session")
def hopper_random_file(tmp_path_factory):
    """2000 steps of uniform-random hopper behaviour in the D4RL hdf5 layout (collected locally)."""
    from rlkit.data.collect import collect_to_file

    path = tmp_path_factory.mktemp("hopper-random") / "hopper-random.hdf5"
    return collect_to_file("hopper-random-v2", steps=2000, seed=0, out=path, num_envs=4)
