"""OPER's cost: TD3+BC update time with uniform sampling vs OPER-R prioritized resampling (and the
decoupled variant, which samples a second batch), at batch 256 over a 1M-transition dataset.

Run by hand: ``python bench/oper.py [--rows 1000000] [--iters 300] [--threads 1]``.  Prints the
seconds per training step (sample + update) of each mode and the overhead ratio against uniform,
measured in the same run with the modes interleaved.  Target: resampling adds < 5 %.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.algorithms.resampling.oper import return_priorities
from rlkit.data import Dataset
from rlkit.replay import ColumnarStorage, ReplayBuffer, make_sampler


def synthetic_dataset(rows: int, obs_dim: int = 11, act_dim: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(rows, dtype=bool)
    timeouts[999::1000] = True
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    return Dataset(observations=obs, actions=rng.uniform(-1, 1, (rows, act_dim)), rewards=rng.normal(size=rows),
                   terminals=np.zeros(rows, dtype=bool), timeouts=timeouts, next_observations=obs,
                   provenance={"id": "synthetic"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    ds = synthetic_dataset(ns.rows)
    space_o = gym.spaces.Box(-np.inf, np.inf, (ds.observation_dim,), np.float32)
    space_a = gym.spaces.Box(-1, 1, (ds.action_dim,), np.float32)
    algo = TD3BC(space_o, space_a)
    algo.on_dataset(ds)
    storage = ColumnarStorage.from_arrays(ds.columns())
    t0 = time.perf_counter()
    p = return_priorities(ds)
    prio_s = time.perf_counter() - t0
    buffers = {
        "uniform": ReplayBuffer(storage, make_sampler("uniform", seed=0)),
        "oper_r (resample)": ReplayBuffer(storage, make_sampler("weighted", priorities=p, seed=0)),
        "oper_r (reweight)": ReplayBuffer(storage, make_sampler("weighted", priorities=p, mode="reweight", seed=0)),
        "decoupled": ReplayBuffer(storage, make_sampler("uniform", seed=0),
                                  extra_samplers={"policy": make_sampler("weighted", priorities=p, seed=1)}),
    }
    times = {name: [] for name in buffers}
    for _ in range(3):  # interleave the modes so load changes hit all of them alike
        for name, buf in buffers.items():
            start = time.perf_counter()
            for _ in range(ns.iters // 3):
                batch = buf.sample(256)
                if name == "decoupled":
                    batch["policy_batch"] = buf.sample(256, sampler="policy")
                algo.update(batch)
            times[name].append((time.perf_counter() - start) / (ns.iters // 3))
    base = min(times["uniform"])
    print(f"rows={ns.rows} batch=256 threads={ns.threads}; OPER-R priorities computed once in {prio_s * 1e3:.1f} ms")
    print(f"{'mode':<22}{'ms/step':>10}{'vs uniform':>12}")
    for name, ts in times.items():
        best = min(ts)
        print(f"{name:<22}{best * 1e3:>10.3f}{best / base:>12.3f}")


if __name__ == "__main__":
    main()
