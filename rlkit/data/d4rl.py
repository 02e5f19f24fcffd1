"""D4RL datasets without the ``d4rl`` package: the id table, raw-file checks and the q-learning transform.

**Ids and files.**  :data:`D4RL_DATASETS` lists every dataset rlkit can fetch, with D4RL's own file name and
address (from ``d4rl/infos.py`` and ``d4rl/locomotion/__init__.py`` of Farama-Foundation/D4RL):

* MuJoCo locomotion ``{hopper,halfcheetah,walker2d,ant}-{random,medium,expert,medium-replay,full-replay,
  medium-expert}-v2`` -> ``gym_mujoco_v2/<env>_<level with _>-v2.hdf5``; time limit 1000 steps.
* AntMaze ``antmaze-{umaze,umaze-diverse,medium-play,medium-diverse,large-play,large-diverse}-v0``
  (``ant_maze_new/Ant_maze_<maze>_..._sparse.hdf5``) and ``-v2`` (``ant_maze_v2/..._sparse_fixed.hdf5``);
  time limit 700 steps for umaze, 1000 for medium and large (the ``max_episode_steps`` D4RL registers).

The v0 AntMaze files carry D4RL's known timeout problem (fixed by the v2 files); the loader reproduces
what D4RL does with each file and does not try to repair it.  Reward conventions of particular
algorithms (IQL's AntMaze ``r - 1``) belong to the algorithm configs, not to the loader.

**The q-learning transform** (:func:`qlearning_transform`) reproduces
``d4rl.qlearning_dataset(env, terminate_on_end=False)`` exactly, vectorised with numpy:

* rows ``i = 0 .. N-2`` are candidates (the last raw row is always dropped);
* ``final_timestep[i] = timeouts[i]`` when the file has ``timeouts``; otherwise D4RL's step counter
  decides: ``final_timestep = (episode_step == max_episode_steps - 1)``, where the counter is set to 0
  after a final step and to 1 after a kept terminal row (D4RL resets it to 0, then increments);
* a final-timestep row is skipped (the successor of a timed-out step is not stored), even when it is
  also terminal; every other row ``i`` becomes ``(s_i, a_i, r_i, s_{i+1}, terminal_i)`` with
  ``s_{i+1} = observations[i+1]`` -- D4RL ignores a file's ``next_observations`` key, and so do we.
  For a terminal row ``observations[i+1]`` is the next episode's first state; that is harmless because
  terminal rows never bootstrap (``mask = 1 - terminal``).
* ``infos/qpos`` and ``infos/qvel`` (the simulator state of each raw row), when the file has both, are
  kept for the same rows as ``Dataset.sim_states``; other ``infos/*`` and ``metadata/*`` are not loaded.

**Episode boundaries** then follow the convention of the IQL, TD3+BC and OPER code bases (their
``done_float`` flag from ``d4rl.qlearning_dataset``): row ``k`` closes an episode when it is terminal or when
``||s_{k+1} - s'_k||_2 > 1e-6`` (the next kept row does not continue this one).  :func:`episode_cuts`
computes the second case with the same float32 arithmetic as those code bases; the result is stored in
``Dataset.timeouts`` (the last row is always a boundary), so ``Dataset.episode_ids`` reproduces their
trajectory split.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.data.dataset import SIM_STATE_KEYS, Dataset
from rlkit.data.hdf5 import OPTIONAL_KEYS, REQUIRED_KEYS, list_keys, read_provenance, read_raw
from rlkit.errors import ConfigError, DatasetError, choices_hint

BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl"
MIRROR_ENV = "RLKIT_D4RL_URL"  # replaces BASE_URL (a mirror holding the same relative paths)
DISCONTINUITY_TOL = 1e-6
TRANSFORM = "d4rl.qlearning_dataset(terminate_on_end=False)"

LOCOMOTION_ENVS = ("hopper", "halfcheetah", "walker2d", "ant")
LOCOMOTION_LEVELS = ("random", "medium", "expert", "medium-replay", "full-replay", "medium-expert")
_ANTMAZE_FILES = {  # level -> (maze name in the file name, multistart, multigoal)
    "umaze": ("u-maze", False, False),
    "umaze-diverse": ("u-maze", True, True),
    "medium-play": ("big-maze", True, False),
    "medium-diverse": ("big-maze", True, True),
    "large-play": ("hardest-maze", True, False),
    "large-diverse": ("hardest-maze", True, True),
}

# Exact sizes in bytes where a published figure exists (a third-party reproduction README lists these
# with their sha256).  A freshly downloaded file of another size is refused.
KNOWN_SIZES: dict[str, int] = {
    "hopper_medium_replay-v2.hdf5": 75_854_457,
    "walker2d_medium_replay-v2.hdf5": 86_323_963,
}
KNOWN_SHA256: dict[str, str] = {
    "hopper_medium_replay-v2.hdf5": "e121c5f7c9857a307baa9edc6a2c3b48e85fedb9ac316ecddd0f48ca7ef4e39b",
    "walker2d_medium_replay-v2.hdf5": "e75de96a4f77acf7d4e0d6fdf0d7ccb177c26c44bb4388e4fd99f543ccfa18db",
}


@dataclass(frozen=True)
class D4RLSpec:
    """One D4RL dataset: its id, D4RL's file name and address, and the env's registered time limit."""

    id: str
    family: str  # "locomotion" | "antmaze"
    env: str
    level: str
    version: str
    relative_url: str
    max_episode_steps: int

    @property
    def filename(self) -> str:
        return self.relative_url.rsplit("/", 1)[-1]

    @property
    def url(self) -> str:
        base = os.environ.get(MIRROR_ENV, BASE_URL).rstrip("/")
        return f"{base}/{self.relative_url}"

    @property
    def known_size(self) -> int | None:
        return KNOWN_SIZES.get(self.filename)

    @property
    def known_sha256(self) -> str | None:
        return KNOWN_SHA256.get(self.filename)


def _build_table() -> dict[str, D4RLSpec]:
    table: dict[str, D4RLSpec] = {}
    for env in LOCOMOTION_ENVS:
        for level in LOCOMOTION_LEVELS:
            dataset_id = f"{env}-{level}-v2"
            rel = f"gym_mujoco_v2/{env}_{level.replace('-', '_')}-v2.hdf5"
            table[dataset_id] = D4RLSpec(dataset_id, "locomotion", env, level, "v2", rel, 1000)
    for version, folder, suffix in (("v0", "ant_maze_new", "sparse"), ("v2", "ant_maze_v2", "sparse_fixed")):
        for level, (maze, multistart, multigoal) in _ANTMAZE_FILES.items():
            dataset_id = f"antmaze-{level}-{version}"
            name = f"Ant_maze_{maze}_noisy_multistart_{multistart}_multigoal_{multigoal}_{suffix}.hdf5"
            steps = 700 if level.startswith("umaze") else 1000
            rel = f"{folder}/{name}"
            table[dataset_id] = D4RLSpec(dataset_id, "antmaze", "antmaze", level, version, rel, steps)
    return table


D4RL_DATASETS: dict[str, D4RLSpec] = _build_table()


def is_d4rl_id(dataset_id: str) -> bool:
    return dataset_id in D4RL_DATASETS


def get_spec(dataset_id: str) -> D4RLSpec:
    """The table entry for ``dataset_id``; an unknown id is a :class:`ConfigError` with suggestions."""
    try:
        return D4RL_DATASETS[dataset_id]
    except KeyError:
        close = difflib.get_close_matches(dataset_id, list(D4RL_DATASETS), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"unknown D4RL dataset id '{dataset_id}'{hint}; known ids: {choices_hint(D4RL_DATASETS)}"
        ) from None


# ---------------------------------------------------------------------------------------------- checks
def validate_raw(raw: dict[str, Any], where: str, keys_present: list[str] | None = None) -> dict[str, Any]:
    """Check a raw D4RL dict and return it with D4RL's reshapes applied.

    Like ``OfflineEnv.get_dataset``, ``(N, 1)`` rewards/terminals/timeouts become ``(N,)``.  Refused, with a
    one-line error naming the key: a missing required key, a wrong rank, a row count that differs from
    ``rewards``, NaN/inf in observations, actions, rewards or next_observations, fewer than 2 rows.
    """
    for key in REQUIRED_KEYS:
        if key not in raw:
            present = ", ".join(sorted(keys_present if keys_present is not None else raw)) or "none"
            raise DatasetError(
                f"dataset '{where}' has no key '{key}' (keys present: {present}); "
                "a D4RL file needs observations, actions, rewards and terminals"
            )
    out = dict(raw)
    for key in ("rewards", "terminals", "timeouts"):
        if key in out:
            arr = np.asarray(out[key])
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise DatasetError(
                    f"dataset key '{key}' in '{where}' must have shape (N,) or (N, 1), got {arr.shape}"
                )
            out[key] = arr
    for key in ("observations", "next_observations", "actions"):
        if key in out:
            arr = np.asarray(out[key])
            if key == "actions" and arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim < 2:
                raise DatasetError(
                    f"dataset key '{key}' in '{where}' must have shape (N, dim), got {arr.shape}"
                )
            out[key] = arr
    n = len(out["rewards"])
    for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS, *(f"infos/{k}" for k in SIM_STATE_KEYS)):
        if key in out and out[key].shape[0] != n:
            raise DatasetError(
                f"dataset key '{key}' has {out[key].shape[0]} rows but 'rewards' has {n} in '{where}'; "
                "every array needs one row per step"
            )
    if "next_observations" in out and out["next_observations"].shape[1:] != out["observations"].shape[1:]:
        raise DatasetError(
            f"dataset key 'next_observations' has rows of shape {out['next_observations'].shape[1:]} but "
            f"'observations' has {out['observations'].shape[1:]} in '{where}'"
        )
    if n < 2:
        raise DatasetError(f"dataset '{where}' has {n} rows; the q-learning transform needs at least 2")
    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in out:
            arr = out[key]
            finite = np.isfinite(arr.reshape(n, -1)).all(axis=1)
            if not finite.all():
                raise DatasetError(
                    f"dataset key '{key}' holds NaN or inf (first at row {int(np.argmin(finite))}) in "
                    f"'{where}'; re-download or regenerate the file"
                )
    return out


# ------------------------------------------------------------------------------------------ transform
def final_timesteps_from_counter(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """D4RL's ``final_timestep`` for files without ``timeouts`` (rows ``0..len(terminals)-1``).

    D4RL walks a counter ``e`` (start 0): at row ``i``, ``final = (e == T - 1)``; a final row is skipped
    and sets ``e = 0``; a kept terminal row sets ``e = 0`` and then ``e += 1`` like every kept row.  So from
    a position ``p`` with counter ``e`` the next final row is ``p + T - 1 - e``, unless a terminal comes
    first (then the walk restarts after it with ``e = 1``).  One iteration per episode, not per row.
    """
    if max_episode_steps < 2:
        raise ConfigError(f"max_episode_steps must be >= 2, got {max_episode_steps}")
    m = len(terminals)
    final = np.zeros(m, dtype=bool)
    term_rows = np.flatnonzero(np.asarray(terminals, dtype=bool))
    p, e = 0, 0
    while p < m:
        f = p + (max_episode_steps - 1 - e)
        k = int(np.searchsorted(term_rows, p))
        if k < len(term_rows) and term_rows[k] < f:
            p, e = int(term_rows[k]) + 1, 1
        else:
            if f < m:
                final[f] = True
            p, e = f + 1, 0
    return final


def qlearning_transform(raw: dict[str, Any], max_episode_steps: int = 1000) -> dict[str, np.ndarray]:
    """``d4rl.qlearning_dataset(terminate_on_end=False)`` on a validated raw dict (see module docstring).

    Returns ``observations, actions, next_observations, rewards, terminals`` (float32 / bool),
    ``raw_rows``, the raw row index of every kept transition, and ``sim_states`` (``qpos``/``qvel`` of the kept
    rows, or None when the raw dict lacks ``infos/qpos`` or ``infos/qvel``).
    """
    n = len(raw["rewards"])
    terminals = np.asarray(raw["terminals"], dtype=bool)
    if "timeouts" in raw:
        final = np.asarray(raw["timeouts"], dtype=bool)[: n - 1]
    else:
        final = final_timesteps_from_counter(terminals[: n - 1], max_episode_steps)
    rows = np.flatnonzero(~final)
    obs = np.asarray(raw["observations"])
    return {
        "observations": obs[rows].astype(np.float32, copy=False),
        "actions": np.asarray(raw["actions"])[rows].astype(np.float32, copy=False),
        "next_observations": obs[rows + 1].astype(np.float32, copy=False),
        "rewards": np.asarray(raw["rewards"])[rows].astype(np.float32, copy=False),
        "terminals": terminals[rows],
        "raw_rows": rows,
        "sim_states": ({k: np.asarray(raw[f"infos/{k}"])[rows].astype(np.float32) for k in SIM_STATE_KEYS}
                       if all(f"infos/{k}" in raw for k in SIM_STATE_KEYS) else None),
    }


def episode_cuts(
    observations: np.ndarray,
    next_observations: np.ndarray,
    tol: float = DISCONTINUITY_TOL,
    chunk: int = 1 << 18,
) -> np.ndarray:
    """``cut[k] = ||observations[k+1] - next_observations[k]||_2 > tol`` for ``k < n-1``; ``cut[n-1] = True``.

    The float32 norm matches the IQL / TD3+BC code (``np.linalg.norm`` of float32 rows); computed in
    chunks so a 2M-row dataset needs no full-size temporary.
    """
    n = len(observations)
    cut = np.ones(n, dtype=bool)
    obs = observations.reshape(n, -1)
    nxt = next_observations.reshape(n, -1)
    for start in range(0, n - 1, chunk):
        stop = min(start + chunk, n - 1)
        diff = obs[start + 1 : stop + 1] - nxt[start:stop]
        cut[start:stop] = np.linalg.norm(diff, axis=1) > tol
    return cut


def to_dataset(
    raw: dict[str, Any], provenance: dict[str, Any] | None = None, max_episode_steps: int = 1000
) -> Dataset:
    """Validated raw dict -> :class:`Dataset` (q-learning transform, then the episode split).

    ``Dataset.timeouts[k]`` = episode cut after row ``k`` without a terminal: a discontinuity
    (:func:`episode_cuts`) on a non-terminal row, and the last row unless it is terminal.
    """
    t = qlearning_transform(raw, max_episode_steps)
    if len(t["rewards"]) == 0:
        raise DatasetError(
            f"dataset '{(provenance or {}).get('path', '?')}' has no transitions left after the q-learning "
            "transform (every row but the last is a timeout); check its 'timeouts' key"
        )
    timeouts = episode_cuts(t["observations"], t["next_observations"]) & ~t["terminals"]
    prov = dict(provenance or {})
    prov.update(
        transform=TRANSFORM,
        raw_rows=int(len(raw["rewards"])),
        transitions=int(len(t["rewards"])),
        timeouts_in_file="timeouts" in raw,
        episode_split="terminal or ||s[k+1] - s'[k]|| > 1e-6",
    )
    if "timeouts" not in raw:
        prov["max_episode_steps"] = int(max_episode_steps)
    return Dataset(
        observations=t["observations"],
        actions=t["actions"],
        rewards=t["rewards"],
        terminals=t["terminals"],
        timeouts=timeouts,
        next_observations=t["next_observations"],
        provenance=prov,
        sim_states=t["sim_states"],
    )


def read_d4rl_file(path: str | os.PathLike, dataset_id: str | None = None) -> dict[str, Any]:
    """Read and validate the arrays the transform needs, plus ``infos/qpos`` and ``infos/qvel`` when present
    (other ``infos/*`` and ``metadata/*`` are not loaded)."""
    path = Path(path)
    present = list(list_keys(path, dataset_id))
    raw = read_raw(path, (*REQUIRED_KEYS, *OPTIONAL_KEYS, *(f"infos/{k}" for k in SIM_STATE_KEYS)), dataset_id)
    return validate_raw(raw, str(path), keys_present=present)


def max_steps_for(dataset_id: str | None, default: int = 1000) -> int:
    """The time limit D4RL's counter uses for files without ``timeouts``: the id's registered limit."""
    spec = D4RL_DATASETS.get(dataset_id or "")
    return spec.max_episode_steps if spec else default


def load_d4rl_file(
    path: str | os.PathLike,
    dataset_id: str | None = None,
    provenance: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
) -> Dataset:
    """Read a D4RL-layout hdf5 file and return the transformed :class:`Dataset`.

    Provenance = what rlkit stored in the file (``metadata/rlkit_provenance``, e.g. a locally collected
    dataset) updated with ``provenance`` and the transform's counts.
    """
    raw = read_d4rl_file(path, dataset_id)
    prov = dict(read_provenance(path) or {})
    prov.update(provenance or {})
    prov.setdefault("id", dataset_id)
    prov.setdefault("path", str(Path(path).resolve()))
    steps = max_episode_steps if max_episode_steps is not None else max_steps_for(dataset_id)
    return to_dataset(raw, prov, steps)
