"""Evaluation returns of the shipped behaviour policies (``rlkit/data/policies/<task>-<level>.pt``).

Each policy is evaluated with rlkit's evaluation loop (episode ``j`` reset with seed ``seed + j``) on the task's
env (gymnasium's v4, the D4RL recording dynamics) and, with ``--also GYM_ID``, on another env for comparison
(e.g. ``Walker2d-v5``, on which the first walker2d policies were trained)::

    python bench/shipped_policies.py walker2d --episodes 5 --also Walker2d-v5

Deterministic (tanh-mean) actions, as the training runs' evaluations; ``--stochastic`` samples actions, as
collection does.
"""

from __future__ import annotations

import argparse

import numpy as np

from rlkit import envs
from rlkit.data.collect import POLICY_DIR, load_policy
from rlkit.evaluation.evaluate import evaluate
from rlkit.evaluation.scores import reference


def measure(task: str, level: str, env_name: str, episodes: int, seed: int, deterministic: bool) -> np.ndarray:
    """Returns of ``episodes`` evaluation episodes of ``<task>-<level>.pt`` on ``env_name``."""
    venv = envs.make_vector(env_name, min(episodes, 5), autoreset=False)
    policy = load_policy(POLICY_DIR / f"{task}-{level}.pt", venv)
    result = evaluate(policy.algo, venv, episodes, seed, deterministic=deterministic)
    venv.close()
    return result.returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("hopper", "halfcheetah", "walker2d"))
    parser.add_argument("--levels", nargs="+", default=["medium", "expert"])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--also", nargs="*", default=[], help="other gymnasium ids to evaluate on")
    parser.add_argument("--stochastic", action="store_true")
    ns = parser.parse_args()
    low, high = reference("d4rl", ns.task)
    print(f"{'policy':24s} {'env':16s} {'return mean ± std':>20s} {'normalized':>10s}")
    for level in ns.levels:
        for env_name in [ns.task, *ns.also]:
            r = measure(ns.task, level, env_name, ns.episodes, ns.seed, not ns.stochastic)
            label = envs.make(env_name).spec.id
            print(f"{ns.task + '-' + level:24s} {label:16s} {r.mean():11.1f} ± {r.std():6.1f} "
                  f"{100 * (r.mean() - low) / (high - low):10.1f}", flush=True)


if __name__ == "__main__":
    main()
