"""Throughput of a population (``train.population=S``) against S separate single-thread processes on the same
cores, for TD3+BC and IQL at D4RL sizes (hopper: 11-dim observations, 3-dim actions; 256x256 networks; batch
256).

For every S (default 1, 2, 5, 10), algorithm and round (default 3, interleaved: each round measures every
configuration once, so slow spells of a shared machine hit all of them), three measurements of ``--seconds``
each, after a warm-up:

* ``separate``: S processes, each one thread (``torch.set_num_threads(1)``) running one algorithm's update
  loop; they start timing at the same instant; the figure is the sum of their steps / the window;
* ``population``: one process updating a :class:`rlkit.population.Population` of S members with
  ``--threads`` threads (default: the machine's cores), counted as S member steps per population step;
* ``population-1t``: the same with one thread.

Two figures per measurement: member steps per wall-clock second, and per CPU second the measured processes
used in the window (``time.process_time``, all threads).  On an idle machine with one thread per core the two
agree up to the core count; on a shared machine the scheduler gives every runnable thread a share, so S
separate processes get S shares against the population's one or two, and only the CPU-second figure
compares the work each needs.

Each member / process draws its own batch every step from its own pool of random hopper-shaped rows (as the
regime's sampler would: the update reads a fresh batch).  Prints the medians over rounds and the ratio
population / separate; ``--device cuda`` measures on a GPU (the separate processes then share it).  The
machine's load average is printed at start and end: on a shared machine only ratios from the same run compare.

    python bench/population.py [--sizes 1 2 5 10] [--algos td3bc iql] [--rounds 3] [--seconds 5]

``--profile`` instead measures, in this process with one thread, what bounds the ratio.  A population pays
each operation's fixed cost (Python, dispatch, autograd bookkeeping, optimizer per-tensor work) once per step
instead of S times, but every FLOP and byte still once per member: stacking S small GEMMs into one batched GEMM
does not make them faster per FLOP on a CPU whose single 256x256 GEMM already runs near its peak (printed:
GFLOP/s of one 256x256x256 product and of 2S batched), and elementwise work grows with S.  The fixed cost is
measured as the same update at batch 4 and 4x4 networks (no real work left), so a population's member step
costs at least ``lone - fixed`` and ``ratio <= lone / (lone - fixed)``.  Also printed: the share of the lone
update's time in matrix multiplies (``torch.profiler`` self time of ``mm``/``addmm``/``bmm``/``baddbmm``).

    python bench/population.py --profile [--sizes 5] [--algos td3bc iql]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HIDDEN = (256, 256)
OBS_DIM, ACT_DIM, BATCH, POOL = 11, 3, 256, 8


def build(algo: str, seed: int, device: str, hidden: tuple[int, ...] = HIDDEN):
    import gymnasium as gym
    import numpy as np
    import torch

    from rlkit.algorithms.offline.iql import IQL
    from rlkit.algorithms.offline.td3bc import TD3BC

    obs = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    torch.manual_seed(seed)
    cls = {"td3bc": TD3BC, "iql": IQL}[algo]
    return cls(obs, act, device=device, hidden=hidden), torch.get_rng_state()


def batches(seed: int, device: str, batch: int = BATCH):
    import torch

    from rlkit.replay.batch import Batch

    g = torch.Generator().manual_seed(1000 + seed)
    out = []
    for _ in range(POOL):
        out.append(Batch(obs=torch.randn(batch, OBS_DIM, generator=g),
                         action=torch.rand(batch, ACT_DIM, generator=g) * 2 - 1,
                         reward=torch.randn(batch, generator=g), next_obs=torch.randn(batch, OBS_DIM, generator=g),
                         terminated=(torch.rand(batch, generator=g) < 0.01).float(),
                         weights=torch.ones(batch)).to(device))
    return out


def timed(step, start_at: float, seconds: float, device: str) -> tuple[int, float]:
    """Run ``step`` until ``start_at + seconds`` (wall clock), counting only the steps inside the window; returns
    them and the CPU seconds the process used in the window (all its threads)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    while time.time() < start_at:
        step()
    sync()
    n, end, cpu = 0, start_at + seconds, time.process_time()
    while time.time() < end:
        step()
        n += 1
    sync()
    return n, time.process_time() - cpu


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def seconds_per_call(step, calls: int = 60) -> float:
    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def gemm_share(step, calls: int = 30) -> float:
    """The share of ``step``'s self CPU time spent in matrix multiplies (torch.profiler)."""
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(calls):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / max(total, 1e-9)


def gemm_rate(batch: int, repeats: int = 50) -> float:
    """GFLOP/s of ``batch`` 256x256x256 products in one ``bmm`` (one thread)."""
    import torch

    a, b = torch.randn(batch, 256, 256), torch.randn(batch, 256, 256)
    for _ in range(5):
        torch.bmm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.bmm(a, b)
    return 2 * batch * 256 ** 3 * repeats / (time.perf_counter() - start) / 1e9


def profile_bound(args) -> None:
    """``--profile``: the fixed per-step cost that bounds a population's gain (module docstring)."""
    import torch

    torch.set_num_threads(1)
    print("one thread, ms per member step; bound = lone / (lone - fixed)")
    print("| algo | S | lone update | fixed cost (batch 4, 4x4 nets) | bound | lone GEMM share | population | "
          "measured ratio | GEMM GFLOP/s: 1 / 2S batched |")
    print("|---|---|---|---|---|---|---|---|---|")
    for algo in args.algos:
        lone_step = single_step(algo, 0, "cpu")[0]
        lone = seconds_per_call(lone_step)
        fixed = seconds_per_call(single_step(algo, 0, "cpu", hidden=(4, 4), batch=4)[0])
        share, rate_one = gemm_share(lone_step), gemm_rate(1)
        for size in args.sizes:
            member = seconds_per_call(population_step(algo, size, 0, "cpu")[0], calls=max(12, 60 // size)) / size
            print(f"| {algo} | {size} | {lone * 1e3:.2f} | {fixed * 1e3:.2f} | {lone / (lone - fixed):.2f}x | "
                  f"{share:.2f} | {member * 1e3:.2f} | {lone / member:.2f}x | "
                  f"{rate_one:.0f} / {gemm_rate(2 * size):.0f} |", flush=True)


def single_step(algo: str, seed: int, device: str, hidden: tuple[int, ...] = HIDDEN, batch: int = BATCH):
    """One algorithm's update on its own batch pool: ``(step, member steps per call)``."""
    single, _ = build(algo, seed, device, hidden)
    pool, i = batches(seed, device, batch), [0]

    def step():
        single.update(pool[i[0] % POOL])
        i[0] += 1
    return step, 1


def population_step(algo: str, size: int, seed: int, device: str):
    """One update of a population of ``size`` members, each on its own batch pool: ``(step, size)``."""
    from rlkit.population import Population

    members, rngs = zip(*(build(algo, seed + k, device) for k in range(size)), strict=True)
    pop = Population(list(members), list(rngs))
    pools, i = [batches(seed + k, device) for k in range(size)], [0]

    def step():
        pop.update([p[i[0] % POOL] for p in pools])
        i[0] += 1
    return step, size


def worker(args) -> None:
    """One measurement in this process: ``--mode single`` (one algorithm) or ``population``."""
    import torch

    torch.set_num_threads(args.threads)
    if args.mode == "single":
        step, scale = single_step(args.algo, args.seed, args.device)
    else:
        step, scale = population_step(args.algo, args.size, args.seed, args.device)
    for _ in range(5):
        step()
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())  # the parent starts every worker's window at the same instant
    n, cpu = timed(step, start_at, args.seconds, args.device)
    print(json.dumps({"steps": n * scale, "cpu": cpu}), flush=True)


def launch(cmds: list[list[str]]) -> tuple[int, float]:
    """Start the workers, wait until all are warm, open their timing window together; their summed steps and
    CPU seconds."""
    procs = [subprocess.Popen(c, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": c[c.index("--threads") + 1]}) for c in cmds]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker failed: {' '.join(cmds[0])}")
    start_at = time.time() + 0.2
    for p in procs:
        p.stdin.write(f"{start_at}\n")
        p.stdin.flush()
    steps, cpu = 0, 0.0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed: {' '.join(cmds[0])}")
        result = json.loads(out.strip().splitlines()[-1])
        steps, cpu = steps + result["steps"], cpu + result["cpu"]
    return steps, cpu


def measure(algo: str, size: int, mode: str, args) -> tuple[float, float]:
    """Member steps per wall-clock second and per CPU second of one configuration (one window)."""
    base = [sys.executable, __file__, "--worker", "--algo", algo, "--seconds", str(args.seconds),
            "--device", args.device]
    if mode == "separate":
        cmds = [[*base, "--mode", "single", "--seed", str(k), "--threads", "1"] for k in range(size)]
    else:
        threads = 1 if mode == "population-1t" else args.threads
        cmds = [[*base, "--mode", "population", "--size", str(size), "--seed", "0", "--threads", str(threads)]]
    steps, cpu = launch(cmds)
    return steps / args.seconds, steps / max(cpu, 1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--algos", nargs="+", default=["td3bc", "iql"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the population process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--modes", nargs="+", default=["separate", "population", "population-1t"])
    p.add_argument("--profile", action="store_true", help="the fixed per-step cost that bounds the gain (docstring)")
    # worker arguments
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--algo", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if args.profile:
        profile_bound(args)
        return
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} cores; device {args.device}; "
          f"population threads {args.threads}; window {args.seconds}s; {args.rounds} rounds", flush=True)
    results: dict[tuple[str, int, str, str], list[float]] = {}
    for r in range(args.rounds):
        for algo in args.algos:
            for size in args.sizes:
                for mode in args.modes:
                    wall, cpu = measure(algo, size, mode, args)
                    results.setdefault((algo, size, mode, "wall"), []).append(wall)
                    results.setdefault((algo, size, mode, "cpu"), []).append(cpu)
                    print(f"round {r}: {algo} S={size} {mode}: {wall:.1f} member steps/s, {cpu:.1f} per CPU second "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    for clock, label in (("wall", "member steps per wall-clock second"),
                         ("cpu", "member steps per CPU second (the machine's other load left out)")):
        print(f"\nmedians over rounds, {label}; ratio = mode / separate:")
        print("| algo | S | " + " | ".join(f"{m} | ratio" for m in args.modes) + " |")
        print("|---|---|" + "---|---|" * len(args.modes))
        for algo in args.algos:
            for size in args.sizes:
                med = {m: statistics.median(results[(algo, size, m, clock)]) for m in args.modes}
                sep = med.get("separate")
                cells = [f"{med[m]:.1f} | {med[m] / sep:.2f}x" if sep else f"{med[m]:.1f} | -" for m in args.modes]
                print(f"| {algo} | {size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
