"""D4RL-named MuJoCo locomotion tasks on gymnasium's v5 environments.

D4RL's ``-v2`` datasets were recorded on the mujoco-py ``<Task>-v3`` envs; gymnasium's ``-v5`` envs have
the same observation and action layouts, rewards and 1000-step limit, and run on the maintained
``mujoco`` bindings, so a policy trained on D4RL data is evaluated there (as d3rlpy and TorchRL do).

Ant is the exception, and is adjusted to D4RL's recording: D4RL's ant observations have 111 values,
``qpos[2:]`` (13), ``qvel`` (14) and 84 contact-force values that are all zero in the files, because
mujoco-py under MuJoCo 2.x never filled ``cfrc_ext`` (D4RL issue #143). For the same reason the contact
cost in the recorded rewards is zero. Gymnasium's ``Ant-v5`` observes the real contact forces of 13
bodies (105 values) and charges their cost. So ``ant`` is ``Ant-v5`` with contact forces out of the
observation and out of the reward, padded with 84 zeros to D4RL's 111-value layout (:data:`ANT_D4RL_DIM`).
The forward reward, the survive bonus of 1, the control cost of ``0.5 |a|^2``, the 0.2-1.0 healthy
height and the reset noise are the same in both.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.errors import EnvError

LOCOMOTION_TASKS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}

# gymnasium-robotics ids of the AntMaze mazes on which Minari regenerated D4RL's AntMaze data
# (``D4RL/antmaze/<level>-v1``). The original D4RL files were recorded on another ant: envs.antmaze.
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


ANT_D4RL_DIM = 111
ANT_STATE_DIM = 27  # qpos[2:] + qvel; the rest of D4RL's ant observation is zero


def make_locomotion(name: str, **kwargs: Any) -> gym.Env:
    task = task_of(name)
    if task not in LOCOMOTION_TASKS:
        raise EnvError(f"unknown MuJoCo task '{task}' in '{name}'; choose one of {sorted(LOCOMOTION_TASKS)}")
    kwargs.pop("dataset", None)
    if task != "ant":
        return gym.make(LOCOMOTION_TASKS[task], **kwargs)
    env = gym.make("Ant-v5", **{"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0, **kwargs})
    if env.observation_space.shape != (ANT_STATE_DIM,):
        return env  # a caller asked for another layout explicitly
    space = gym.spaces.Box(-np.inf, np.inf, shape=(ANT_D4RL_DIM,), dtype=np.float64)
    pad = np.zeros(ANT_D4RL_DIM - ANT_STATE_DIM)
    return gym.wrappers.TransformObservation(env, lambda obs: np.concatenate([obs, pad]), space)


def make_antmaze_gymnasium_robotics(name: str, **kwargs: Any) -> gym.Env:
    """``antmaze-gr-<level>``: gymnasium-robotics' AntMaze (``pip install rlkit[d4rl]``), the env of Minari's
    regenerated AntMaze data, with its goal dict flattened to the D4RL layout ``[x, y, observation]``
    (the same flattening as :func:`rlkit.data.minari.flatten_observations`); it ends on reaching the goal."""
    try:
        import gymnasium_robotics
    except ImportError as exc:
        raise EnvError(f"'{name}' needs gymnasium-robotics; install it with `pip install -e .[d4rl]`"
                       ) from exc
    maze = re.sub(r"-v\d+$", "", name.lower().removeprefix("antmaze-gr-"))
    if maze not in ANTMAZE_TASKS:
        raise EnvError(f"unknown AntMaze layout '{maze}'; choose one of {sorted(ANTMAZE_TASKS)}")
    kwargs.pop("dataset", None)
    gym.register_envs(gymnasium_robotics)
    env = gym.make(ANTMAZE_TASKS[maze], continuing_task=False, **kwargs)
    inner = env.observation_space["observation"]
    space = gym.spaces.Box(-np.inf, np.inf, shape=(2 + inner.shape[0],), dtype=np.float64)
    return gym.wrappers.TransformObservation(
        env, lambda obs: np.concatenate([obs["achieved_goal"], obs["observation"]]), space)
