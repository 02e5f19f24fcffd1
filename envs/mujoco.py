"""D4RL-named MuJoCo locomotion tasks on gymnasium's v5 environments.

D4RL's ``-v2`` datasets were recorded on the mujoco-py ``<Task>-v3`` envs; gymnasium's ``-v5`` envs have
the same observation and action layouts, rewards and 1000-step limit, and run on the maintained
``mujoco`` bindings, so a policy trained on D4RL data is evaluated there (as d3rlpy and TorchRL do).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlkit.errors import EnvError

LOCOMOTION_TASKS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}

# gymnasium-robotics ids for the D4RL AntMaze mazes (the v0/v2 datasets were recorded on these layouts).
ANTMAZE_TASKS = {
    "umaze": "AntMaze_UMaze-v5",
    "umaze-diverse": "AntMaze_UMaze-v5",
    "medium-play": "AntMaze_Medium_Diverse_GR-v5",
    "medium-diverse": "AntMaze_Medium_Diverse_GR-v5",
    "large-play": "AntMaze_Large_Diverse_GR-v5",
    "large-diverse": "AntMaze_Large_Diverse_GR-v5",
}


def task_of(name: str) -> str:
    """The locomotion task of a D4RL-style name: ``walker2d-medium-replay-v2`` -> ``walker2d``."""
    return name.lower().split("-")[0]


def make_locomotion(name: str, **kwargs: Any) -> gym.Env:
    task = task_of(name)
    if task not in LOCOMOTION_TASKS:
        raise EnvError(f"unknown MuJoCo task '{task}' in '{name}'; choose one of {sorted(LOCOMOTION_TASKS)}")
    kwargs.pop("dataset", None)
    return gym.make(LOCOMOTION_TASKS[task], **kwargs)


def make_antmaze(name: str, **kwargs: Any) -> gym.Env:
    """AntMaze through gymnasium-robotics (``pip install rlkit[d4rl]``)."""
    try:
        import gymnasium_robotics  # noqa: F401
    except ImportError as exc:
        raise EnvError(f"'{name}' needs gymnasium-robotics; install it with `pip install -e .[d4rl]`"
                       ) from exc
    maze = name.lower().removeprefix("antmaze-").rsplit("-v", 1)[0]
    if maze not in ANTMAZE_TASKS:
        raise EnvError(f"unknown AntMaze layout '{maze}'; choose one of {sorted(ANTMAZE_TASKS)}")
    gym.register_envs(gymnasium_robotics)
    return gym.make(ANTMAZE_TASKS[maze], continuing_task=False, **kwargs)
