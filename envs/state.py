"""Snapshot and restore of a live environment, for bit-for-bit resume of online training.

``get_env_state(env)`` returns a picklable dict; ``set_env_state(env2, state)`` on a freshly built env of
the same name (reset with any seed) makes ``env2`` continue exactly as ``env`` would have: same
observations, rewards, terminations for the same actions, including the RNG draws of resets and of
``action_space.sample()``.

The wrapper chain is walked from the outside in; each layer is saved by the first rule that applies:

1. the layer defines ``get_rlkit_state()`` / ``set_rlkit_state(state)`` (the dm_control adapter, the Atari
   protocol wrappers): that pair is used, plus the RNGs of the spaces the layer owns;
2. the layer holds a MuJoCo ``model``/``data`` (gymnasium's MuJoCo envs): the full integration state
   (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, act, warm-start accelerations, controls,
   applied forces, mocap, user data, plugin state) plus the derived arrays an env may read between steps
   (body poses, ``cfrc_ext``, sensor data, ...), then rule 4;
3. the layer is ale-py's ``AtariEnv``: ``ale.cloneState(include_rng=True)`` (emulator, frame counters,
   the ALE's RNG), then rule 4. The ALE does not save the previous action its sticky-action logic repeats,
   so a raw ALE env with ``repeat_action_probability > 0`` is only approximately resumed (a warning says
   so); :mod:`rlkit.envs.atari` implements sticky actions itself for this reason;
4. generic: every instance attribute that is plain data (numbers, strings, numpy arrays, and lists /
   tuples / deques / dicts of those) -- e.g. ``TimeLimit._elapsed_steps``, ``OrderEnforcing._has_reset``,
   ``PassiveEnvChecker.checked_*``, ``RecordEpisodeStatistics`` counters and queues, ``Pendulum.state``,
   ``FrameStackObservation.obs_queue`` -- plus the layer's ``np_random`` generator and the RNGs of the
   spaces it owns.

For a ``SyncVectorEnv``, :func:`get_vector_env_state` saves every sub-env this way plus the vector env's
own autoreset bookkeeping (``_autoreset_envs``, cached observations / rewards / terminations /
truncations) and RNGs.
"""

from __future__ import annotations

import copy
import warnings
from collections import deque
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from rlkit.errors import CheckpointError

STATE_FORMAT = "rlkit-env-state-v1"

# Attributes that describe configuration or hold objects, never dynamic state.
_SKIP_ATTRS = frozenset({"env", "spec", "_cached_spec", "metadata", "_metadata", "render_mode",
                         "_ezpickle_args", "_ezpickle_kwargs", "_np_random", "env_fns",
                         "_previous_data"})  # PassiveEnvChecker's one-off data-reuse check
_SPACE_ATTRS = ("action_space", "observation_space", "_action_space", "_observation_space",
                "single_action_space", "single_observation_space")

# mjData arrays derived from the state that gymnasium envs may read between steps (e.g. Ant reads the
# torso ``xpos`` before stepping, ``cfrc_ext`` after). They are copied back verbatim so that these reads
# see what the original env saw (after ``mj_step`` they lag the integrated state by one substep).
_MJ_DERIVED = ("xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat",
               "site_xpos", "site_xmat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com",
               "cdof", "cinert", "ten_length", "actuator_length", "cvel", "cdof_dot", "qfrc_bias",
               "qfrc_passive", "subtree_linvel", "subtree_angmom", "actuator_velocity", "actuator_force",
               "qfrc_actuator", "qfrc_smooth", "qacc_smooth", "qfrc_constraint", "qacc", "cacc", "cfrc_int",
               "cfrc_ext", "sensordata", "energy", "ten_velocity", "qfrc_inverse")
_MJ_SIG = mujoco.mjtState.mjSTATE_INTEGRATION


# --- MuJoCo ------------------------------------------------------------------------------------------------

def mujoco_snapshot(model: mujoco.MjModel, data: mujoco.MjData, derived: bool = True,
                    ) -> dict[str, np.ndarray]:
    """The integration state (``mj_getState`` with ``mjSTATE_INTEGRATION``), plus the derived arrays
    (``derived=True``) for envs that read them between steps."""
    integration = np.empty(mujoco.mj_stateSize(model, _MJ_SIG), np.float64)
    mujoco.mj_getState(model, data, integration, _MJ_SIG)
    snap = {"integration": integration}
    if derived:
        for name in _MJ_DERIVED:
            if hasattr(data, name):
                snap[name] = np.array(getattr(data, name), copy=True)
    return snap


def mujoco_restore(model: mujoco.MjModel, data: mujoco.MjData, snap: dict[str, np.ndarray],
                   step1: bool = False) -> None:
    """Inverse of :func:`mujoco_snapshot`.

    ``step1=True`` re-runs ``mj_step1`` (position and velocity stages, contacts, constraint rows) after
    setting the state, which dm_control's ``legacy_step`` needs: its next step starts with ``mj_step2``
    on the stage-1 results of the previous one.
    """
    integration = snap["integration"]
    if integration.size != mujoco.mj_stateSize(model, _MJ_SIG):
        raise CheckpointError("MuJoCo state size does not match this model; the snapshot comes from a "
                              "different environment")
    mujoco.mj_setState(model, data, integration, _MJ_SIG)
    if step1:
        mujoco.mj_step1(model, data)
    for name, value in snap.items():
        if name != "integration":
            getattr(data, name)[...] = value


# --- generic plain-data attributes ---------------------------------------------------------------------

def _is_plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype != object
    if depth >= 4:
        return False
    if isinstance(value, (list, tuple, deque)):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _rng_state(rng: np.random.Generator | None) -> dict | None:
    return None if rng is None else copy.deepcopy(rng.bit_generator.state)


def _make_or_set_rng(rng: np.random.Generator | None, state: dict) -> np.random.Generator:
    if rng is None:
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = copy.deepcopy(state)
    return rng


def _space_rngs(space: gym.Space) -> Any:
    """RNG states of a space and of its sub-spaces (``Dict``/``Tuple`` sample each sub-space)."""
    sub = getattr(space, "spaces", None)
    if isinstance(sub, dict):
        children: Any = {k: _space_rngs(v) for k, v in sub.items()}
    elif isinstance(sub, (tuple, list)):
        children = [_space_rngs(v) for v in sub]
    else:
        children = None
    return {"rng": _rng_state(space._np_random), "children": children}


def _set_space_rngs(space: gym.Space, saved: dict) -> None:
    space._np_random = None if saved["rng"] is None else _make_or_set_rng(space._np_random, saved["rng"])
    sub, children = getattr(space, "spaces", None), saved["children"]
    if isinstance(sub, dict) and isinstance(children, dict):
        for k, v in sub.items():
            _set_space_rngs(v, children[k])
    elif isinstance(sub, (tuple, list)) and isinstance(children, list):
        for v, c in zip(sub, children):
            _set_space_rngs(v, c)


def _generic_state(obj: Any) -> dict[str, Any]:
    attrs = {k: copy.deepcopy(v) for k, v in vars(obj).items() if k not in _SKIP_ATTRS and _is_plain(v)}
    spaces = {k: _space_rngs(v) for k, v in vars(obj).items()
              if k in _SPACE_ATTRS and isinstance(v, gym.Space)}
    return {"attrs": attrs, "np_random": _rng_state(vars(obj).get("_np_random")), "spaces": spaces}


def _set_generic_state(obj: Any, state: dict[str, Any]) -> None:
    current = vars(obj)
    for k, v in state["attrs"].items():
        old = current.get(k)
        if (isinstance(old, np.ndarray) and isinstance(v, np.ndarray) and old.shape == v.shape
                and old.dtype == v.dtype and old.flags.writeable):
            old[...] = v  # in place: other objects may hold this array
        else:
            setattr(obj, k, copy.deepcopy(v))
    if state["np_random"] is not None:
        obj._np_random = _make_or_set_rng(current.get("_np_random"), state["np_random"])
    elif "_np_random" in current:
        obj._np_random = None
    for k, saved in state["spaces"].items():
        space = current.get(k)
        if isinstance(space, gym.Space):
            _set_space_rngs(space, saved)


# --- one layer -----------------------------------------------------------------------------------------

def _is_mujoco_env(layer: Any) -> bool:
    return isinstance(vars(layer).get("data"), mujoco.MjData) and isinstance(vars(layer).get("model"),
                                                                             mujoco.MjModel)


def _is_ale_env(layer: Any) -> bool:
    return type(layer).__module__.startswith("ale_py") and hasattr(layer, "ale")


def _layer_state(layer: Any) -> dict[str, Any]:
    if hasattr(type(layer), "get_rlkit_state"):
        spaces = {k: _space_rngs(v) for k, v in vars(layer).items()
                  if k in _SPACE_ATTRS and isinstance(v, gym.Space)}
        return {"kind": "custom", "custom": layer.get_rlkit_state(), "spaces": spaces}
    state = {"kind": "generic", **_generic_state(layer)}
    if _is_mujoco_env(layer):
        state["kind"] = "mujoco"
        state["mujoco"] = mujoco_snapshot(layer.model, layer.data)
    elif _is_ale_env(layer):
        if layer.ale.getFloat("repeat_action_probability") > 0:
            warnings.warn("ALE sticky actions (repeat_action_probability > 0) keep a previous action that "
                          "cloneState does not save; the restored env may differ on its next sticky frame. "
                          "Use envs.atari's envs, which implement sticky actions themselves.", stacklevel=3)
        state["kind"] = "ale"
        state["ale"] = layer.ale.cloneState(include_rng=True)
    return state


def _set_layer_state(layer: Any, state: dict[str, Any]) -> None:
    if state["kind"] == "custom":
        layer.set_rlkit_state(state["custom"])
        for k, saved in state["spaces"].items():
            if isinstance(vars(layer).get(k), gym.Space):
                _set_space_rngs(vars(layer)[k], saved)
        return
    if state["kind"] == "ale":
        layer.ale.restoreState(state["ale"])
    _set_generic_state(layer, state)
    if state["kind"] == "mujoco":
        mujoco_restore(layer.model, layer.data, state["mujoco"])


def _layers(env: Any) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


# --- public API ----------------------------------------------------------------------------------------

def get_env_state(env: gym.Env) -> dict[str, Any]:
    """A picklable snapshot of ``env`` (every wrapper layer and the base env); see the module docstring."""
    layers = _layers(env)
    return {"format": STATE_FORMAT,
            "classes": [type(layer).__name__ for layer in layers],
            "layers": [_layer_state(layer) for layer in layers]}


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore a :func:`get_env_state` snapshot into ``env``, built the same way (same name and kwargs)."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"not an environment snapshot (expected format '{STATE_FORMAT}'); the "
                              "checkpoint is corrupt or from another rlkit version")
    layers = _layers(env)
    classes = [type(layer).__name__ for layer in layers]
    if classes != state["classes"]:
        raise CheckpointError(f"environment snapshot has wrappers {state['classes']} but this env has "
                              f"{classes}; build the env with the same name and options as the saved run")
    for layer, layer_state in zip(layers, state["layers"]):
        _set_layer_state(layer, layer_state)


def get_vector_env_state(venv: gym.vector.SyncVectorEnv) -> dict[str, Any]:
    """Snapshot of a synchronous vector env: each sub-env plus the vector env's bookkeeping and RNGs."""
    if not isinstance(venv, gym.vector.SyncVectorEnv):
        raise CheckpointError(f"get_vector_env_state supports SyncVectorEnv, got {type(venv).__name__}")
    return {"format": STATE_FORMAT, "num_envs": venv.num_envs,
            "envs": [get_env_state(e) for e in venv.envs], "vector": _generic_state(venv)}


def set_vector_env_state(venv: gym.vector.SyncVectorEnv, state: dict[str, Any]) -> None:
    """Restore a :func:`get_vector_env_state` snapshot into a vector env built the same way."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or "envs" not in state:
        raise CheckpointError("not a vector-env snapshot; the checkpoint is corrupt or from another version")
    if state["num_envs"] != venv.num_envs:
        raise CheckpointError(f"vector-env snapshot has {state['num_envs']} envs but this one has "
                              f"{venv.num_envs}; use the same num_envs as the saved run")
    for env, env_state in zip(venv.envs, state["envs"]):
        set_env_state(env, env_state)
    _set_generic_state(venv, state["vector"])
