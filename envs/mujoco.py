"""D4RL-named MuJoCo locomotion tasks on gymnasium's v4 envs: the dynamics D4RL's data was recorded with.

D4RL's ``-v2`` locomotion datasets were recorded on the mujoco-py ``<Task>-v3`` envs. Gymnasium's ``-v4``
envs are those envs ported to the maintained ``mujoco`` bindings: the same model files, observations,
rewards, termination rules, reset noise and 1000-step limit. rlkit builds exactly them, so every step a
policy takes is the step its dataset was recorded with (``tests/test_envs_mujoco.py`` replays seeds and
action sequences against ``gymnasium.make("<Task>-v4")`` to the end of each episode, bit for bit).

Gymnasium's ``-v5`` envs are *not* the recording dynamics, which is why rlkit does not use them:

* ``Walker2d-v5`` loads ``walker2d_v5.xml``, whose right foot has friction 1.9 where ``walker2d.xml`` (v2-v4,
  D4RL) has 0.9: observations part within tens of steps;
* ``Hopper-v5``, ``Walker2d-v5`` and ``Ant-v5`` pay no healthy reward on the step that ends the episode;
  v2-v4 pay it (every return differs by 1.0 at a fall).

v5 with ``xml_file=`` and a reward wrapper could mimic v4, but would re-derive the v4 semantics by hand; v4
*is* them. Gymnasium marks v4 "out of date" with a ``DeprecationWarning`` when it is made; rlkit chose v4 on
purpose, so :func:`make_locomotion` silences exactly that message for exactly these ids.

Ant is adjusted to D4RL's recording: D4RL's ant observations have 111 values, ``qpos[2:]`` (13), ``qvel``
(14) and 84 contact-force values that are all zero in the files, because mujoco-py under MuJoCo 2.x never
filled ``cfrc_ext`` (D4RL issue #143). For the same reason the contact cost in the recorded rewards is
zero. So ``ant`` is ``Ant-v4`` with ``use_contact_forces=False`` (contact forces neither observed nor
charged; the forward reward, survive bonus of 1, control cost ``0.5 |a|^2``, 0.2-1.0 healthy height and
reset noise as recorded), padded with 84 zeros to D4RL's 111-value layout (:data:`ANT_D4RL_DIM`).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.envs.catalog import LOCOMOTION
from rlkit.errors import EnvError

#: rlkit task -> the gymnasium id it is (the D4RL ``-v2`` recording dynamics), from the catalog's rows
LOCOMOTION_TASKS = {row.domain: row.gym_id for row in LOCOMOTION}

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


def make_v4(gym_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(gym_id)`` for a v4 locomotion id, without gymnasium's "out of date" warning (rlkit
    runs v4 on purpose: it is the recording dynamics; see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{re.escape(gym_id)} is out of date.*")
        return gym.make(gym_id, **kwargs)


def model_file(name: str) -> str:
    """The MuJoCo model file the task ``name`` loads (e.g. ``walker2d.xml``), for reports."""
    env = make_locomotion(name)
    try:
        return str(env.unwrapped.fullpath).rsplit("/", 1)[-1]
    finally:
        env.close()


def make_locomotion(name: str, **kwargs: Any) -> gym.Env:
    """The rlkit task of a D4RL-style name (``hopper``, ``walker2d-medium-replay-v2``); a gymnasium id
    (``Walker2d-v5``) is gymnasium's env of that id, unchanged."""
    if name in gym.registry:
        return gym.make(name, **kwargs)
    task = task_of(name)
    if task not in LOCOMOTION_TASKS:
        raise EnvError(f"unknown MuJoCo task '{task}' in '{name}'; choose one of {sorted(LOCOMOTION_TASKS)}")
    kwargs.pop("dataset", None)
    if task != "ant":
        return make_v4(LOCOMOTION_TASKS[task], **kwargs)
    env = make_v4("Ant-v4", **{"use_contact_forces": False, **kwargs})
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
