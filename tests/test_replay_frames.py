"""FrameStorage (rlkit.replay.frames): pixel replay that keeps each frame once returns exactly the batches a
plain ColumnarStorage returns (real Atari and TinyCatch streams, synthetic RGB stacks with episode ends, two
envs interleaved, ring wrap-around, n-step rows, K-step windows, device mirror), costs about one frame per
row, and checkpoints exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlkit import envs
from rlkit.replay import (
    ColumnarStorage,
    FrameStorage,
    ReplayBuffer,
    UniformSampler,
    is_pixel_pair,
    transition_columns,
    window_rows,
)


def env_stream(name: str, steps: int, num_envs: int, seed: int = 0, **kwargs) -> tuple[tuple, list[dict]]:
    """Transitions as the online regime adds them (final observations as ``next_obs`` at episode ends)."""
    env = envs.make_vector(name, num_envs, autoreset=True, **kwargs)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(steps):
        action = rng.integers(0, env.single_action_space.n, size=num_envs)
        nxt, reward, term, trunc, info = env.step(action)
        real = nxt.copy()
        for i in np.flatnonzero(term | trunc):
            real[i] = info["final_obs"][i]
        rows.append({"obs": obs, "action": action, "reward": reward.astype(np.float32), "next_obs": real,
                     "terminated": term.astype(np.float32), "truncated": trunc.astype(np.float32)})
        obs = nxt
    env.close()
    return env.single_observation_space.shape, rows


def synthetic_stream(steps: int, num_envs: int, k: int = 3, channels: int = 3, size: int = 16,
                     seed: int = 0, lengths: tuple[int, int] = (1, 13)) -> tuple[tuple, list[dict]]:
    """RGB frame stacks as DMC's wrapper builds them (reset: k copies of the first frame), random episode
    lengths in ``lengths`` (default 1-12), some frames repeating the previous one (a static scene)."""
    rng = np.random.default_rng(seed)

    def frame():
        return rng.integers(0, 256, (channels, size, size), dtype=np.uint8)

    stacks = [[frame()] * k for _ in range(num_envs)]
    left = rng.integers(*lengths, num_envs)
    rows = []
    for _ in range(steps):
        obs = np.stack([np.concatenate(s) for s in stacks])
        new = [s[-1] if rng.random() < 0.2 else frame() for s in stacks]  # sometimes a repeated frame
        for i in range(num_envs):
            stacks[i] = stacks[i][1:] + [new[i]]
        nxt = np.stack([np.concatenate(s) for s in stacks])
        left -= 1
        done = left == 0
        rows.append({"obs": obs, "action": rng.integers(0, 4, num_envs), "reward": rng.random(num_envs, np.float32),
                     "next_obs": nxt, "terminated": done.astype(np.float32),
                     "truncated": np.zeros(num_envs, np.float32)})
        for i in np.flatnonzero(done):
            stacks[i], left[i] = [frame()] * k, rng.integers(*lengths)
    return (k * channels, size, size), rows


def fill(shape, rows, capacity, kind, **kw):
    storage = kind(capacity, transition_columns(shape, (), "uint8", "int64"), **kw)
    for row in rows:
        storage.add(**row)
    return storage


def assert_same_batches(plain: ColumnarStorage, frames: FrameStorage, nstep: int = 3) -> None:
    assert frames.size == plain.size and frames.cursor == plain.cursor
    a = ReplayBuffer(plain, UniformSampler(seed=3), nstep=nstep, gamma=0.9)
    b = ReplayBuffer(frames, UniformSampler(seed=3), nstep=nstep, gamma=0.9)
    for _ in range(3):
        x, y = a.sample(16), b.sample(16)
        assert list(x) == list(y)
        for key in x:
            assert torch.equal(x[key], y[key]), key
    every = np.arange(plain.size)
    for key, value in plain.get(every).items():
        np.testing.assert_array_equal(frames.get(every)[key], value, err_msg=key)
    rows, _ = window_rows(plain, every[:20], 6)
    assert torch.equal(a.gather(rows, ["obs", "next_obs"])["obs"], b.gather(rows, ["obs", "next_obs"])["obs"])


@pytest.mark.parametrize("num_envs,capacity", [(1, 1000), (1, 37), (2, 41)])
def test_synthetic_rgb_stacks_give_identical_batches(num_envs, capacity):
    shape, rows = synthetic_stream(120, num_envs)
    plain, frames = fill(shape, rows, capacity, ColumnarStorage), fill(shape, rows, capacity, FrameStorage)
    assert frames.units == 9 and frames.unit_shape == (16, 16)
    assert_same_batches(plain, frames)


def test_atari_spr_stream_gives_identical_batches():
    # 40 agent steps per episode: several resets (4 copies of the reset frame) and two sub-envs
    shape, rows = env_stream("atari100k-pong", 150, 2, protocol="spr", training=True,
                             max_num_frames_per_episode=160)
    assert shape == (4, 84, 84) and sum(r["truncated"].sum() + r["terminated"].sum() for r in rows) >= 4
    plain, frames = fill(shape, rows, 256, ColumnarStorage), fill(shape, rows, 256, FrameStorage)
    assert_same_batches(plain, frames)
    assert frames.next_id < 1.1 * 300  # one new 84x84 plane per row, one more per episode start


def test_a_full_ring_holds_about_one_frame_per_row():
    # DMC-like RGB stacks (3 frames of 3 x 48 x 48), episodes of 200-300 steps, the ring wrapped twice
    shape, rows = synthetic_stream(2400, 1, size=48, lengths=(200, 301), seed=2)
    plain, frames = fill(shape, rows, 1000, ColumnarStorage), fill(shape, rows, 1000, FrameStorage)
    assert_same_batches(plain, frames)
    frame = 3 * 48 * 48
    scalars = sum(a.nbytes for k, a in plain.arrays.items() if k not in ("obs", "next_obs")) / 1000
    assert plain.nbytes() / 1000 == pytest.approx(2 * 3 * frame + scalars)
    assert frames.nbytes() / 1000 <= 1.1 * (frame + scalars), frames.nbytes() / 1000 / (frame + scalars)


def test_channels_last_observations_are_one_unit_each():
    shape, rows = env_stream("rlkit.envs.tiny_pixels:rlkit/TinyCatch-v0", 60, 2)
    assert shape == (16, 16, 3)
    plain, frames = fill(shape, rows, 50, ColumnarStorage), fill(shape, rows, 50, FrameStorage)
    assert frames.units == 1
    assert_same_batches(plain, frames, nstep=1)
    # next_obs pushes one observation per row; obs reuses the previous row's, except at episode starts
    starts = 2 + sum(int(r["terminated"].sum() + r["truncated"].sum()) for r in rows[:-1])
    assert frames.next_id == len(rows) * 2 + starts


def test_checkpoint_round_trip_continues_identically():
    shape, rows = synthetic_stream(90, 1, seed=4)
    cut = fill(shape, rows[:50], 40, FrameStorage)
    restored = FrameStorage(40, transition_columns(shape, (), "uint8", "int64"))
    restored.load_state_dict(cut.state_dict())
    full = fill(shape, rows, 40, FrameStorage)
    for row in rows[50:]:
        restored.add(**row)
    assert_same_batches(full, restored)
    assert len(restored.pool) == len(full.pool) and restored.next_id == full.next_id


def test_device_mirror_gathers_what_the_host_gathers():
    shape, rows = synthetic_stream(60, 2, seed=5)
    frames = fill(shape, rows, 50, FrameStorage, device="cpu", mirror=True)
    idx = np.array([[0, 3, 7], [49, 12, 5]])
    got = frames.gather_torch(torch.as_tensor(idx))
    for key, value in frames.get(idx).items():
        np.testing.assert_array_equal(got[key].numpy(), value, err_msg=key)


def test_only_pixel_pairs_use_frames():
    assert is_pixel_pair(transition_columns((4, 84, 84), (), "uint8", "int64"))
    assert not is_pixel_pair(transition_columns((17,), (6,)))
    assert not is_pixel_pair(transition_columns((4, 84, 84), (), "float32", "int64"))
