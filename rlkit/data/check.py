"""``rlkit data check``: does a dataset step like the env it names?

A D4RL-layout file that stores the simulator state of each row (``infos/qpos``, ``infos/qvel``: D4RL's MuJoCo
locomotion files and rlkit's collected files) can be replayed row by row. For a seeded random sample of rows
``i``, the env the dataset names is restored to ``(qpos_i, qvel_i)`` (:func:`rlkit.envs.restore.restore_state`;
inside an episode through the previous row's step, whose body positions Ant's reward reads), the row's action
``a_i`` is applied once (:func:`rlkit.envs.restore.step_unlimited`), and the results are
compared with the file:

* ``observation``: the restored state's observation vs ``observations[i]`` (the state columns agree with the
  stored simulator state);
* ``next observation``: the stepped observation vs ``observations[i+1]``, for rows that do not end an episode
  (``terminals`` or ``timeouts``): the successor ``d4rl.qlearning_dataset`` reads, so it also catches rows
  out of order;
* ``next_observations``: the stepped observation vs the file's ``next_observations[i]``, when it has them;
* ``reward``: the env's reward vs ``rewards[i]``, and separately on the sampled terminal rows (oversampled: up
  to a quarter of the sample), where v2-v4 and v5 differ by the healthy reward of the falling step;
* ``terminal``: the env's ``terminated`` vs ``terminals[i]``.

``from_observation=True`` (``--from-observation``) checks files without ``infos/`` (rlkit's shipped SAC replay
buffers, other writers) for the tasks whose observation is ``qpos[1:] ++ qvel`` (hopper, walker2d, halfcheetah):
each sampled row's state is rebuilt from its observation with x = 0
(:func:`rlkit.envs.restore.state_from_observation`; neither the dynamics nor the rewards of these tasks read x),
and rows whose observed velocities sit at hopper's/walker2d's ±10 clip are left out (their state is not in the
observation; the table says how many).

A row is within tolerance when every value satisfies ``|env - file| <= TOL * (1 + |file|)`` (:data:`TOL`: far
above float32 storage rounding, far below what a different model does in one step). The file matches its env
when every quantity is within tolerance on at least :data:`MATCH_FRACTION` of its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlkit.errors import DatasetError, EnvError

TOL = 1e-4
MATCH_FRACTION = 0.99
DEFAULT_ROWS = 2000
_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations", "infos/qpos",
         "infos/qvel")


@dataclass
class Quantity:
    """Per-row errors of one compared quantity."""

    name: str
    errors: np.ndarray  # max over the quantity's values of |env - file|
    within: np.ndarray  # bool per row

    @property
    def fraction(self) -> float:
        return float(self.within.mean()) if len(self.within) else float("nan")


@dataclass
class CheckResult:
    path: str
    env: str  # the rlkit env name used
    gym_id: str  # the gymnasium env it built
    model_file: str
    rows_total: int
    seed: int
    quantities: list[Quantity] = field(default_factory=list)
    #: how the sampled rows' states were set: ``infos`` or ``observation`` (with ``clipped_rows`` left out)
    states: str = "infos"
    clipped_rows: int = 0

    @property
    def matches(self) -> bool:
        return all(q.fraction >= MATCH_FRACTION for q in self.quantities if len(q.errors))


def _resolve(path_or_id: str) -> tuple[Path, str | None]:
    """The file and the dataset id it names (from the D4RL file name, the id given, or rlkit's provenance)."""
    from rlkit.data.hdf5 import read_provenance
    from rlkit.data.sources import resolve

    dataset_id, path = resolve(path_or_id)
    if path is None:
        raise DatasetError(f"'{path_or_id}' is neither an existing file nor a downloaded dataset id; "
                           f"pass a file path or run `rlkit data download {path_or_id}`")
    if dataset_id is None:
        prov = read_provenance(path) or {}
        dataset_id = prov.get("id") or prov.get("task")
    return path, dataset_id


def _env_name(path: Path, dataset_id: str | None, env: str | None) -> str:
    name = env or dataset_id
    if not name:
        raise DatasetError(f"cannot tell which env recorded {path.name} (no D4RL file name, no rlkit "
                           "provenance); pass --env NAME")
    if name.lower().startswith("antmaze"):
        raise EnvError(f"'{name}': AntMaze's goal is not part of the stored simulator state, so its rows cannot "
                       "be replayed; `rlkit data check` covers MuJoCo locomotion datasets")
    return name


def _sample(terminals: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """``rows`` distinct row indices (all rows if fewer), sorted: up to a quarter of them terminal rows, the rest
    uniform. Terminal steps are rare (one per episode) and carry the rules that differ between env versions
    (the healthy reward of the falling step), so they are oversampled."""
    rng = np.random.default_rng(seed)
    n = len(terminals)
    if rows >= n:
        return np.arange(n)
    ends = np.flatnonzero(terminals)
    chosen = rng.choice(ends, size=min(len(ends), rows // 4), replace=False)
    rest = np.setdiff1d(np.arange(n), chosen)
    return np.sort(np.concatenate([chosen, rng.choice(rest, size=rows - len(chosen), replace=False)]))


def _errors(env_values: np.ndarray, file_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(file_values):  # e.g. no terminal row in the sample (halfcheetah never terminates)
        return np.zeros(0), np.zeros(0, bool)
    diff = np.abs(env_values - file_values).reshape(len(file_values), -1)
    within = diff <= TOL * (1 + np.abs(file_values).reshape(len(file_values), -1))
    return diff.max(axis=1), within.all(axis=1)


def check(path_or_id: str, env: str | None = None, rows: int = DEFAULT_ROWS, seed: int = 0,
          from_observation: bool = False) -> CheckResult:
    """Replay ``rows`` sampled rows of a dataset in its env (see the module docstring)."""
    from rlkit import envs
    from rlkit.data.hdf5 import read_raw
    from rlkit.envs.mujoco import task_of
    from rlkit.envs.restore import OBSERVATION_STATES, restore_state, sim_data, state_from_observation, step_unlimited

    if rows < 1:
        raise DatasetError(f"--rows must be at least 1, got {rows}")
    path, dataset_id = _resolve(path_or_id)
    raw = read_raw(path, _KEYS, dataset_id)
    rows_columns = ("observations", "actions", "rewards", "terminals")
    needed = rows_columns + (() if from_observation else ("infos/qpos", "infos/qvel"))
    missing = [k for k in needed if k not in raw]
    if missing:
        hint = ("" if from_observation or missing[0] in rows_columns else
                "; for hopper, walker2d and halfcheetah --from-observation rebuilds them from the observations")
        raise DatasetError(f"{path.name} has no '{missing[0]}': `rlkit data check` replays rows from the stored "
                           f"simulator states infos/qpos and infos/qvel (D4RL's MuJoCo files, rlkit's collection)"
                           f"{hint}")
    name = _env_name(path, dataset_id, env)
    if from_observation and task_of(name) not in OBSERVATION_STATES:
        raise EnvError(f"'{name}': --from-observation rebuilds states only for "
                       f"{', '.join(OBSERVATION_STATES)} (observation = qpos[1:] ++ qvel); use a file with infos/")
    sim_env = envs.make(name)
    if sim_data(sim_env) is None:
        raise EnvError(f"'{name}' is not a MuJoCo env; `rlkit data check` replays MuJoCo simulator states")
    model = sim_env.unwrapped.model
    obs = raw["observations"]
    if from_observation:
        if obs.shape[1:] != sim_env.observation_space.shape:
            raise DatasetError(f"{path.name} stores observations {obs.shape[1:]}; '{name}' has "
                               f"{sim_env.observation_space.shape}: not a file of this env (pass --env NAME)")
        qpos, qvel, exact = state_from_observation(task_of(name), obs)
    else:
        qpos, qvel, exact = raw["infos/qpos"], raw["infos/qvel"], np.ones(len(obs), bool)
    if qpos.shape[1:] != (model.nq,) or qvel.shape[1:] != (model.nv,) or \
            obs.shape[1:] != sim_env.observation_space.shape:
        raise DatasetError(f"{path.name} stores observations {obs.shape[1:]}, qpos {qpos.shape[1:]}, qvel "
                           f"{qvel.shape[1:]}; '{name}' has {sim_env.observation_space.shape}, ({model.nq},), "
                           f"({model.nv},): not a file of this env (pass --env NAME)")
    n = len(raw["rewards"])
    sample = _sample(raw["terminals"].astype(bool), rows, seed)
    clipped = int((~exact[sample]).sum())
    sample = sample[exact[sample]]
    ends = raw["terminals"].astype(bool) | (raw["timeouts"].astype(bool) if "timeouts" in raw else False)
    ends = np.asarray(ends).copy()
    ends[-1] = True  # the last row has no successor in the file
    restored, stepped, rewards, terminated = [], [], [], []
    starts = np.concatenate([[True], ends[:-1]])  # rows that begin an episode (reset: no previous step)
    actions = raw["actions"]
    for i in sample:
        # rebuilt states carry no previous step to replay (and x = 0): hopper/walker2d/halfcheetah need none
        previous = None if starts[i] or from_observation else (qpos[i - 1], qvel[i - 1],
                                                                actions[i - 1].astype(np.float64))
        restored.append(restore_state(sim_env, qpos[i], qvel[i], previous))
        o, r, d = step_unlimited(sim_env, actions[i].astype(np.float64))
        stepped.append(o)
        rewards.append(r)
        terminated.append(d)
    sim_env.close()
    restored, stepped = np.asarray(restored), np.asarray(stepped)
    rewards, terminated = np.asarray(rewards), np.asarray(terminated, dtype=np.float64)
    inside = ~ends[sample]
    compared = [("observation", restored, obs[sample]),
                ("next observation", stepped[inside], obs[sample[inside] + 1])]
    if "next_observations" in raw:
        compared.append(("next_observations", stepped, raw["next_observations"][sample]))
    file_rewards, file_terminals = raw["rewards"][sample].astype(np.float64), raw["terminals"][sample].astype(bool)
    compared += [("reward", rewards, file_rewards),
                 ("reward at terminals", rewards[file_terminals], file_rewards[file_terminals]),
                 ("terminal", terminated, file_terminals.astype(np.float64))]
    result = CheckResult(str(path), name, sim_env.spec.id, Path(sim_env.unwrapped.fullpath).name, n, seed,
                         states="observation" if from_observation else "infos", clipped_rows=clipped)
    for label, env_values, file_values in compared:
        errors, within = _errors(np.asarray(env_values, np.float64), np.asarray(file_values, np.float64))
        result.quantities.append(Quantity(label, errors, within))
    return result


def format_check(result: CheckResult) -> str:
    """The table ``rlkit data check`` prints."""
    sampled = max(len(q.errors) for q in result.quantities)
    lines = [f"file:  {result.path}",
             f"env:   {result.env} (gymnasium {result.gym_id}, model file {result.model_file})",
             f"rows:  {sampled} of {result.rows_total} sampled (seed {result.seed}); tolerance "
             f"|env - file| <= {TOL:g} (1 + |file|) per value",
             "states: " + ("infos/qpos, infos/qvel" if result.states == "infos" else
                           f"rebuilt from the observations, x = 0 ({result.clipped_rows} sampled rows with "
                           "velocities at the observation clip left out)"),
             f"{'quantity':20s} {'rows':>6s} {'max error':>11s} {'median error':>13s} {'within tol':>11s}"]
    for q in result.quantities:
        if not len(q.errors):
            lines.append(f"{q.name:20s} {0:6d} {'-':>11s} {'-':>13s} {'-':>11s}")
            continue
        lines.append(f"{q.name:20s} {len(q.errors):6d} {q.errors.max():11.3g} {np.median(q.errors):13.3g} "
                     f"{100 * q.fraction:10.1f}%")
    verdict = "MATCH" if result.matches else "MISMATCH"
    lines.append(f"{verdict}: every quantity must be within tolerance on >= {100 * MATCH_FRACTION:.0f}% of rows")
    return "\n".join(lines)

