"""Restoring a MuJoCo env to a stored simulator state, and rolling out from it.

Rows of D4RL locomotion files (and of rlkit's own collection) carry the simulator state of each observation in
``infos/qpos`` and ``infos/qvel``; putting an env back into that state lets a rollout oracle (OAP, Yang et al.
2023, Sec. 4.1) or a value check compare actions from exactly the dataset's state.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

#: locomotion tasks whose observation is ``qpos[1:] ++ qvel``: their state can be rebuilt from an observation up
#: to the x position, which neither their dynamics nor their rewards (x *velocity*) depend on; value: ``(nq, the
#: clip of the observed velocities or None)`` (hopper and walker2d clip them to ±10: such rows are not exact)
OBSERVATION_STATES: dict[str, tuple[int, float | None]] = {"hopper": (6, 10.0), "walker2d": (9, 10.0),
                                                           "halfcheetah": (9, None)}


def state_from_observation(task: str, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(qpos, qvel, exact)`` of a batch of ``task`` observations: ``qpos = (0, obs[:nq-1])``, ``qvel =
    obs[nq-1:]``; ``exact`` is False on rows whose observed velocities sit at the clip (their true ``qvel``
    is not in the observation)."""
    nq, clip = OBSERVATION_STATES[task]
    obs = np.asarray(observations, np.float64)
    qpos = np.concatenate([np.zeros((len(obs), 1)), obs[:, :nq - 1]], axis=1)
    qvel = obs[:, nq - 1:]
    exact = np.ones(len(obs), bool) if clip is None else (np.abs(qvel) < clip * (1 - 1e-6)).all(axis=1)
    return qpos, qvel, exact


def sim_data(env: gym.Env):
    """The MuJoCo ``MjData`` behind a gymnasium env, or None for other simulators."""
    from gymnasium.envs.mujoco import MujocoEnv

    raw = env.unwrapped
    return raw.data if isinstance(raw, MujocoEnv) else None


def _observed(env: gym.Env, raw_obs: np.ndarray) -> np.ndarray:
    """``raw_obs`` of the bare simulator mapped through ``env``'s observation wrappers, innermost first (the
    observation ``env`` itself gives: e.g. ``ant``'s 27 values padded to D4RL's 111)."""
    wrappers = []
    while isinstance(env, gym.Wrapper):
        wrappers.append(env)
        env = env.env
    for wrapper in reversed(wrappers):
        if isinstance(wrapper, gym.ObservationWrapper):
            raw_obs = wrapper.observation(raw_obs)
    return raw_obs


def restore_state(env: gym.Env, qpos: np.ndarray, qvel: np.ndarray,
                  previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Put a MuJoCo env into ``(qpos, qvel)`` and return its observation there (through its wrappers).

    ``qpos``/``qvel`` are not all of what the next step reads: after ``mj_step`` MuJoCo's body positions
    (``xpos``) are those of the last substep's start, one substep behind ``qpos``, and Ant's reward measures the
    torso's displacement from them (``get_body_com``). A plain restore recomputes them from ``qpos``. With
    ``previous = (qpos, qvel, action)`` of the step that led here, that step is replayed first and then
    ``(qpos, qvel)`` written without recomputing, so the next step reads what it read when it was recorded.
    """
    env.reset()
    raw = env.unwrapped
    if previous is None:
        raw.set_state(np.asarray(qpos, np.float64), np.asarray(qvel, np.float64))
    else:
        prev_qpos, prev_qvel, prev_action = previous
        raw.set_state(np.asarray(prev_qpos, np.float64), np.asarray(prev_qvel, np.float64))
        raw.step(np.asarray(prev_action, np.float64))
        raw.data.qpos[:], raw.data.qvel[:] = qpos, qvel
    return _observed(env, raw._get_obs())


def step_unlimited(env: gym.Env, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """One step of the simulator under ``env``'s wrappers, past the time limit and the order checks (a
    restored state is mid-episode): ``(observation, reward, terminated)``."""
    obs, reward, terminated, _, _ = env.unwrapped.step(action)
    return _observed(env, obs), float(reward), bool(terminated)


def rollout_returns(envs: list[gym.Env], qpos: np.ndarray, qvel: np.ndarray, first_actions: np.ndarray,
                    policy: Callable[[torch.Tensor], torch.Tensor], horizon: int, device: torch.device,
                    gamma: float = 1.0) -> np.ndarray:
    """``sum_{t<horizon} gamma^t r_t`` from each restored state: ``first_actions[i]`` at ``t = 0``, then ``policy``
    (raw obs -> env-scale action, batched over ``envs``); an episode that terminates stops adding."""
    out = np.zeros(len(qpos))
    for start in range(0, len(qpos), len(envs)):
        idx = np.arange(start, min(start + len(envs), len(qpos)))
        live = envs[:len(idx)]
        obs = np.stack([restore_state(env, qpos[i], qvel[i]) for env, i in zip(live, idx)]).astype(np.float32)
        alive = np.ones(len(idx), bool)
        action = first_actions[idx]
        for t in range(horizon):
            if t > 0:
                with torch.no_grad():
                    action = policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            for j, env in enumerate(live):
                if not alive[j]:
                    continue
                o, r, terminated = step_unlimited(env, action[j])
                out[idx[j]] += gamma ** t * r
                obs[j] = o
                alive[j] = not terminated
            if not alive.any():
                break
    return out
