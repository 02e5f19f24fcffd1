"""Environment construction by rlkit name.

``make(name)`` resolves a name to a gymnasium environment:

* D4RL-named MuJoCo tasks -- ``hopper``, ``halfcheetah``, ``walker2d``, ``ant`` with or without a dataset
  suffix (``hopper-medium``, ``walker2d-medium-replay-v2``) -- map to gymnasium's ``<Task>-v4`` envs, the
  dynamics D4RL recorded its data with (:mod:`rlkit.envs.mujoco`; a gymnasium id such as ``Walker2d-v5`` is
  gymnasium's own env); ``antmaze-<level>`` to D4RL's AntMaze evaluation env rebuilt on MuJoCo 3
  (:mod:`rlkit.envs.antmaze`), and ``antmaze-gr-<level>`` to gymnasium-robotics' AntMaze (Minari's data);
* ``atari100k-<game>`` -- the Atari 100k protocol (:mod:`rlkit.envs.atari`);
* ``urlb-<domain>[_<task>]`` and ``dmc-<domain>_<task>`` -- dm_control (:mod:`rlkit.envs.dmc`);
* anything else is passed to ``gymnasium.make`` (e.g. ``Pendulum-v1``).

The names a config can choose (``env=<name>``) are the rows of :mod:`rlkit.envs.catalog` and the YAML files
of ``configs/env/``. Families register a resolver with :func:`register_family`; this keeps the dispatcher
free of imports of simulators that a user may not need.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from rlkit.errors import EnvError

# (prefix, "module:function") pairs, tried in order; the function takes (name, **kwargs).
_FAMILIES: list[tuple[str, str]] = [
    ("atari100k-", "rlkit.envs.atari:make_atari100k"),
    ("atari-spr-", "rlkit.envs.atari:make_atari_spr"),
    ("urlb-", "rlkit.envs.dmc:make_urlb"),
    ("dmc-", "rlkit.envs.dmc:make_dmc"),
    ("antmaze-gr-", "rlkit.envs.mujoco:make_antmaze_gymnasium_robotics"),
    ("antmaze-", "rlkit.envs.antmaze:make_antmaze"),
    ("hopper", "rlkit.envs.mujoco:make_locomotion"),
    ("halfcheetah", "rlkit.envs.mujoco:make_locomotion"),
    ("walker2d", "rlkit.envs.mujoco:make_locomotion"),
    ("ant", "rlkit.envs.mujoco:make_locomotion"),
]


def register_family(prefix: str, target: str) -> None:
    """Route names starting with ``prefix`` to ``target`` ("module:function")."""
    _FAMILIES.insert(0, (prefix, target))


def _resolve(name: str) -> Callable[..., gym.Env] | None:
    for prefix, target in _FAMILIES:
        if name.lower().startswith(prefix):
            module, func = target.split(":")
            try:
                mod = importlib.import_module(module)
            except ImportError as exc:  # a family whose simulator is missing
                raise EnvError(f"environment '{name}' needs {module}, which failed to import ({exc}); "
                               "install the simulator it names") from exc
            return getattr(mod, func)
    return None


def make(name: str, **kwargs: Any) -> gym.Env:
    """Build one environment by rlkit name (see the module docstring for the name forms)."""
    factory = _resolve(name)
    if factory is not None:
        return factory(name, **kwargs)
    try:
        return gym.make(name, **kwargs)
    except gym.error.Error as exc:
        raise EnvError(f"unknown environment '{name}': {exc}; `rlkit list` shows the configured envs"
                       ) from exc


def protocol_label(name: str, kwargs: dict[str, Any] | None = None) -> str | None:
    """The benchmark-protocol label of an env name and its ``env.kwargs`` (``atari100k-pong`` ->
    ``atari100k-storm``; with ``protocol: spr`` -> ``atari100k-spr``; ``dmc-cheetah_run`` with pixels ->
    ``dmc-pixels``), or None for envs that have a single protocol (MuJoCo, gymnasium ids)."""
    low = name.lower()
    if low.startswith(("atari100k-", "atari-spr-")):
        from rlkit.envs.atari import protocol_of

        return protocol_of(name, (kwargs or {}).get("protocol"))
    if low.startswith("dmc-") and (kwargs or {}).get("obs_type") == "pixels":
        return f"dmc-pixels (action repeat {(kwargs or {}).get('action_repeat', 1)})"
    return None


def make_vector(name: str, num_envs: int, autoreset: bool = True, **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make(name)`` in a synchronous vector env.

    With ``autoreset`` (data collection) a finished sub-env resets in the same step: the final
    observation is in ``info["final_obs"]`` and the first one of the next episode in ``obs``.  Without it
    (evaluation) the caller resets finished sub-envs itself, with ``options={"reset_mask": mask}`` and a
    seed per episode.
    """
    fns = [_Factory(name, kwargs) for _ in range(num_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP if autoreset else gym.vector.AutoresetMode.DISABLED
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


class _Factory:
    """A picklable env constructor (lambdas are not)."""

    def __init__(self, name: str, kwargs: dict[str, Any]) -> None:
        self.name, self.kwargs = name, kwargs

    def __call__(self) -> gym.Env:
        return make(self.name, **self.kwargs)
