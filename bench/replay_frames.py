"""Pixel replay memory: a plain ColumnarStorage (obs and next_obs stacks per row) vs FrameStorage (each frame
once, stacks rebuilt from ids), measured in one run.

    python bench/replay_frames.py [--capacity 100000] [--real-steps 300] [--time-capacity 4000]

1. dmc-cheetah_run (pixels, 3 stacked 84x84 RGB frames, action repeat 4): ``--real-steps`` transitions from
   the real env (random actions, as the online regime adds them) go into both storages; every row and a
   sampled batch (n-step 3) must be identical.
2. ``--capacity`` rows (default 100k, the DMC runs' ``train.buffer_capacity``): the plain storage's bytes
   (its arrays; numpy allocates them lazily, so nothing is touched) and FrameStorage's bytes after filling it
   past wrap-around with a cheetah-shaped stream (3 x 3 x 84 x 84, 250-step episodes, random frames), per
   row and against one uint8 frame (3 x 84 x 84) plus the row's scalars. Target: <= 1.1x.
3. Seconds per ``add`` and per ``buffer.sample(512)`` of both at ``--time-capacity`` rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlkit import envs
from rlkit.replay import ColumnarStorage, FrameStorage, ReplayBuffer, UniformSampler, transition_columns

SHAPE = (9, 84, 84)
FRAME = 3 * 84 * 84


def columns():
    return transition_columns(SHAPE, (6,), "uint8", "float32")


def real_rows(steps: int) -> list[dict]:
    env = envs.make_vector("dmc-cheetah_run", 1, autoreset=True, obs_type="pixels", action_repeat=4)
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(steps):
        action = env.action_space.sample()
        nxt, reward, term, trunc, info = env.step(action)
        real = nxt.copy()
        for i in np.flatnonzero(term | trunc):
            real[i] = info["final_obs"][i]
        rows.append({"obs": obs, "action": action, "reward": reward, "next_obs": real, "terminated": term,
                     "truncated": trunc})
        obs = nxt
    return rows


def synthetic_rows(n: int, episode: int = 250, seed: int = 0):
    """Cheetah-shaped transitions: 3-frame RGB stacks, reset = 3 copies of the first frame."""
    rng = np.random.default_rng(seed)
    stack, t = [rng.integers(0, 256, (3, 84, 84), dtype=np.uint8)] * 3, 0
    for _ in range(n):
        obs = np.concatenate(stack)[None]
        stack = stack[1:] + [rng.integers(0, 256, (3, 84, 84), dtype=np.uint8)]
        t += 1
        done = t == episode
        yield {"obs": obs, "action": rng.uniform(-1, 1, (1, 6)).astype(np.float32),
               "reward": np.float32([rng.random()]), "next_obs": np.concatenate(stack)[None],
               "terminated": np.float32([0.0]), "truncated": np.float32([float(done)])}
        if done:
            stack, t = [rng.integers(0, 256, (3, 84, 84), dtype=np.uint8)] * 3, 0


def scalars_per_row(storage: ColumnarStorage) -> float:
    return sum(a.nbytes for k, a in storage.arrays.items() if k not in ("obs", "next_obs") and "__ids" not in k
               ) / storage.capacity


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--real-steps", type=int, default=300)
    parser.add_argument("--time-capacity", type=int, default=4000)
    args = parser.parse_args()

    rows = real_rows(args.real_steps)
    plain, frames = ColumnarStorage(len(rows), columns()), FrameStorage(len(rows), columns())
    for row in rows:
        plain.add(**row)
        frames.add(**row)
    every = np.arange(len(rows))
    same = all(np.array_equal(v, frames.get(every)[k]) for k, v in plain.get(every).items())
    a = ReplayBuffer(plain, UniformSampler(seed=0), nstep=3).sample(256)
    b = ReplayBuffer(frames, UniformSampler(seed=0), nstep=3).sample(256)
    same = same and all(bool((a[k] == b[k]).all()) for k in a)
    print(f"dmc-cheetah_run, {len(rows)} real transitions: rows and batches identical: {same}; bytes/row plain "
          f"{plain.nbytes() / len(rows):,.0f}, frames {frames.nbytes() / len(rows):,.0f}")

    cap = args.capacity
    plain = ColumnarStorage(cap, columns())  # lazily allocated: nbytes without touching the memory
    scalars = scalars_per_row(plain)
    frames = FrameStorage(cap, columns())
    start = time.perf_counter()
    for row in synthetic_rows(cap + cap // 10):
        frames.add(**row)
    fill = time.perf_counter() - start
    unit = FRAME + scalars
    print(f"capacity {cap:,}: plain {plain.nbytes() / 2**30:.2f} GiB ({plain.nbytes() / cap:,.0f} B/row = "
          f"{plain.nbytes() / cap / unit:.2f}x one frame + scalars); FrameStorage {frames.nbytes() / 2**30:.2f} GiB "
          f"({frames.nbytes() / cap:,.0f} B/row = {frames.nbytes() / cap / unit:.3f}x; frame {FRAME} B, "
          f"scalars {scalars:.0f} B); filled {cap + cap // 10:,} rows in {fill:.1f} s")
    del frames

    n = args.time_capacity
    plain, frames = ColumnarStorage(n, columns()), FrameStorage(n, columns())
    timings = {}
    for name, storage in (("plain", plain), ("frames", frames)):
        start = time.perf_counter()
        for row in synthetic_rows(n):
            storage.add(**row)
        add = (time.perf_counter() - start) / n
        buffer = ReplayBuffer(storage, UniformSampler(seed=0), nstep=1)
        buffer.sample(512)
        start = time.perf_counter()
        for _ in range(20):
            buffer.sample(512)
        timings[name] = (add, (time.perf_counter() - start) / 20)
    for name, (add, sample) in timings.items():
        print(f"{name:7s} add {add * 1e6:8.1f} us/row   sample(512) {sample * 1e3:7.1f} ms "
              f"(ratio to plain {sample / timings['plain'][1]:.2f}x)")


if __name__ == "__main__":
    main()
