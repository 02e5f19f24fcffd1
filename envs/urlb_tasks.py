"""URLB's custom dm_control tasks (Laskin et al. 2021, arXiv 2110.15191), built on dm_control's own models.

Tasks and rewards of URLB's released code. Every reward uses dm_control's ``tolerance``:
``tol(x; [lo, hi], m, v, sigma)`` is 1 inside the bounds and ``sigma_v(d)`` outside, with ``d`` the
distance to the nearest bound divided by ``m``.

* **walker_flip** -- stock walker model and initialisation (joints randomised within their ranges),
  ``standing = tol(h; [1.2, inf), m=0.6)``, ``upright = (1 + u)/2``, ``stand = (3 standing + upright)/4``,
  ``move = tol(L_y; [5, inf), m=5, v=0, linear)`` with ``L_y`` the torso-subtree angular momentum about the
  world y axis, ``r = stand (5 move + 1)/6``. 25 s episodes at 0.025 s control (1000 steps).
* **quadruped_stand** -- ``r = tol(u; [1, inf), m=2, v=0, linear)`` (``= (1 + u)/2`` for ``u`` in [-1, 1]).
* **quadruped_jump** -- ``r = upright * tol(z_com; [1, inf), m=1, v=0.5, linear)`` with ``z_com`` the
  ``center_of_mass`` (torso subtree) sensor's z.
  Both quadruped tasks use the stock model with floor half-size 10, no walls/ball/terrain/rangefinders,
  the stock random-orientation, lowest-non-contacting-height initialisation, and 20 s episodes at 0.02 s.
* **jaco_reach_{top,bottom}_{left,right}** -- dm_control's manipulation ``Reach`` task (standard arena,
  Jaco arm + hand, Duplo brick target) with the brick's (x, y) fixed per task at z = 0.001 m (random
  rotation about z, settled), tool-centre point initialised uniformly in x, y in [-0.1, 0.1],
  z in [0.2, 0.4], gripper down; ``r = tol(|p_tcp - p_brick|; [0, 0.05], m=0.05)`` (gaussian, v=0.1).
  10 s episodes at 0.04 s control (250 steps); "perfect features" observations.

The custom walker/quadruped tasks of URLB load MJCF identical to dm_control's stock files (checked by diff),
so the models here are dm_control's own; no new assets are needed.
"""

from __future__ import annotations

import collections

import numpy as np
from dm_control import composer
from dm_control.entities import props
from dm_control.manipulation import reach
from dm_control.manipulation.shared import arenas, constants, observations, robots, workspaces
from dm_control.rl import control
from dm_control.suite import common, quadruped, walker
from dm_control.utils import rewards

# --- walker -------------------------------------------------------------------------------------------

WALKER_TIME_LIMIT = 25.0
WALKER_CONTROL_TIMESTEP = 0.025
WALKER_STAND_HEIGHT = 1.2
WALKER_SPIN_SPEED = 5.0


class WalkerPhysics(walker.Physics):
    """Stock walker physics plus the torso-subtree angular momentum about world y (walker_flip's ``L_y``)."""

    def torso_angular_momentum_y(self) -> float:
        return float(self.named.data.subtree_angmom["torso"][1])


def walker_stand_reward(physics: walker.Physics) -> float:
    """``(3 tol(h; [1.2, inf), m=0.6) + (1 + u)/2) / 4`` -- the stock walker's stand term."""
    standing = rewards.tolerance(physics.torso_height(), bounds=(WALKER_STAND_HEIGHT, float("inf")),
                                 margin=WALKER_STAND_HEIGHT / 2)
    upright = (1 + physics.torso_upright()) / 2
    return float((3 * standing + upright) / 4)


class WalkerFlip(walker.PlanarWalker):
    """URLB walker_flip: stand term times ``(5 tol(L_y; [5, inf), m=5, v=0, linear) + 1)/6``."""

    def __init__(self, random=None) -> None:
        super().__init__(move_speed=0.0, random=random)

    def get_reward(self, physics: WalkerPhysics) -> float:
        move = rewards.tolerance(physics.torso_angular_momentum_y(), bounds=(WALKER_SPIN_SPEED, float("inf")),
                                 margin=WALKER_SPIN_SPEED, value_at_margin=0, sigmoid="linear")
        return float(walker_stand_reward(physics) * (5 * move + 1) / 6)


def walker_flip(random=None) -> control.Environment:
    physics = WalkerPhysics.from_xml_string(*walker.get_model_and_assets())
    return control.Environment(physics, WalkerFlip(random=random), time_limit=WALKER_TIME_LIMIT,
                               control_timestep=WALKER_CONTROL_TIMESTEP)


# --- quadruped ----------------------------------------------------------------------------------------

QUADRUPED_TIME_LIMIT = 20.0
QUADRUPED_CONTROL_TIMESTEP = 0.02
QUADRUPED_FLOOR_SIZE = 10.0  # = time limit x walk speed, as the stock walk task
QUADRUPED_JUMP_HEIGHT = 1.0


class QuadrupedPhysics(quadruped.Physics):
    """Stock quadruped physics plus the torso-subtree centre-of-mass height (sensor ``center_of_mass``)."""

    def com_height(self) -> float:
        return float(self.named.data.sensordata["center_of_mass"][2])


def quadruped_upright_reward(physics: quadruped.Physics) -> float:
    """``tol(u; [1, inf), m=2, v=0, linear)``, ``u`` = zz of the torso rotation matrix."""
    return float(rewards.tolerance(physics.torso_upright(), bounds=(1.0, float("inf")), margin=2.0,
                                   value_at_margin=0, sigmoid="linear"))


class QuadrupedStand(quadruped.Move):
    """URLB quadruped_stand: the upright reward alone (stock ``Move`` initialisation and observations)."""

    def __init__(self, random=None) -> None:
        super().__init__(desired_speed=0.0, random=random)

    def get_reward(self, physics: QuadrupedPhysics) -> float:
        return quadruped_upright_reward(physics)


class QuadrupedJump(quadruped.Move):
    """URLB quadruped_jump: ``upright * tol(z_com; [1, inf), m=1, v=0.5, linear)``."""

    def __init__(self, random=None) -> None:
        super().__init__(desired_speed=0.0, random=random)

    def get_reward(self, physics: QuadrupedPhysics) -> float:
        jump = rewards.tolerance(physics.com_height(), bounds=(QUADRUPED_JUMP_HEIGHT, float("inf")),
                                 margin=QUADRUPED_JUMP_HEIGHT, value_at_margin=0.5, sigmoid="linear")
        return float(quadruped_upright_reward(physics) * jump)


def _quadruped_env(task: quadruped.Move) -> control.Environment:
    xml = quadruped.make_model(floor_size=QUADRUPED_FLOOR_SIZE)
    physics = QuadrupedPhysics.from_xml_string(xml, common.ASSETS)
    return control.Environment(physics, task, time_limit=QUADRUPED_TIME_LIMIT,
                               control_timestep=QUADRUPED_CONTROL_TIMESTEP)


def quadruped_stand(random=None) -> control.Environment:
    return _quadruped_env(QuadrupedStand(random=random))


def quadruped_jump(random=None) -> control.Environment:
    return _quadruped_env(QuadrupedJump(random=random))


# --- jaco reach ---------------------------------------------------------------------------------------

JACO_TIME_LIMIT = 10.0
JACO_PROP_Z = 0.001  # the brick starts just above the table, then settles
JACO_TARGET_XY = {
    "reach_top_left": (-0.09, 0.09),
    "reach_top_right": (0.09, 0.09),
    "reach_bottom_left": (-0.09, -0.09),
    "reach_bottom_right": (0.09, -0.09),
}
JACO_TCP_BOX = workspaces.BoundingBox(lower=(-0.1, -0.1, 0.2), upper=(0.1, 0.1, 0.4))
JACO_TARGET_RADIUS = 0.05

# The three fields dm_control's Reach reads from a workspace.
JacoWorkspace = collections.namedtuple("JacoWorkspace", ["target_bbox", "tcp_bbox", "arm_offset"])


def jaco_reach(task: str, random=None) -> composer.Environment:
    """A URLB jaco reach task: dm_control's ``Reach`` with the brick pinned to the task's (x, y).

    Pixels (URLB's ``front_close`` camera) are rendered by the adapter from the camera of that name.
    """
    x, y = JACO_TARGET_XY[task]
    target = workspaces.BoundingBox(lower=(x, y, JACO_PROP_Z), upper=(x, y, JACO_PROP_Z))
    workspace = JacoWorkspace(target_bbox=target, tcp_bbox=JACO_TCP_BOX, arm_offset=robots.ARM_OFFSET)
    settings = observations.PERFECT_FEATURES
    brick = props.Duplo(observable_options=observations.make_options(settings,
                                                                     observations.FREEPROP_OBSERVABLES))
    reach_task = reach.Reach(arena=arenas.Standard(), arm=robots.make_arm(obs_settings=settings),
                             hand=robots.make_hand(obs_settings=settings), prop=brick, obs_settings=settings,
                             workspace=workspace, control_timestep=constants.CONTROL_TIMESTEP)
    return composer.Environment(reach_task, time_limit=JACO_TIME_LIMIT, random_state=random,
                                strip_singleton_obs_buffer_dim=True)


def jaco_tcp_and_target(env: composer.Environment) -> tuple[np.ndarray, np.ndarray]:
    """World positions of the tool-centre point and of the brick (the two ends of the reach distance)."""
    task = env.task
    physics = env.physics
    return (np.array(physics.bind(task.hand.tool_center_point).xpos),
            np.array(physics.bind(task._target).xpos))


# (domain, task) -> constructor(random) for every URLB task dm_control's suite does not ship.
CUSTOM_TASKS = {
    ("walker", "flip"): walker_flip,
    ("quadruped", "stand"): quadruped_stand,
    ("quadruped", "jump"): quadruped_jump,
    **{("jaco", t): (lambda random=None, _t=t: jaco_reach(_t, random=random)) for t in JACO_TARGET_XY},
}
