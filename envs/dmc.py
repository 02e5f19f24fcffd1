"""dm_control on the gymnasium API, URLB task names and URLB expert scores.

Names (resolved by :func:`rlkit.envs.make`):

* ``urlb-<domain>_<task>`` -- one of the 12 URLB downstream tasks (:data:`URLB_TASKS`), e.g.
  ``urlb-walker_flip``, ``urlb-jaco_reach_top_left``;
* ``urlb-<domain>`` -- the reward-free pretraining env of a domain: the physics, initial-state distribution
  and episode length of the domain's "primal" task (:data:`URLB_PRETRAIN_TASKS`, URLB's
  ``PRIMAL_TASKS``: walker_stand, quadruped_walk, jaco_reach_top_left). As in URLB, the env still
  returns that task's reward (URLB logs it); a reward-free agent ignores it. ``info["reward_free"]`` is True;
* ``dmc-<domain>_<task>`` -- any dm_control suite task (``dmc-cheetah_run``, ``dmc-ball_in_cup_catch``)
  and the URLB custom tasks.

The adapter (:class:`DMCEnv`), following URLB's wrapper stack (released code):

* actions: ``Box(-1, 1)``; an action is clipped to [-1, 1] and mapped linearly onto the action spec's
  ``[minimum, maximum]`` (identity for walker/quadruped, a rescale for jaco);
* action repeat: the action is applied ``action_repeat`` times; rewards are summed weighted by the running
  discount, the discount is multiplied, and the repeat stops at the episode's end. URLB defaults: 1 for
  states, 2 for pixels. One env step is ``action_repeat`` frames (URLB counts budgets in frames);
* states: the task's observation dict flattened to one float32 vector, keys in the order the task emits
  them (``env.observation_keys``): walker ``orientations(14), height(1), velocity(9)`` = 24; quadruped
  ``egocentric_state(44: 16 hinge angles, 16 hinge velocities, 12 actuator activations),
  torso_velocity(3), torso_upright(1), imu(6), force_torque(24)`` = 78; jaco ``jaco_arm/joints_pos(12:
  sin, cos per joint), joints_torque(6), joints_vel(6), jaco_hand/joints_pos(3), joints_vel(3),
  pinch_site_pos(3), pinch_site_rmat(9), duplo2x4/angular_velocity(3), linear_velocity(3), orientation(4),
  position(3)`` = 55;
* pixels (``obs_type="pixels"``): 84x84 RGB, channels first, the last 3 frames stacked -> ``(9, 84, 84)``
  uint8; camera 0, quadruped camera 2, jaco ``front_close``. Needs an OpenGL backend (EGL/OSMesa/GLFW);
* episode ends: dm_control ends every episode by its time limit with discount 1 -> ``truncated``; a
  discount of 0 (a terminal state) -> ``terminated``. ``info["discount"]`` carries the product;
* seeding: the task's ``RandomState`` is seeded from ``seed=`` at construction and re-seeded in place by
  ``reset(seed=s)``, so equal seeds give equal episodes.

On Linux without a display, ``MUJOCO_GL`` defaults to ``egl`` when libEGL is present (:mod:`rlkit.envs.gl`, before
dm_control is imported; an explicit ``MUJOCO_GL`` always wins).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from rlkit.envs import gl

gl.choose_backend()

import dm_env  # noqa: E402
import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from dm_control import composer, suite  # noqa: E402
from dm_control.rl import control  # noqa: E402

from rlkit.envs import catalog, urlb_tasks  # noqa: E402
from rlkit.envs.state import mujoco_restore, mujoco_snapshot  # noqa: E402
from rlkit.errors import EnvError, choices_hint  # noqa: E402

# The domains, the 12 downstream tasks ("<domain>_<task>", env name "urlb-" + task) and their expert returns
# (DDPG from scratch, 2M frames, states; normalized = return / expert, no random-score subtraction) are rows
# of rlkit.envs.catalog.
URLB_DOMAINS: tuple[str, ...] = tuple(row.domain for row in catalog.URLB_DOMAINS)
URLB_TASKS: tuple[str, ...] = tuple(row.task for row in catalog.URLB_TASKS)
# The task whose physics a domain is pretrained on (URLB's PRIMAL_TASKS).
URLB_PRETRAIN_TASKS: dict[str, str] = {row.domain: row.pretrain_task for row in catalog.URLB_DOMAINS}
URLB_EXPERT_SCORES: dict[str, float] = {row.task: row.expert for row in catalog.URLB_TASKS}

# URLB's pixel cameras (released code).
PIXEL_CAMERAS: dict[str, int | str] = {"quadruped": 2, "jaco": "front_close"}

_KNOWN_DOMAINS = sorted({d for d, _ in suite.ALL_TASKS} | {d for d, _ in urlb_tasks.CUSTOM_TASKS},
                        key=len, reverse=True)


def _strip_prefix(name: str) -> str:
    low = name.lower()
    for prefix in ("urlb-", "dmc-"):
        if low.startswith(prefix):
            return low[len(prefix):]
    return low


def split_task(name: str) -> tuple[str, str]:
    """``dmc-ball_in_cup_catch`` -> ``("ball_in_cup", "catch")``; ``urlb-walker`` -> ``("walker", "")``."""
    body = _strip_prefix(name)
    if body in URLB_DOMAINS:
        return body, ""
    for domain in _KNOWN_DOMAINS:  # longest first: "ball_in_cup" before "ball"
        if body.startswith(domain + "_"):
            return domain, body[len(domain) + 1:]
    raise EnvError(f"cannot read a dm_control domain from '{name}'; expected '<domain>_<task>' with a domain "
                   f"among {choices_hint(_KNOWN_DOMAINS)}")


def domain_of(name: str) -> str:
    """The domain of a task or env name: ``urlb-walker_flip``, ``urlb-walker``, ``walker_flip`` -> walker."""
    return split_task(name)[0]


def load_dm_env(domain: str, task: str, random: np.random.RandomState) -> dm_env.Environment:
    """The dm_control environment of (domain, task): URLB's custom task if there is one, else the suite's."""
    if (domain, task) in urlb_tasks.CUSTOM_TASKS:
        return urlb_tasks.CUSTOM_TASKS[(domain, task)](random=random)
    if (domain, task) in suite.ALL_TASKS:
        return suite.load(domain, task, task_kwargs={"random": random})
    known = [f"{d}_{t}" for d, t in suite.ALL_TASKS] + [f"{d}_{t}" for d, t in urlb_tasks.CUSTOM_TASKS]
    raise EnvError(f"unknown dm_control task '{domain}_{task}'; choose one of {choices_hint(known)}")


class DMCEnv(gym.Env):
    """A dm_control environment behind the gymnasium 1.x API (see the module docstring for the protocol)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, *, obs_type: str = "states", action_repeat: int = 1,
                 seed: int | None = None, frame_stack: int = 3, image_size: int = 84,
                 camera: int | str | None = None, reward_free: bool = False, render_mode: str | None = None,
                 ) -> None:
        if obs_type not in ("states", "pixels"):
            raise EnvError(f"obs_type must be 'states' or 'pixels', got '{obs_type}'")
        if int(action_repeat) < 1:
            raise EnvError(f"action_repeat must be >= 1, got {action_repeat}")
        self.domain, self.task_name = domain, task
        self.obs_type, self.action_repeat = obs_type, int(action_repeat)
        self.frame_stack, self.image_size = int(frame_stack), int(image_size)
        self.camera = PIXEL_CAMERAS.get(domain, 0) if camera is None else camera
        self.reward_free, self.render_mode = reward_free, render_mode
        self._random = np.random.RandomState(None if seed is None else _seed32(seed))
        self._env = load_dm_env(domain, task, self._random)

        spec = self._env.action_spec()
        self._act_low = np.asarray(spec.minimum, np.float64) * np.ones(spec.shape)
        self._act_high = np.asarray(spec.maximum, np.float64) * np.ones(spec.shape)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=spec.shape, dtype=np.float32)
        self.observation_keys = tuple(self._env.observation_spec().keys())
        if obs_type == "states":
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        else:
            shape = (3 * self.frame_stack, self.image_size, self.image_size)
            self.observation_space = gym.spaces.Box(0, 255, shape=shape, dtype=np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        self._episode_over = True
        self.max_episode_steps = math.ceil(self._dm_step_limit() / self.action_repeat)

    # --- dm_control access --------------------------------------------------------------------------
    @property
    def dm_env(self) -> dm_env.Environment:
        """The wrapped dm_control environment."""
        return self._env

    @property
    def physics(self):
        return self._env.physics

    def _dm_step_limit(self) -> int:
        if isinstance(self._env, control.Environment):
            return int(round(self._env._step_limit))
        return int(round(self._env._time_limit / self._env.control_timestep()))

    def _flat(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel()
                               for k in self.observation_keys])

    def _pixels(self) -> np.ndarray:
        try:
            frame = self.physics.render(height=self.image_size, width=self.image_size, camera_id=self.camera)
        except Exception as exc:  # no OpenGL backend: a setup problem, not a bug
            raise EnvError(f"pixel observations need MuJoCo rendering, which failed ({exc}); {gl.HELP} "
                           "-- or use obs_type='states'"
                           ) from exc
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def _observation(self, time_step: dm_env.TimeStep, first: bool) -> np.ndarray:
        if self.obs_type == "states":
            return self._flat(time_step.observation)
        frame = self._pixels()
        if first:
            self._frames.extend([frame] * self.frame_stack)
        else:
            self._frames.append(frame)
        return np.concatenate(list(self._frames), axis=0)

    # --- gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._random.seed(_seed32(seed))
        time_step = self._env.reset()
        self._episode_over = False
        return self._observation(time_step, first=True), {"discount": 1.0, "reward_free": self.reward_free}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._episode_over:
            raise EnvError(f"{self.domain}_{self.task_name}: step() after the episode ended; "
                           "call reset() first")
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._act_low + (a + 1.0) * 0.5 * (self._act_high - self._act_low)
        reward, discount = 0.0, 1.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(scaled)
            reward += (time_step.reward or 0.0) * discount
            discount *= 1.0 if time_step.discount is None else float(time_step.discount)
            if time_step.last():
                break
        last = time_step.last()
        terminated = bool(last and discount == 0.0)
        truncated = bool(last and not terminated)
        self._episode_over = last
        obs = self._observation(time_step, first=False)
        info = {"discount": discount, "reward_free": self.reward_free}
        return obs, float(reward), terminated, truncated, info

    def render(self) -> np.ndarray:
        return self.physics.render(height=self.image_size, width=self.image_size, camera_id=self.camera)

    def close(self) -> None:
        close = getattr(self._env, "close", None)
        if close is not None:
            close()

    # --- exact-resume state (envs.state) ------------------------------------------------------------
    def get_rlkit_state(self) -> dict[str, Any]:
        """Physics integration state and derived arrays, task RNG, step counters, frame stack, gym RNG."""
        env = self._env
        state: dict[str, Any] = {
            # dm_control re-derives everything from the state with mj_step1 (see mujoco_restore)
            "physics": mujoco_snapshot(self.physics.model.ptr, self.physics.data.ptr, derived=False),
            "task_random": self._random.get_state(),
            "reset_next_step": bool(env._reset_next_step),
            "episode_over": self._episode_over,
            "frames": [f.copy() for f in self._frames],
            "np_random": None if self._np_random is None else self._np_random.bit_generator.state,
        }
        if isinstance(env, control.Environment):
            state["step_count"] = int(env._step_count)
        return state

    def set_rlkit_state(self, state: dict[str, Any]) -> None:
        env = self._env
        if isinstance(env, composer.Environment) and env._mjcf_never_compiled:
            env.reset()  # compile the model once so the physics exists
        mujoco_restore(self.physics.model.ptr, self.physics.data.ptr, state["physics"], step1=True)
        self._random.set_state(state["task_random"])
        env._reset_next_step = state["reset_next_step"]
        if "step_count" in state:
            env._step_count = state["step_count"]
        self._episode_over = state["episode_over"]
        self._frames.clear()
        self._frames.extend(f.copy() for f in state["frames"])
        if state["np_random"] is not None:
            self.np_random.bit_generator.state = state["np_random"]


def _seed32(seed: int) -> int:
    """``RandomState`` takes seeds in [0, 2**32)."""
    return int(seed) % (2**32)


def _default_action_repeat(obs_type: str) -> int:
    return 2 if obs_type == "pixels" else 1


def make_urlb(name: str, *, obs_type: str = "states", action_repeat: int | None = None,
              seed: int | None = None, **kwargs: Any) -> DMCEnv:
    """``urlb-<domain>_<task>`` (a URLB downstream task) or ``urlb-<domain>`` (its pretraining env).

    ``action_repeat`` defaults to URLB's 1 for states and 2 for pixels.
    """
    domain, task = split_task(name)
    if domain not in URLB_DOMAINS:
        raise EnvError(f"'{name}' is not a URLB domain; choose one of {choices_hint(URLB_DOMAINS)} "
                       f"(plain dm_control tasks are named 'dmc-<domain>_<task>')")
    reward_free = task == ""
    full = URLB_PRETRAIN_TASKS[domain] if reward_free else f"{domain}_{task}"
    if full not in URLB_TASKS:
        names = ["urlb-" + t for t in URLB_TASKS] + ["urlb-" + d for d in URLB_DOMAINS]
        raise EnvError(f"'{name}' is not a URLB task; choose one of {choices_hint(names)}")
    repeat = _default_action_repeat(obs_type) if action_repeat is None else action_repeat
    return DMCEnv(domain, full[len(domain) + 1:], obs_type=obs_type, action_repeat=repeat, seed=seed,
                  reward_free=reward_free, **kwargs)


def make_dmc(name: str, *, obs_type: str = "states", action_repeat: int = 1, seed: int | None = None,
             **kwargs: Any) -> DMCEnv:
    """``dmc-<domain>_<task>``: a dm_control suite task (or a URLB custom task) through :class:`DMCEnv`."""
    domain, task = split_task(name)
    if not task:
        raise EnvError(f"'{name}' names no task; use 'dmc-<domain>_<task>', e.g. 'dmc-{domain}_"
                       f"{suite.TASKS_BY_DOMAIN.get(domain, ('<task>',))[0]}'")
    return DMCEnv(domain, task, obs_type=obs_type, action_repeat=action_repeat, seed=seed, **kwargs)
