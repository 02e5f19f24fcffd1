"""Minari as a dataset source (optional extra: ``pip install 'rlkit[minari]'``).

**Id map** (:data:`MINARI_IDS`).  Minari has no copy of the D4RL MuJoCo files: its ``mujoco/<env>/<level>-v0``
sets were collected anew on Gymnasium's v5 MuJoCo tasks with ``simple``/``medium``/``expert`` policies, so
only ``medium`` and ``expert`` have a counterpart (``random``, ``medium-replay``, ``medium-expert`` and
``full-replay`` have none).  ``D4RL/antmaze/<level>-v1`` was regenerated on Gymnasium-Robotics' AntMaze
with the v2 (fixed-timeout) protocol, so it stands in for ``antmaze-<level>-v2`` only; the v0 AntMaze files
(whose timeout handling the published v0 AntMaze numbers depend on) have no Minari counterpart.  Every dataset
loaded from Minari says so in its provenance (``source: minari``, ``minari_id``, ``same_data_as_d4rl:
False``), because scores on it are not directly comparable with the D4RL tables.

**Conversion** (:func:`episodes_to_dataset`).  A Minari episode of ``T`` steps stores ``T + 1``
observations, so every step has its true successor: row ``t`` is ``(o_t, a_t, r_t, o_{t+1})`` with
``terminals = terminations`` and ``timeouts = truncations`` (no row is dropped, unlike D4RL's transform,
which cannot recover the successor of a timed-out step).  The last row of an episode that ended neither
way (a cut-off final episode) is marked as a timeout, so every episode closes.  Goal-conditioned
observations (``observation``, ``achieved_goal``, ``desired_goal``) are flattened to the D4RL AntMaze
layout ``[achieved_goal (x, y), observation]`` = ``[qpos[:15], qvel[:14]]``; the goal is not part of the
state, as in D4RL.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.data.d4rl import LOCOMOTION_ENVS
from rlkit.data.dataset import Dataset
from rlkit.errors import DatasetError

_ANTMAZE_LEVELS = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")

MINARI_IDS: dict[str, str] = {
    **{
        f"{env}-{level}-v2": f"mujoco/{env}/{level}-v0"
        for env in LOCOMOTION_ENVS
        for level in ("medium", "expert")
    },
    **{f"antmaze-{level}-v2": f"D4RL/antmaze/{level}-v1" for level in _ANTMAZE_LEVELS},
}
INSTALL_HINT = "pip install 'rlkit[minari]' (or: pip install 'minari>=0.5.2')"


def minari_id(dataset_id: str) -> str | None:
    """The Minari id standing in for a D4RL id; a Minari id (``namespace/name-vN``) is returned as is."""
    if dataset_id in MINARI_IDS:
        return MINARI_IDS[dataset_id]
    if "/" in dataset_id:
        return dataset_id
    return None


def is_installed() -> bool:
    return importlib.util.find_spec("minari") is not None


def require_minari() -> Any:
    """Import ``minari`` or raise a :class:`DatasetError` that says how to install it."""
    try:
        return importlib.import_module("minari")
    except ImportError as err:
        raise DatasetError(
            f"the Minari source needs the `minari` package, which is not installed: {INSTALL_HINT}"
        ) from err


def local_path(mid: str) -> Path:
    """Where Minari keeps ``mid`` (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    root = os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets"
    return Path(root).expanduser() / mid


def flatten_observations(obs: Any, episode: object = "?") -> np.ndarray:
    """Episode observations ``(T+1, ...)`` as a float32 matrix (see module docstring for dict spaces)."""
    if isinstance(obs, dict):
        if "observation" in obs and "achieved_goal" in obs:
            xy = np.asarray(obs["achieved_goal"], np.float32)
            return np.concatenate([xy, np.asarray(obs["observation"], np.float32)], axis=1)
        raise DatasetError(
            f"Minari episode {episode} has dict observations with keys {sorted(obs)}; only goal-conditioned "
            "dicts (observation, achieved_goal, desired_goal) can be flattened to the D4RL layout"
        )
    arr = np.asarray(obs, dtype=np.float32)
    return arr.reshape(len(arr), -1)


def episodes_to_dataset(episodes: Iterable[Any], provenance: dict[str, Any] | None = None) -> Dataset:
    """Minari ``EpisodeData``-like objects -> :class:`Dataset` (module docstring: exact semantics).

    Each episode needs ``observations`` (``T+1`` rows, array or goal dict), ``actions``, ``rewards``,
    ``terminations`` and ``truncations`` (``T`` rows each).
    """
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc")}
    for index, ep in enumerate(episodes):
        name = getattr(ep, "id", index)
        rewards = np.asarray(ep.rewards, dtype=np.float32).reshape(-1)
        steps = len(rewards)
        if steps == 0:
            continue
        obs = flatten_observations(ep.observations, name)
        actions = np.asarray(ep.actions, dtype=np.float32).reshape(steps, -1)
        term = np.asarray(ep.terminations, dtype=bool).reshape(-1)
        trunc = np.asarray(ep.truncations, dtype=bool).reshape(-1)
        if len(obs) != steps + 1:
            raise DatasetError(
                f"Minari episode {name} has {len(obs)} observations for {steps} rewards; "
                f"expected {steps + 1} (the final observation must be stored)"
            )
        for key, arr in (("actions", actions), ("terminations", term), ("truncations", trunc)):
            if len(arr) != steps:
                raise DatasetError(
                    f"Minari episode {name}: key '{key}' has {len(arr)} rows but 'rewards' has {steps}"
                )
        trunc = trunc & ~term
        trunc[-1] |= not term[-1]
        cols["obs"].append(obs[:-1])
        cols["next"].append(obs[1:])
        cols["act"].append(actions)
        cols["rew"].append(rewards)
        cols["term"].append(term)
        cols["trunc"].append(trunc)
    if not cols["rew"]:
        raise DatasetError("the Minari dataset has no steps")
    prov = dict(provenance or {})
    prov.setdefault("source", "minari")
    prov.update(
        transform="minari episodes: o[:-1], o[1:], terminations, truncations",
        episodes_in_source=len(cols["rew"]),
    )
    return Dataset(
        observations=np.concatenate(cols["obs"]),
        actions=np.concatenate(cols["act"]),
        rewards=np.concatenate(cols["rew"]),
        terminals=np.concatenate(cols["term"]),
        timeouts=np.concatenate(cols["trunc"]),
        next_observations=np.concatenate(cols["next"]),
        provenance=prov,
    )


def load_minari(dataset_id: str, download: bool = False) -> Dataset:
    """Load the Minari counterpart of ``dataset_id`` (from Minari's local store; fetch it if ``download``)."""
    mid = minari_id(dataset_id)
    if mid is None:
        raise DatasetError(
            f"dataset '{dataset_id}' has no Minari counterpart (Minari has: {', '.join(sorted(MINARI_IDS))})"
        )
    minari = require_minari()
    try:
        ds = minari.load_dataset(mid, download=download)
    except FileNotFoundError as err:
        raise DatasetError(
            f"Minari dataset '{mid}' is not downloaded (looked in {local_path(mid)}); run "
            f"`minari download {mid}` or load with download allowed"
        ) from err
    except Exception as err:  # network, hosting and version errors all surface as one line
        raise DatasetError(f"Minari could not provide '{mid}': {type(err).__name__}: {err}") from err
    env_spec = getattr(ds, "env_spec", None)
    provenance = {
        "source": "minari",
        "id": dataset_id,
        "minari_id": mid,
        "path": str(local_path(mid)),
        "minari_version": getattr(minari, "__version__", "unknown"),
        "env_spec": getattr(env_spec, "id", None),
        "same_data_as_d4rl": False,
    }
    return episodes_to_dataset(ds.iterate_episodes(), provenance)
