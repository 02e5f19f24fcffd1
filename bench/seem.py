"""Cost of one SEEM evaluation against one training update (issue 5), hopper-sized TD3+BC (obs 11, act 3,
2×256 critics), the default probe of 2560 transitions, CPU by default.

Times, in one process on the same machine state: one TD3+BC update at batch 256 (the baseline, median
over ``--updates``), and one full diagnostics evaluation (``DiagnosticsMonitor.run``: kernels, the n×n
eigensolve, Q statistics) broken down into its parts, for the factored (MLP) kernel and, with
``--jacobian``, the generic ``torch.func`` per-sample-gradient kernel.  Prints each part in seconds, the
evaluation as a multiple of one update, and the overhead it adds at a given SEEM interval:
``overhead = t_seem / (interval · t_update)``.

    python bench/seem.py                          # CPU, probe 2560
    python bench/seem.py --batch 512 --jacobian   # a smaller probe, both kernels
    python bench/seem.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.diagnostics.monitor import DiagnosticsMonitor
from rlkit.diagnostics.seem import functional_critic, seem_from_matrix, seem_matrix
from rlkit.replay.batch import Batch

OBS_DIM, ACT_DIM = 11, 3  # Hopper


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_batch(n: int, device: torch.device, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b = Batch(obs=torch.randn(n, OBS_DIM, generator=g), action=torch.rand(n, ACT_DIM, generator=g) * 2 - 1,
              reward=torch.rand(n, generator=g), next_obs=torch.randn(n, OBS_DIM, generator=g),
              terminated=(torch.rand(n, generator=g) < 0.01).float(), weights=torch.ones(n),
              indices=torch.arange(n))
    return b.to(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2560, help="SEEM probe size (diagnostics.seem.batch)")
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--updates", type=int, default=200, help="updates timed for the baseline")
    parser.add_argument("--interval", type=int, default=10_000, help="SEEM interval for the overhead figure")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--jacobian", action="store_true", help="also time the torch.func per-sample kernel")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    algo = TD3BC(obs_space, act_space, device=device)
    batches = [random_batch(args.train_batch, device, seed) for seed in range(8)]
    for b in batches[:3]:  # warm-up
        algo.update(b)

    per_update = []
    for i in range(args.updates):
        batch = batches[i % len(batches)]
        per_update.append(timed(lambda b=batch: algo.update(b), device))
    t_update = statistics.median(per_update)

    probe = random_batch(args.batch, device, seed=99)
    monitor = DiagnosticsMonitor(algo, lambda n: probe, interval=args.interval, batch=args.batch)
    monitor.run()  # warm-up (first-call costs: allocations, torch.func set-up)
    t_full = timed(monitor.run, device)

    view = algo.critic_for_diagnostics()
    q1, policy = view.q, view.policy
    critic = functional_critic(q1)
    obs, act = view.inputs(probe.obs, probe.action)
    next_obs, _ = view.inputs(probe.next_obs, probe.action)
    with torch.no_grad():
        next_act = policy(next_obs)
    rows = []
    methods = ["factored", "jacobian"] if args.jacobian else ["factored"]
    holder: dict[str, torch.Tensor] = {}
    for method in methods:
        t_kernel = timed(lambda m=method: holder.update(a=seem_matrix(critic, obs, act, next_obs, next_act,
                                                                      algo.gamma, None, m)), device)
        rows.append((f"kernel matrix A ({method})", t_kernel))
    a = holder["a"]
    t_eig = timed(lambda: seem_from_matrix(a), device)
    rows.append(("eigenvalues of A (float64, CPU LAPACK)", t_eig))

    print(f"device {device}, torch threads {torch.get_num_threads()}, probe n={args.batch}, "
          f"critic P={critic.num_params} parameters")
    label = f"one TD3+BC update (batch {args.train_batch})"
    print(f"{label:<44s} {t_update * 1e3:10.2f} ms")
    for name, seconds in rows:
        print(f"{name:<44s} {seconds:10.3f} s   = {seconds / t_update:9.0f} updates")
    print(f"{'one full SEEM evaluation (monitor.run)':<44s} {t_full:10.3f} s   = {t_full / t_update:9.0f} updates")
    print(f"overhead at diagnostics.seem.interval={args.interval}: "
          f"{100 * t_full / (args.interval * t_update):.1f}% of training time")


if __name__ == "__main__":
    main()
