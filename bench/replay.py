"""Replay throughput: rlkit samplers against a plain numpy uniform gather, measured in the same run.

    python bench/replay.py [--capacity 1000000] [--batch 256] [--seconds 1.0]

Setup: a full storage of ``capacity`` HalfCheetah-like rows (float32 obs/next_obs of 17, action of 6,
reward, terminated).  Each line times one call (median and best over interleaved blocks) and prints
samples/s and the time ratio to the baseline (a): ``idx = rng.integers(0, N, B); obs[idx], ...``.
(a') is the same with ``np.take(obs, idx, axis=0)``, about twice as fast for 2-D columns in numpy 2;
rlkit's storage gathers that way.

(b) UniformSampler: indices + numpy gather; and the full ``buffer.sample`` (torch Batch).
(c) PrioritizedSampler (PER, sum tree): sample (indices + weights) + numpy gather + ``update_priorities``
    with B new random priorities; also its parts, and the full Batch path.  Target: (c) <= 3x (a).
(d) WeightedSampler, resample mode (static priorities, OPER/ReD): indices + gather; full Batch.
(e) SequenceSampler (world models): 16 windows of 64 rows that respect episode ends (1000-step
    episodes), rows/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from rlkit.replay import (
    ColumnarStorage,
    PrioritizedSampler,
    ReplayBuffer,
    SequenceSampler,
    UniformSampler,
    WeightedSampler,
)


def time_calls(fns: list[Callable[[], object]], seconds: float, repeats: int = 15) -> list[list[float]]:
    """Seconds per call of each function, one value per timed block.  The functions take turns block by
    block (A B C A B C ...), so that load from other processes on a shared machine hits all alike."""
    per_block = []
    for fn in fns:
        for _ in range(20):  # warm-up
            fn()
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < 0.05:
            fn()
            calls += 1
        per_block.append(max(1, int(calls / 0.05 * seconds / repeats)))
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(per_block[i]):
                fn()
            times[i].append((time.perf_counter() - t0) / per_block[i])
    return times


def build(capacity: int, seed: int = 0) -> tuple[ReplayBuffer, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    columns = {
        "obs": ((17,), np.float32),
        "action": ((6,), np.float32),
        "reward": ((), np.float32),
        "next_obs": ((17,), np.float32),
        "terminated": ((), np.float32),
    }
    storage = ColumnarStorage(capacity, columns)
    buffer = ReplayBuffer(
        storage,
        UniformSampler(seed=1),
        extra_samplers={"per": PrioritizedSampler(seed=2), "weighted": WeightedSampler(seed=3)},
    )
    chunk = 100_000
    for start in range(0, capacity, chunk):
        n = min(chunk, capacity - start)
        terminated = np.zeros(n, np.float32)
        terminated[999::1000] = 1.0  # 1000-step episodes
        buffer.add(
            obs=rng.standard_normal((n, 17), dtype=np.float32),
            action=rng.uniform(-1, 1, (n, 6)).astype(np.float32),
            reward=rng.standard_normal(n, dtype=np.float32),
            next_obs=rng.standard_normal((n, 17), dtype=np.float32),
            terminated=terminated,
        )
    buffer.extra_samplers["weighted"].set_priorities(rng.random(capacity))
    # give PER a realistic spread of priorities instead of all-equal initial ones
    per = buffer.extra_samplers["per"]
    per.update_priorities(np.arange(capacity), rng.exponential(1.0, capacity))
    return buffer, storage.arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing budget per line")
    args = parser.parse_args()
    torch.set_num_threads(1)
    B, N = args.batch, args.capacity

    t0 = time.perf_counter()
    buffer, arrays = build(N)
    print(
        f"filled {N:,} rows in {time.perf_counter() - t0:.1f}s; batch {B}; numpy {np.__version__}, "
        f"torch {torch.__version__}"
    )
    storage = buffer.storage
    uniform, per, weighted = buffer.sampler, buffer.extra_samplers["per"], buffer.extra_samplers["weighted"]
    obs, action, reward, next_obs, terminated = (
        arrays[k] for k in ("obs", "action", "reward", "next_obs", "terminated")
    )
    rng = np.random.default_rng(123)
    pool = [rng.exponential(1.0, B) for _ in range(64)]
    counter = iter(range(10**12))

    def baseline():
        idx = rng.integers(0, N, B)
        return obs[idx], action[idx], reward[idx], next_obs[idx], terminated[idx]

    def baseline_take():
        idx = rng.integers(0, N, B)
        return [np.take(a, idx, axis=0) for a in (obs, action, reward, next_obs, terminated)]

    def uniform_numpy():
        idx, _ = uniform.sample(B, storage)
        return storage._gather(idx)

    def uniform_batch():
        return buffer.sample(B)

    def per_sample_only():
        return per.sample(B, storage)

    idx_fixed, _ = per.sample(B, storage)

    def per_update_only():
        per.update_priorities(idx_fixed, pool[next(counter) % 64])

    def per_numpy():
        idx, w = per.sample(B, storage)
        cols = storage._gather(idx)
        per.update_priorities(idx, pool[next(counter) % 64])
        return cols, w

    def per_batch():
        batch = buffer.sample(B, sampler="per")
        buffer.update_priorities(batch.indices, torch.from_numpy(pool[next(counter) % 64]), sampler="per")
        return batch

    def weighted_numpy():
        idx, _ = weighted.sample(B, storage)
        return storage._gather(idx)

    def weighted_batch():
        return buffer.sample(B, sampler="weighted")

    seq_buffer = ReplayBuffer(storage, SequenceSampler(64, seed=4))

    def sequence_batch():
        return seq_buffer.sample(16)

    lines = [
        ("(a) baseline numpy uniform: integers + obs[idx] gather", baseline, B),
        ("(a') numpy uniform with np.take(axis=0) gathers", baseline_take, B),
        ("(b) UniformSampler + numpy gather", uniform_numpy, B),
        ("(b) UniformSampler, buffer.sample -> torch Batch", uniform_batch, B),
        ("(c) PER sample (indices + weights) only", per_sample_only, B),
        ("(c) PER update_priorities only", per_update_only, B),
        ("(c) PER sample + numpy gather + update_priorities", per_numpy, B),
        ("(c) PER buffer.sample -> Batch + update_priorities", per_batch, B),
        ("(d) WeightedSampler resample + numpy gather", weighted_numpy, B),
        ("(d) WeightedSampler resample, buffer.sample -> Batch", weighted_batch, B),
        ("(e) SequenceSampler 16 x 64 rows, buffer.sample -> Batch", sequence_batch, 16 * 64),
    ]
    print(f"load average before timing: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print(f"{'':58s} {'median us':>9s} {'best us':>8s} {'samples/s':>12s} {'x (a)':>6s} {'best x':>6s}")
    blocks = time_calls([fn for _, fn, _ in lines], args.seconds)
    median = [statistics.median(b) for b in blocks]
    best = [min(b) for b in blocks]
    for (name, _, rows), t, b in zip(lines, median, best):
        ratios = f"{t / median[0]:6.2f} {b / best[0]:6.2f}"
        print(f"{name:58s} {t * 1e6:9.1f} {b * 1e6:8.1f} {rows / t:12,.0f} {ratios}")
    k = [name for name, _, _ in lines].index("(c) PER sample + numpy gather + update_priorities")
    ratio = median[k] / median[0]
    verdict = "meets" if ratio <= 3.0 else "MISSES"
    print(
        f"PER sample+update vs numpy uniform (a): {ratio:.2f}x median, {best[k] / best[0]:.2f}x best "
        f"({verdict} the 3x target); vs the faster np.take gather (a'): {median[k] / median[1]:.2f}x"
    )
    print(f"load average after timing: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
