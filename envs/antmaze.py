"""D4RL's AntMaze evaluation environments (``antmaze-<level>-v2``), rebuilt on MuJoCo 3.

D4RL's AntMaze datasets were recorded on its own mujoco-py ant, whose model differs from gymnasium's
``Ant`` and from gymnasium-robotics' ``AntMaze`` (RK4 at 0.02 s with 5 substeps, i.e. 0.1 s per step;
motors with a control range of +-30 and unit gear instead of gear 150; armature and damping 1 on every
leg joint), and whose maze frame puts the origin on the start cell with ``y`` growing with the map's row
index (gymnasium-robotics centres the maze and flips ``y``). A policy learnt from the D4RL files is
therefore evaluated here, on a model written from those facts (D4RL ``locomotion/ant.py``,
``maze_env.py``, ``goal_reaching_env.py``, ``assets/ant.xml``; the registration of the ``-v2`` ids):

* **maze**: the ``*_TEST`` map of each level (one goal cell ``G``, the start cell ``R``), cells of
  ``4 x 4`` m; a wall cell ``(i, j)`` is a box of half-size ``(2, 2, 1)`` centred at
  ``(4 j - 4 j_R, 4 i - 4 i_R, 1)``;
* **observation** (29): ``qpos[:15]`` (torso ``x, y, z``, quaternion, 8 joint angles) and ``qvel[:14]``;
  the goal is not observed;
* **action** (8) in ``[-1, 1]``, scaled to the motors' range as D4RL's ``NormalizedBoxEnv`` does:
  ``ctrl = clip(30 a, -30, 30)``, actuators ordered hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3,
  ankle_3 (gymnasium's Ant order);
* **reset**: ``qpos = qpos0 + U(-0.1, 0.1)``, ``qvel = 0.1 N(0, 1)`` (the torso starts at ``(0, 0, 0.75)``);
  every reset draws a new goal (``v2_resets``, the ``-v2`` ids): the goal cell's centre plus
  ``U(0, 1) + U(0, 0.5)`` on each axis, floored at 0 (``v2_resets=False``: the ``-v0`` protocol, one goal
  per env instance, drawn at its first reset);
* **reward** (sparse): 1 when the torso is within 0.5 m of the goal, else 0; the episode then
  *terminates* (D4RL's ``eval=True``), so a return is 0 or 1 and the D4RL normalized score is 100x the
  return; **time limit** 700 steps on umaze, 1000 on medium and large (``truncated``).

Choices (documented deviations): D4RL draws the goal from the global ``np.random``; here it comes from
the env's ``np_random``, so seeded evaluations are reproducible. MuJoCo 3 replaces mujoco-py's MuJoCo 2.x;
the model, integrator and contact parameters are the same, so any difference is the simulator version's.
No D4RL file could be checked against this env here (no network): a test rolls the ant and checks the
layout, spaces, scaling, goal distribution, walls and termination against the formulas above.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from rlkit.errors import EnvError

CELL = 4.0          # maze_size_scaling
WALL_HEIGHT = 0.5   # maze_height (in cells): boxes 2 m tall
GOAL_RADIUS = 0.5
MOTOR_RANGE = 30.0
FRAME_SKIP = 5

_R, _G = "r", "g"
#: D4RL's evaluation maps (``U_MAZE_TEST``, ``BIG_MAZE_TEST``, ``HARDEST_MAZE_TEST``): 1 wall, 0 free.
MAZES: dict[str, list[list[Any]]] = {
    "umaze": [[1, 1, 1, 1, 1],
              [1, _R, 0, 0, 1],
              [1, 1, 1, 0, 1],
              [1, _G, 0, 0, 1],
              [1, 1, 1, 1, 1]],
    "medium": [[1, 1, 1, 1, 1, 1, 1, 1],
               [1, _R, 0, 1, 1, 0, 0, 1],
               [1, 0, 0, 1, 0, 0, 0, 1],
               [1, 1, 0, 0, 0, 1, 1, 1],
               [1, 0, 0, 1, 0, 0, 0, 1],
               [1, 0, 1, 0, 0, 1, 0, 1],
               [1, 0, 0, 0, 1, 0, _G, 1],
               [1, 1, 1, 1, 1, 1, 1, 1]],
    "large": [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
              [1, _R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
              [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
              [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
              [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
              [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
              [1, 0, 0, 1, 0, 0, 0, 1, 0, _G, 0, 1],
              [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
}
#: dataset level -> (maze, time limit); the ``-diverse`` / ``-play`` datasets share their maze.
LEVELS: dict[str, tuple[str, int]] = {
    "umaze": ("umaze", 700), "umaze-diverse": ("umaze", 700),
    "medium-play": ("medium", 1000), "medium-diverse": ("medium", 1000),
    "large-play": ("large", 1000), "large-diverse": ("large", 1000),
}

# The ant of D4RL's locomotion assets: legs at the four diagonals, each a hip (about z) and an ankle.
# (leg body, hip offset, ankle axis, ankle range in degrees)
_LEGS = (
    ("front_left_leg", (0.2, 0.2), "-1 1 0", "30 70"),
    ("front_right_leg", (-0.2, 0.2), "1 1 0", "-70 -30"),
    ("back_leg", (-0.2, -0.2), "-1 1 0", "-70 -30"),
    ("right_back_leg", (0.2, -0.2), "1 1 0", "30 70"),
)
_ACTUATED = ("hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3")


def cell_of(maze: list[list[Any]], mark: str) -> tuple[int, int]:
    for i, row in enumerate(maze):
        for j, value in enumerate(row):
            if value == mark:
                return i, j
    raise EnvError(f"maze has no '{mark}' cell")


def cell_xy(maze: list[list[Any]], i: int, j: int) -> np.ndarray:
    """Centre of cell ``(i, j)`` in D4RL's frame: origin on the start cell, ``x`` along columns, ``y`` rows."""
    ri, rj = cell_of(maze, _R)
    return np.array([(j - rj) * CELL, (i - ri) * CELL])


def _leg_xml(index: int, name: str, offset: tuple[float, float], ankle_axis: str, ankle_range: str) -> str:
    dx, dy = offset
    return f"""
      <body name="{name}" pos="0 0 0">
        <geom name="aux_{index}_geom" type="capsule" size="0.08" fromto="0 0 0 {dx} {dy} 0"/>
        <body name="aux_{index}" pos="{dx} {dy} 0">
          <joint name="hip_{index}" type="hinge" pos="0 0 0" axis="0 0 1" range="-30 30"/>
          <geom name="leg_{index}_geom" type="capsule" size="0.08" fromto="0 0 0 {dx} {dy} 0"/>
          <body pos="{dx} {dy} 0">
            <joint name="ankle_{index}" type="hinge" pos="0 0 0" axis="{ankle_axis}" range="{ankle_range}"/>
            <geom name="ankle_{index}_geom" type="capsule" size="0.08" fromto="0 0 0 {2 * dx} {2 * dy} 0"/>
          </body>
        </body>
      </body>"""


def maze_xml(maze: list[list[Any]]) -> str:
    """The MJCF of D4RL's ant in ``maze`` (see the module docstring for every value)."""
    ri, rj = cell_of(maze, _R)
    half_h = WALL_HEIGHT / 2 * CELL
    walls = "".join(
        f'\n    <geom name="block_{i}_{j}" type="box" pos="{j * CELL - rj * CELL} {i * CELL - ri * CELL} {half_h}" '
        f'size="{CELL / 2} {CELL / 2} {half_h}" contype="1" conaffinity="1" rgba="0.7 0.5 0.3 1"/>'
        for i, row in enumerate(maze) for j, value in enumerate(row) if value == 1)
    legs = "".join(_leg_xml(k + 1, *leg) for k, leg in enumerate(_LEGS))
    motors = "".join(f'\n    <motor joint="{j}" ctrlrange="-{MOTOR_RANGE} {MOTOR_RANGE}" ctrllimited="true"/>'
                     for j in _ACTUATED)
    return f"""<mujoco model="d4rl_antmaze">
  <compiler inertiafromgeom="true" angle="degree"/>
  <option timestep="0.02" integrator="RK4"/>
  <default>
    <joint limited="true" armature="1" damping="1"/>
    <geom condim="3" conaffinity="0" margin="0.01" friction="1 0.5 0.5" solref=".02 1" solimp=".8 .8 .01"
          rgba="0.8 0.6 0.4 1" density="5.0"/>
  </default>
  <worldbody>
    <light directional="true" diffuse="1 1 1" specular=".1 .1 .1" pos="0 0 1.3" dir="0 0 -1.3"/>
    <geom name="floor" type="plane" pos="0 0 0" size="40 40 40" conaffinity="1" condim="3"
          rgba="0.8 0.9 0.8 1"/>{walls}
    <body name="torso" pos="0 0 0.75">
      <geom name="torso_geom" type="sphere" size="0.25" pos="0 0 0"/>
      <joint name="root" type="free" limited="false" pos="0 0 0" axis="0 0 1" margin="0.01" armature="0"
             damping="0"/>{legs}
    </body>
  </worldbody>
  <actuator>{motors}
  </actuator>
</mujoco>
"""


class D4RLAntMazeEnv(gym.Env):
    """``antmaze-<level>-v2`` as D4RL evaluates it (module docstring). Observations ``(29,)`` float64."""

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, maze: str = "umaze", v2_resets: bool = True, render_mode: str | None = None) -> None:
        if maze not in MAZES:
            raise EnvError(f"unknown AntMaze maze '{maze}'; choose one of: {', '.join(MAZES)}")
        self.maze_name = maze
        self.maze = MAZES[maze]
        self.model = mujoco.MjModel.from_xml_string(maze_xml(self.maze))
        self.data = mujoco.MjData(self.model)
        self.init_qpos = self.model.qpos0.copy()
        self.goal_cell = cell_xy(self.maze, *cell_of(self.maze, _G))
        self.goal = self.goal_cell.copy()
        self.v2_resets = bool(v2_resets)
        self._goal_drawn = False
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(29,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(8,), dtype=np.float32)

    @property
    def dt(self) -> float:
        return float(self.model.opt.timestep) * FRAME_SKIP

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:15], self.data.qvel[:14]]).astype(np.float64)

    def sample_goal(self) -> np.ndarray:
        """D4RL's ``goal_sampler``: the goal cell's centre + ``U(0, CELL/4)`` + ``U(0, 0.5) CELL/4`` per axis,
        floored at 0."""
        rng = self.np_random
        xy = self.goal_cell + rng.uniform(0.0, CELL * 0.25, size=2) + rng.uniform(0.0, 0.5, size=2) * 0.25 * CELL
        return np.maximum(xy, 0.0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.v2_resets or not self._goal_drawn:
            self.goal = self.sample_goal()
            self._goal_drawn = True
        mujoco.mj_resetData(self.model, self.data)
        rng = self.np_random
        self.data.qpos[:] = self.init_qpos + rng.uniform(-0.1, 0.1, size=self.model.nq)
        self.data.qvel[:] = rng.standard_normal(self.model.nv) * 0.1
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {"goal": self.goal.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (8,):
            raise EnvError(f"AntMaze takes 8 actions in [-1, 1], got shape {a.shape}")
        self.data.ctrl[:] = np.clip(MOTOR_RANGE * a, -MOTOR_RANGE, MOTOR_RANGE)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        distance = float(np.linalg.norm(self.data.qpos[:2] - self.goal))
        success = distance <= GOAL_RADIUS
        info = {"goal": self.goal.copy(), "goal_distance": distance, "success": success}
        return self._obs(), float(success), success, False, info


def make_antmaze(name: str, **kwargs: Any) -> gym.Env:
    """``antmaze-<level>[-v2]`` (D4RL's level names) -> :class:`D4RLAntMazeEnv` with its time limit."""
    level = re.sub(r"-v\d+$", "", name.lower().removeprefix("antmaze-"))
    kwargs.pop("dataset", None)
    if level not in LEVELS:
        raise EnvError(f"unknown AntMaze level '{level}' in '{name}'; choose one of: {', '.join(LEVELS)}")
    maze, limit = LEVELS[level]
    return gym.wrappers.TimeLimit(D4RLAntMazeEnv(maze, **kwargs), max_episode_steps=limit)
