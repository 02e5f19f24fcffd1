"""Local dataset collection in the D4RL hdf5 layout.

``rlkit data collect env=hopper-medium`` rolls out a behaviour policy on the task's env (gymnasium's v4, the D4RL
recording dynamics: :mod:`rlkit.envs.mujoco`) and
writes the same file layout D4RL ships (one row per environment step, episodes contiguous,
``terminals`` for true terminations, ``timeouts`` on the last row of an episode cut by the time limit),
so the file goes through exactly the same q-learning transform as a downloaded one.

Behaviour policies, by D4RL level:

* ``random``        -- uniform random actions;
* ``medium``        -- rlkit's own SAC stopped when its evaluation return first reached about one third of
  the D4RL expert reference (the D4RL recipe), shipped in ``rlkit/data/policies/<task>-medium.pt``;
* ``expert``        -- the same SAC run at the end of its budget (``<task>-expert.pt``);
* ``medium-replay`` -- the replay buffer of that run up to the medium policy
  (``<task>-medium-replay.hdf5``, shipped as collected for hopper and halfcheetah);
* ``medium-expert`` -- the medium and expert datasets concatenated.

Actions are sampled from the stochastic policy, as D4RL did.  ``policy=RUN_DIR`` collects with any
rlkit run's newest checkpoint instead.  Collected files are cached under ``$RLKIT_DATA/collected`` and
reused; their provenance (``source: collected``, policy, return statistics) travels into every run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.data.collectable import parse_dataset_id
from rlkit.data.dataset import SIM_STATE_KEYS, Dataset
from rlkit.data.hdf5 import write_d4rl
from rlkit.data.sources import data_dir, load
from rlkit.errors import ConfigError, DatasetError

POLICY_DIR = Path(__file__).resolve().parent / "policies"
DEFAULT_STEPS = int(os.environ.get("RLKIT_COLLECT_STEPS", 200_000))


def collected_dir() -> Path:
    return data_dir() / "collected"


# ---------------------------------------------------------------------------------------- policies
class BehaviourPolicy:
    """A stochastic policy loaded from a shipped ``.pt`` file or a run directory's newest checkpoint."""

    def __init__(self, algo, description: dict[str, Any]) -> None:
        self.algo, self.description = algo, description

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.algo.act(obs, None, deterministic=False)[0]


def _build_from_algo_config(algo_cfg: dict[str, Any], env) -> Any:
    from omegaconf import OmegaConf

    from rlkit.regimes.base import build_algorithm

    cfg = OmegaConf.create({"algo": algo_cfg})
    return build_algorithm(cfg, env.single_observation_space, env.single_action_space, torch.device("cpu"))


def load_policy(source: str | Path, env) -> BehaviourPolicy:
    """A policy from a shipped file (``{"algo_config", "actor", ...}``) or an rlkit run directory."""
    from omegaconf import OmegaConf

    from rlkit.checkpoint import latest_checkpoint, load_checkpoint

    source = Path(source)
    if source.is_dir():
        cfg = OmegaConf.load(source / "config.yaml")
        ckpt = latest_checkpoint(source / "checkpoints")
        if ckpt is None:
            raise ConfigError(f"run '{source}' has no checkpoint to collect with")
        algo = _build_from_algo_config(OmegaConf.to_container(cfg.algo, resolve=True), env)
        algo.load_state_dict(load_checkpoint(ckpt)["algo"])
        return BehaviourPolicy(algo, {"policy": str(ckpt)})
    if not source.is_file():
        raise DatasetError(f"behaviour policy '{source}' does not exist")
    payload = torch.load(source, map_location="cpu", weights_only=False)
    algo = _build_from_algo_config(payload["algo_config"], env)
    algo.actor.load_state_dict(payload["actor"])
    info = {k: v for k, v in payload.items() if k not in ("actor", "algo_config")}
    return BehaviourPolicy(algo, {"policy": source.name, **info})


def export_policy(actor_state: dict[str, Any], algo_config: dict[str, Any], path: Path, **info: Any) -> Path:
    """Save an actor's ``state_dict`` in the shipped-policy format ``{"algo_config", "actor", **info}``
    (atomic); :func:`load_policy` rebuilds the algorithm from ``algo_config`` and loads the actor."""
    from rlkit.utils import atomic_torch_save

    atomic_torch_save(path, {"algo_config": algo_config, "actor": actor_state, **info})
    return path


# ---------------------------------------------------------------------------------------- rollouts
def rollout(env_name: str, policy, steps: int, seed: int, num_envs: int = 8) -> dict[str, np.ndarray]:
    """``steps`` environment steps of ``policy`` (None: uniform random) in D4RL row order.

    On MuJoCo envs the rows also carry ``qpos``/``qvel``, the simulator state of each row's observation taken
    before the step (D4RL's ``infos/qpos``, ``infos/qvel``).
    """
    from rlkit import envs
    from rlkit.envs.restore import sim_data

    venv = envs.make_vector(env_name, num_envs, autoreset=True)
    rng = np.random.default_rng(seed)
    space = venv.single_action_space
    sims = [sim_data(env) for env in venv.envs]
    keys = ROW_KEYS + (SIM_STATE_KEYS if all(d is not None for d in sims) else ())
    obs, _ = venv.reset(seed=seed)
    per_env: list[dict[str, list]] = [_empty(keys) for _ in range(num_envs)]
    out = _empty(keys)
    done_steps = 0
    torch.manual_seed(seed)
    while done_steps < steps:
        if policy is None:
            action = rng.uniform(space.low, space.high, size=(num_envs, *space.shape)).astype(np.float32)
        else:
            action = policy(obs)
        if "qpos" in keys:
            for ep, data in zip(per_env, sims):
                ep["qpos"].append(data.qpos.copy())
                ep["qvel"].append(data.qvel.copy())
        next_obs, reward, terminated, truncated, _ = venv.step(action)
        for i in range(num_envs):
            ep = per_env[i]
            ep["observations"].append(obs[i])
            ep["actions"].append(action[i])
            ep["rewards"].append(reward[i])
            ep["terminals"].append(bool(terminated[i]))
            ep["timeouts"].append(bool(truncated[i] and not terminated[i]))
            if terminated[i] or truncated[i]:
                _append(out, ep)
                per_env[i] = _empty(keys)
        obs = next_obs
        done_steps += num_envs
    for ep in per_env:  # unfinished episodes close with a timeout on their last row
        if ep["rewards"]:
            ep["timeouts"][-1] = True
            _append(out, ep)
    venv.close()
    arrays = {k: np.asarray(v) for k, v in out.items()}
    return {k: v[:steps] if len(v) > steps else v for k, v in _trim(arrays, steps).items()}


ROW_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def _empty(keys: tuple[str, ...] = ROW_KEYS) -> dict[str, list]:
    return {k: [] for k in keys}


def _append(out: dict[str, list], ep: dict[str, list]) -> None:
    for key in out:
        out[key].extend(ep[key])


def _trim(arrays: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    if len(arrays["rewards"]) <= steps:
        return arrays
    trimmed = {k: v[:steps].copy() for k, v in arrays.items()}
    if not trimmed["terminals"][-1]:
        trimmed["timeouts"][-1] = True
    return trimmed


def episode_returns(arrays: dict[str, np.ndarray]) -> np.ndarray:
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.array([arrays["rewards"][s:e + 1].sum() for s, e in zip(starts, ends)])


# ---------------------------------------------------------------------------------------- datasets
def collect_to_file(dataset_id: str, steps: int = DEFAULT_STEPS, seed: int = 0, policy: str | None = None,
                    out: str | Path | None = None, num_envs: int = 8) -> Path:
    """Collect ``dataset_id`` locally and write it in the D4RL layout; returns the file path."""
    task, level = parse_dataset_id(dataset_id)
    out = Path(out) if out else collected_dir() / f"{task}-{level}-{steps}-seed{seed}.hdf5"
    if level == "medium-replay" and policy is None:
        shipped = POLICY_DIR / f"{task}-medium-replay.hdf5"
        if not shipped.exists():
            raise DatasetError(f"no shipped medium-replay buffer for {task}; get D4RL's file (`rlkit data download "
                               f"{task}-medium-replay-v2`) or make one with the recipe of rlkit.data.behaviour (a SAC "
                               f"run, then `python -m rlkit.data.behaviour RUN_DIR {task}`)")
        from rlkit.data.hdf5 import read_raw

        raw = read_raw(shipped)
        arrays = {k: raw[k] for k in ROW_KEYS}
        prov = {"policy": shipped.name, "level": level}
    elif level == "medium-expert" and policy is None:
        parts = [collect_to_file(f"{task}-{lv}", steps // 2, seed + i, None, None, num_envs)
                 for i, lv in enumerate(("medium", "expert"))]
        from rlkit.data.hdf5 import read_raw

        raws = [read_raw(p) for p in parts]
        sim = tuple(f"infos/{k}" for k in SIM_STATE_KEYS)
        sim = sim if all(k in r for r in raws for k in sim) else ()
        arrays = {k.removeprefix("infos/"): np.concatenate([r[k] for r in raws]) for k in ROW_KEYS + sim}
        prov = {"policy": "medium + expert", "level": level, "parts": [p.name for p in parts]}
    else:
        from rlkit import envs as env_registry

        behaviour = None
        prov = {"policy": "uniform random", "level": level}
        if level != "random" or policy is not None:
            probe = env_registry.make_vector(task, 1)
            source = Path(policy) if policy else POLICY_DIR / f"{task}-{level}.pt"
            if not policy and not source.exists():
                raise DatasetError(f"no shipped {level} behaviour policy for {task} ({source.name}); "
                                   "pass policy=RUN_DIR or choose another level")
            behaviour = load_policy(source, probe)
            probe.close()
            prov = {**behaviour.description, "level": level}
        print(f"rlkit: collecting {steps} steps of {task}-{level} ({prov['policy']})", file=sys.stderr)
        arrays = rollout(task, behaviour, steps, seed, num_envs)
    rets = episode_returns(arrays)
    provenance = {
        "source": "collected", "id": dataset_id, "task": task, "seed": seed, "steps": int(len(arrays["rewards"])),
        "episode_return_mean": float(rets.mean()), "episode_return_std": float(rets.std()),
        "episodes": int(len(rets)), **prov,
    }
    infos = {k: arrays.pop(k) for k in SIM_STATE_KEYS if k in arrays}
    write_d4rl(out, **arrays, infos=infos or None,
               metadata={"algorithm": "rlkit-collect", "policy": str(prov["policy"])},
               provenance=provenance, compression="gzip")
    return out


def recipe_key(task: str, level: str) -> str:
    """8 hex digits naming what a default collection of ``task-level`` is made from: the env it steps (gymnasium
    id) and the bytes of the shipped files it reads (behaviour policies, the replay buffer).  Part of the
    fallback cache's file name, so a cache made on another env version or with since-replaced policies is not
    reused (it stays on disk, unread)."""
    import hashlib

    from rlkit.envs.mujoco import LOCOMOTION_TASKS

    sources = {"medium-replay": [f"{task}-medium-replay.hdf5"], "medium-expert": [f"{task}-medium.pt",
               f"{task}-expert.pt"], "random": []}.get(level, [f"{task}-{level}.pt"])
    digest = hashlib.sha256(LOCOMOTION_TASKS[task].encode())
    for name in sources:
        path = POLICY_DIR / name
        digest.update(path.read_bytes() if path.exists() else name.encode())
    return digest.hexdigest()[:8]


def collect_for_fallback(dataset_id: str) -> Dataset:
    """The ``collect`` hook of ``rlkit.data.load``: reuse or create the cached local collection (keyed by
    :func:`recipe_key`)."""
    task, level = parse_dataset_id(dataset_id)
    cached = collected_dir() / f"{task}-{level}-{DEFAULT_STEPS}-seed0-{recipe_key(task, level)}.hdf5"
    if not cached.exists():
        collect_to_file(dataset_id, DEFAULT_STEPS, 0, None, cached)
    return load(dataset_id, source="file", path=str(cached))
