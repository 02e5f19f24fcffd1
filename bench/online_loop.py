"""Online loops: env steps/s of ``rlkit train`` against the bare environment, so rlkit's loop overhead is a number.

For each case three rates, measured in this run (each ``rlkit train`` a fresh process, one torch thread):

* **bare**: ``rlkit.envs.make(id)`` stepped with random actions (the environment alone);
* **loop**: ``rlkit train`` with ``train.warmup_steps = train.steps`` -- rlkit's collection loop (random
  acting, replay writes, logging) without gradient updates;
* **train**: ``rlkit train`` after a short warm-up, with the algorithm's updates (its ``updates_per_step``).

Loop and train rates are read from ``metrics.jsonl`` between the last two log records (start-up, warm-up and
the final evaluation excluded).  ``loop / bare`` is the overhead of rlkit's loop; ``train`` is what a run gets.

    python bench/online_loop.py                         # SAC Hopper-v5, DDPG URLB walker (states)
    python bench/online_loop.py --cases sac-hopper --steps 3000
    python bench/online_loop.py --cases storm-pong      # STORM Atari: one update is seconds on a CPU; GPU advised

STORM's cached-imagination ratio against full recomputation is printed by ``bench/storm.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# case -> (algo, env config, env id, steps, warm-up before updates, extra overrides)
CASES = {
    "sac-hopper": ("sac", "hopper", "hopper", 4000, 1000, []),
    "ddpg-walker": ("ddpg", "urlb-walker_walk", "urlb-walker_walk", 3000, 1000, []),
    "storm-pong": ("storm", "atari100k-pong", "atari100k-pong", 1040, 1024, ["algo.imagine_batch_size=128"]),
}


def bare_rate(env_id: str, steps: int) -> float:
    from rlkit import envs

    env = envs.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(min(100, steps)):  # warm-up
        env.step(env.action_space.sample())
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def train_rate(algo: str, env: str, steps: int, warmup: int, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        # two log records inside the measured phase: after the warm-up (train) or over the whole run (loop)
        log_every = max((steps - warmup) // 2, 1) if warmup < steps else max(steps // 4, 1)
        cmd = [sys.executable, "-m", "rlkit.cli", "train", f"algo={algo}", f"env={env}", f"train.steps={steps}",
               f"train.warmup_steps={warmup}", f"train.log_interval={log_every}", "eval.interval=0",
               "eval.final_episodes=1", "eval.num_envs=1", "logging.progress=false", "logging.tensorboard=false",
               f"checkpoint.interval={10 * steps}", "num_threads=1", "device=cpu", f"run_dir={run_dir}", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:])} failed: {proc.stderr.strip().splitlines()[-3:]}")
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        records = [r for r in records if "time/steps_per_s" in r]
        a, b = records[-2], records[-1]
        return (b["step"] - a["step"]) / (b["time"] - a["time"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["sac-hopper", "ddpg-walker"], choices=list(CASES))
    parser.add_argument("--steps", type=int, default=None, help="agent steps per run (default per case)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    results = {}
    for case in args.cases:
        algo, env, env_id, steps, warmup, extra = CASES[case]
        steps = args.steps or steps
        bare = bare_rate(env_id, min(steps, 3000))
        loop = train_rate(algo, env, steps, steps, extra)  # all steps random: no updates
        train = train_rate(algo, env, steps, min(warmup, steps // 2), extra)
        results[case] = {"bare": bare, "loop": loop, "train": train, "loop_over_bare": loop / bare,
                         "load": os.getloadavg()[0]}
        print(f"{case:12s} bare {bare:9.1f} steps/s | rlkit loop (no updates) {loop:8.1f} ({loop / bare:.2f}x bare) "
              f"| with training {train:8.2f} steps/s  (load {os.getloadavg()[0]:.1f})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                               time.gmtime())}, indent=1))


if __name__ == "__main__":
    main()
