"""RGB frames of an environment for videos (``rlkit eval --video``, ``eval.video_interval``), per family:

* Atari (ale-py): the emulator's full RGB screen (210x160), not the agent's downscaled view;
* dm_control (``urlb-*`` states and ``dmc-*`` pixels): ``physics.render`` with the task's camera (the one its
  pixel observations use: camera 0, quadruped 2, jaco ``front_close``) at ``size`` x ``size``;
* gymnasium MuJoCo (hopper, halfcheetah, walker2d, ant, gymnasium-robotics AntMaze): the env's own offscreen
  renderer and default camera (it tracks the body), at ``size`` x ``size``, without shadows and reflections;
* D4RL AntMaze (rebuilt on MuJoCo 3): a top-down camera over the whole maze;
* TinyCatch: its grid image, scaled up by pixel repetition;
* any other gymnasium env built with ``render_mode="rgb_array"``: ``env.render()``.

Rendering reads the simulator state and draws no random numbers, so recording leaves episodes unchanged.
MuJoCo families render offscreen through ``MUJOCO_GL`` (``egl`` by default on a headless Linux with libEGL,
see :mod:`rlkit.envs.gl`; ``osmesa`` works too).
"""

from __future__ import annotations

import sys

import numpy as np

from rlkit.envs import gl
from rlkit.errors import EnvError

gl.choose_backend()

import gymnasium as gym  # noqa: E402

#: frame side of rendered MuJoCo / dm_control videos (pixels)
DEFAULT_SIZE = 256


def _instance(env: gym.Env, module: str, cls: str) -> bool:
    """``isinstance(env, module.cls)`` without importing ``module`` (a simulator) when it is not loaded: an env of
    that class exists only if it is."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(env, getattr(loaded, cls))


def _without_shadows(scene) -> None:
    """Turn off shadows and reflections in a MuJoCo scene: a software OpenGL (Mesa llvmpipe, the usual headless
    EGL) renders them ~15x slower than the frame itself."""
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


class FrameRenderer:
    """Renders RGB frames ``(H, W, 3)`` uint8 of one (possibly wrapped) env; holds the GL resources it creates
    (free them with :meth:`close`)."""

    def __init__(self, env: gym.Env, size: int = DEFAULT_SIZE) -> None:
        self.env, self.size = env, int(size)
        self._maze_renderer = None
        self._draw = self._pick(env.unwrapped)
        #: frames per second of real time (one frame per env step)
        self.fps = self._fps(env)

    @staticmethod
    def _fps(env: gym.Env) -> float:
        u = env.unwrapped
        if _instance(u, "ale_py.env", "AtariEnv"):  # 60 emulator frames per second, one agent step per frame skip
            return 60.0 / int(env.get_wrapper_attr("frame_skip"))
        if _instance(u, "rlkit.envs.dmc", "DMCEnv"):
            return 1.0 / (u.dm_env.control_timestep() * u.action_repeat)
        if _instance(u, "rlkit.envs.antmaze", "D4RLAntMazeEnv"):
            return 1.0 / u.dt
        return float(u.metadata.get("render_fps") or 30.0)

    def _pick(self, u: gym.Env):
        from rlkit.envs.tiny_pixels import TinyCatchEnv

        if isinstance(u, TinyCatchEnv):
            scale = max(1, self.size // max(u.observation_space.shape[:2]))
            return lambda: np.repeat(np.repeat(u.render(), scale, axis=0), scale, axis=1)
        if _instance(u, "ale_py.env", "AtariEnv"):
            return u.ale.getScreenRGB
        if _instance(u, "rlkit.envs.dmc", "DMCEnv"):
            return lambda: u.physics.render(height=self.size, width=self.size, camera_id=u.camera)
        if _instance(u, "rlkit.envs.antmaze", "D4RLAntMazeEnv"):
            return self._maze_top_down
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

        if isinstance(u, MujocoEnv):
            renderer = u.mujoco_renderer
            if renderer.viewer is None:  # the offscreen buffer is made at the first render, at this size
                renderer.width = renderer.height = self.size
                renderer.render("rgb_array")
                _without_shadows(renderer.viewer.scn)
            return lambda: renderer.render("rgb_array")
        if u.render_mode == "rgb_array":
            return self.env.render
        raise EnvError(f"cannot record videos of {u.spec.id if u.spec else type(u).__name__}: rlkit has no "
                       "renderer for it and it was not built with render_mode='rgb_array'; pass "
                       "env.kwargs.render_mode=rgb_array")

    def _maze_top_down(self) -> np.ndarray:
        # gymnasium's offscreen viewer picks the GL backend from MUJOCO_GL when it is made (mujoco.Renderer would
        # use the one chosen when mujoco was first imported, possibly before MUJOCO_GL was set)
        from gymnasium.envs.mujoco.mujoco_rendering import OffScreenViewer

        u = self.env.unwrapped
        if self._maze_renderer is None:
            self._maze_renderer = OffScreenViewer(u.model, u.data, self.size, self.size)
            _without_shadows(self._maze_renderer.scn)
            camera = self._maze_renderer.cam
            camera.lookat[:] = u.model.stat.center
            camera.distance, camera.elevation, camera.azimuth = 1.1 * u.model.stat.extent, -90.0, 90.0
        return self._maze_renderer.render("rgb_array")

    def __call__(self) -> np.ndarray:
        try:
            frame = self._draw()
        except EnvError:
            raise
        except Exception as exc:  # no OpenGL backend: a setup problem, not a bug
            raise EnvError(f"rendering a frame failed ({type(exc).__name__}: {exc}); {gl.HELP}") from exc
        return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)

    def close(self) -> None:
        if self._maze_renderer is not None:
            self._maze_renderer.close()
            self._maze_renderer = None
