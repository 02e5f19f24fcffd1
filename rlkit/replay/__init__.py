"""Replay: columnar ring storage, samplers (uniform, prioritized, weighted, sequence) and the buffer.

Typical use::

    storage = ColumnarStorage(1_000_000, transition_columns(obs_shape=(17,), action_shape=(6,)))
    buffer = ReplayBuffer(storage, make_sampler("per", alpha=0.6, beta=0.4), device="cuda")
    buffer.add(obs=o, action=a, reward=r, next_obs=o2, terminated=term, truncated=trunc)
    batch = buffer.sample(256)            # Batch: batch.obs, ..., batch.indices, batch.weights
    buffer.update_priorities(batch.indices, td_error.abs())

Pixel transitions (uint8 ``obs`` / ``next_obs`` images) go to :class:`FrameStorage`, which keeps each frame
once and returns the same batches.
"""

from rlkit.replay.batch import Batch
from rlkit.replay.buffer import ReplayBuffer, nstep_targets, transition_columns, window_rows
from rlkit.replay.frames import FrameStorage, is_pixel_pair
from rlkit.replay.samplers import (
    SAMPLERS,
    PrioritizedSampler,
    Sampler,
    SequenceSampler,
    UniformSampler,
    WeightedSampler,
    make_sampler,
)
from rlkit.replay.storage import ColumnarStorage, batch_dtype
from rlkit.replay.sumtree import SumTree

__all__ = [
    "SAMPLERS",
    "Batch",
    "ColumnarStorage",
    "FrameStorage",
    "PrioritizedSampler",
    "ReplayBuffer",
    "Sampler",
    "SequenceSampler",
    "SumTree",
    "UniformSampler",
    "WeightedSampler",
    "batch_dtype",
    "is_pixel_pair",
    "make_sampler",
    "nstep_targets",
    "transition_columns",
    "window_rows",
]
