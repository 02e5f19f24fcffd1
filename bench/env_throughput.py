"""Env steps per second of rlkit's adapters against the raw simulators, measured in one run.

* dm_control: ``DMCEnv`` (``urlb-*``: flatten to float32, action rescale, gymnasium API) vs the raw
  ``dm_control`` environment stepped with the same actions;
* Atari: ``atari100k-<game>`` (4 frames with own sticky actions, max-pool, 64x64 area resize) and
  ``atari-spr-<game>`` (grayscale 84x84, 4-stack) vs raw ``ALE/<Game>-v5`` (the ALE's own 4-frame skip and
  sticky actions, 210x160x3 observations) -- the same number of emulator frames per step;
* AntMaze: ``antmaze-<level>`` (D4RL's ant rebuilt on MuJoCo 3: RK4, 5 substeps, walls) vs gymnasium's
  ``Ant-v5`` (Euler, 5 substeps, no maze) -- what D4RL's model costs per step.

Usage: ``python bench/env_throughput.py [--steps 3000]``. Prints steps/s and adapter/raw ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ale_py  # noqa: E402
import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from rlkit.envs import atari, dmc  # noqa: E402

gym.register_envs(ale_py)


def _rate(step: Callable[[int], None], steps: int) -> float:
    step(min(200, steps))  # warm-up
    start = time.perf_counter()
    step(steps)
    return steps / (time.perf_counter() - start)


def bench_dmc(task: str, steps: int) -> tuple[float, float]:
    domain, name = dmc.split_task(task)
    raw = dmc.load_dm_env(domain, name, np.random.RandomState(0))
    spec = raw.action_spec()
    actions = np.random.default_rng(0).uniform(-1, 1, (steps + 200,) + spec.shape)
    scaled = spec.minimum + (actions + 1) / 2 * (spec.maximum - spec.minimum)
    raw.reset()

    def raw_steps(n: int) -> None:
        for i in range(n):
            if raw.step(scaled[i]).last():
                raw.reset()

    env = envs.make("urlb-" + task, seed=0)
    env.reset()
    f32 = actions.astype(np.float32)

    def env_steps(n: int) -> None:
        for i in range(n):
            _, _, terminated, truncated, _ = env.step(f32[i])
            if terminated or truncated:
                env.reset()

    return _rate(raw_steps, steps), _rate(env_steps, steps)


def _gym_steps(env: gym.Env, actions: np.ndarray) -> Callable[[int], None]:
    env.reset(seed=0)

    def run(n: int) -> None:
        for i in range(n):
            _, _, terminated, truncated, _ = env.step(int(actions[i]))
            if terminated or truncated:
                env.reset()

    return run


def bench_atari(game: str, steps: int) -> tuple[float, float, float]:
    raw = gym.make(atari.ale_id(game))  # v5 defaults: frameskip 4, sticky 0.25, RGB 210x160
    actions = np.random.default_rng(0).integers(raw.action_space.n, size=steps + 200)
    return (_rate(_gym_steps(raw, actions), steps),
            _rate(_gym_steps(envs.make("atari100k-" + game), actions), steps),
            _rate(_gym_steps(envs.make("atari-spr-" + game), actions), steps))


def bench_antmaze(level: str, steps: int) -> tuple[float, float]:
    actions = np.random.default_rng(0).uniform(-1, 1, (steps + 200, 8))

    def runner(env: gym.Env) -> Callable[[int], None]:
        env.reset(seed=0)

        def run(n: int) -> None:
            for i in range(n):
                _, _, terminated, truncated, _ = env.step(actions[i])
                if terminated or truncated:
                    env.reset()

        return run

    return _rate(runner(gym.make("Ant-v5")), steps), _rate(runner(envs.make("antmaze-" + level)), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    print(f"{'env':34s} {'raw steps/s':>12s} {'rlkit steps/s':>14s} {'ratio':>7s}")
    for task in ("walker_walk", "quadruped_walk", "jaco_reach_top_left"):
        raw, ours = bench_dmc(task, args.steps)
        print(f"{'urlb-' + task:34s} {raw:12.0f} {ours:14.0f} {ours / raw:7.2f}")
    for game in ("pong", "ms_pacman"):
        raw, storm, spr = bench_atari(game, args.steps)
        print(f"{'atari100k-' + game + ' (vs ALE v5)':34s} {raw:12.0f} {storm:14.0f} {storm / raw:7.2f}")
        print(f"{'atari-spr-' + game + ' (vs ALE v5)':34s} {raw:12.0f} {spr:14.0f} {spr / raw:7.2f}")
    for level in ("umaze", "large-diverse"):
        raw, ours = bench_antmaze(level, args.steps)
        print(f"{'antmaze-' + level + ' (vs Ant-v5)':34s} {raw:12.0f} {ours:14.0f} {ours / raw:7.2f}")


if __name__ == "__main__":
    main()
