"""OAP's action-preference oracles (Yang et al. 2023, Sec. 4.1), behind one interface.

``prefer(states, dataset_actions, policy_actions, rows) -> policy_preferred`` answers, per queried row,
whether the current policy's action ``π(s_i)`` is preferred over the dataset action ``a_i`` (ties: the
dataset action).  States are raw observations, actions env-scale, all torch tensors on one device;
``rows`` are the dataset row indices.  Every answered pair is counted in ``calls``.

* ``expert``: ``argmax_{a ∈ {a_i, π(s_i)}} Q*(s_i, a)`` with ``Q* = min_k Q_k`` of an rlkit SAC run's
  critic (the paper's oracle, Sec. 4.1: an online SAC expert's Q), or of the critic shipped for the task: the
  shipped SAC expert's ``Q^{μ_e}`` fitted by FQE (:mod:`rlkit.data.expert_critic`);
* ``env_return``: restore the simulator to the row's state (MuJoCo ``qpos``/``qvel`` from the dataset's
  ``infos/``, or rebuilt from the observation), take the action, follow the current policy for
  ``horizon - 1`` more steps and prefer the higher undiscounted return;
* ``file``: labels a person wrote, a CSV ``row,preferred`` with values ``dataset|policy``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rlkit.envs.restore import rollout_returns
from rlkit.errors import ConfigError

ORACLES = ("expert", "env_return", "file")
#: MuJoCo locomotion tasks whose whole state is ``(qpos, qvel)``, as D4RL's ``infos/`` store it (AntMaze is not:
#: its goal is not part of the simulator state)
RESTORABLE_INFOS = ("hopper", "walker2d", "halfcheetah", "ant")
#: of those, the tasks whose observation is ``qpos[1:] ++ qvel``: restorable from the observation up to the x
#: position, which neither their dynamics nor their rewards (x *velocity*) depend on; value: ``nq``
RESTORABLE = {"hopper": 6, "walker2d": 9, "halfcheetah": 9}

PolicyFn = Callable[[torch.Tensor], torch.Tensor]


class PreferenceOracle:
    """Base: counts answered pairs; subclasses implement :meth:`_prefer`."""

    name = "oracle"

    def __init__(self) -> None:
        self.calls = 0

    def bind(self, dataset) -> None:
        """Check the oracle against the dataset before training (the default accepts any)."""

    def candidates(self, device: torch.device) -> torch.Tensor | None:
        """Rows this oracle can answer (None: every row)."""
        return None

    def prefer(self, states: torch.Tensor, dataset_actions: torch.Tensor, policy_actions: torch.Tensor,
               rows: torch.Tensor, policy: PolicyFn | None = None) -> torch.Tensor:
        """Bool per row: the policy action is preferred.  ``policy`` (raw obs -> env-scale action) is the
        current policy, which rollout oracles follow after the compared action."""
        out = self._prefer(states, dataset_actions, policy_actions, rows, policy)
        self.calls += int(rows.numel())
        return out.to(torch.bool)

    def _prefer(self, states, dataset_actions, policy_actions, rows, policy) -> torch.Tensor:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------- expert
class ExpertQOracle(PreferenceOracle):
    """``Q*(s, π(s)) > Q*(s, a)`` with ``q_fn(raw obs, env-scale action) -> Q``."""

    name = "expert"

    def __init__(self, q_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], description: dict) -> None:
        super().__init__()
        self.q_fn, self.description = q_fn, description

    @torch.no_grad()
    def _prefer(self, states, dataset_actions, policy_actions, rows, policy):
        chunk = 65536
        out = [self.q_fn(states[i:i + chunk], policy_actions[i:i + chunk])
               > self.q_fn(states[i:i + chunk], dataset_actions[i:i + chunk]) for i in range(0, len(rows), chunk)]
        return torch.cat(out) if out else rows.new_zeros(0, dtype=torch.bool)


def shipped_critic_path(env_id: str) -> Path:
    from rlkit.data.collect import POLICY_DIR

    return POLICY_DIR / f"{env_id}-expert-critic.pt"


def load_expert_oracle(env_id: str, checkpoint: str | None, observation_space, action_space,
                       device: torch.device) -> ExpertQOracle:
    """The expert oracle from ``checkpoint`` (an rlkit SAC run directory, or a critic file written by
    ``python -m rlkit.data.behaviour RUN TASK --critic``) or from the critic shipped for ``env_id``."""
    from omegaconf import OmegaConf

    from rlkit.checkpoint import latest_checkpoint, load_checkpoint
    from rlkit.regimes.base import build_algorithm

    if checkpoint is None:
        path = shipped_critic_path(env_id)
        if not path.is_file():
            raise ConfigError(f"rlkit ships no expert critic for env '{env_id}'; train one (`rlkit train algo=sac "
                              f"env={env_id}`) and pass algo.oracle_checkpoint=RUN_DIR")
        source = path
    else:
        source = Path(checkpoint)
    if source.is_dir():
        ckpt = latest_checkpoint(source / "checkpoints")
        if ckpt is None or not (source / "config.yaml").is_file():
            raise ConfigError(f"algo.oracle_checkpoint={source} is not an rlkit run with a checkpoint; pass the "
                              "run directory of `rlkit train algo=sac ...`")
        algo_cfg = OmegaConf.to_container(OmegaConf.load(source / "config.yaml").algo, resolve=True)
        critic_state = load_checkpoint(ckpt, map_location="cpu")["algo"]["critic"]
        description = {"source": str(ckpt)}
    elif source.is_file():
        payload = torch.load(source, map_location="cpu", weights_only=False)
        algo_cfg, critic_state = payload["algo_config"], payload["critic"]
        description = {k: v for k, v in payload.items() if k not in ("algo_config", "critic")}
        description["source"] = source.name
    else:
        raise ConfigError(f"algo.oracle_checkpoint={source} does not exist; pass an rlkit SAC run directory")
    expert = build_algorithm(OmegaConf.create({"algo": algo_cfg}), observation_space, action_space, device)
    if "critic" not in expert._stateful_attributes():
        raise ConfigError(f"the oracle run {source} ({algo_cfg.get('name')}) has no 'critic'; use an rlkit SAC run")
    expert.critic.load_state_dict({k: v.float() for k, v in critic_state.items()})
    expert.critic.requires_grad_(False)

    def q_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return expert.critic(obs, expert.from_env_action(action)).min(0).values

    return ExpertQOracle(q_fn, description)


# ----------------------------------------------------------------------------------------------- env return
RESTORE_MODES = ("infos", "observation")


class EnvReturnOracle(PreferenceOracle):
    """Roll out each action from the restored dataset state, then the current policy, for ``horizon`` steps.

    ``restore="infos"`` (default) sets the simulator to the row's MuJoCo ``qpos``/``qvel`` as D4RL files store
    them in ``infos/`` (rlkit's collection writes them too); any MuJoCo env.  ``restore="observation"``
    rebuilds the state from the observation ``qpos[1:] ++ qvel`` with the x position at 0 (hopper, walker2d,
    halfcheetah, whose dynamics and rewards do not depend on x; exact up to the observation's float32
    rounding and the ±10 velocity clipping of hopper/walker2d), for datasets without ``infos/``.
    """

    name = "env_return"

    def __init__(self, env_id: str, horizon: int = 100, num_envs: int = 64, restore: str = "infos") -> None:
        super().__init__()
        from rlkit.envs.mujoco import task_of
        from rlkit.envs.restore import sim_data

        if restore not in RESTORE_MODES:
            raise ConfigError(f"bad value for 'algo.oracle_restore': {restore!r}; choose infos or observation")
        task = task_of(env_id)
        if task not in RESTORABLE_INFOS:
            raise ConfigError(f"algo.oracle=env_return cannot restore env '{env_id}' to a dataset state (only "
                              f"{', '.join(RESTORABLE_INFOS)}); use algo.oracle=expert or algo.oracle=file")
        if restore == "observation" and task not in RESTORABLE:
            raise ConfigError(f"algo.oracle_restore=observation cannot rebuild env '{env_id}' from its observation "
                              f"(only {', '.join(sorted(RESTORABLE))}); use algo.oracle_restore=infos with a "
                              "dataset carrying infos/qpos and infos/qvel")
        if horizon < 1:
            raise ConfigError(f"algo.oracle_horizon must be at least 1, got {horizon}")
        self.env_id, self.horizon, self.num_envs, self.restore = env_id, int(horizon), int(num_envs), restore
        self._envs: list = []
        data = sim_data(self._env(0))
        self.nq, self.nv = int(data.qpos.size), int(data.qvel.size)
        self._sim: dict[str, np.ndarray] | None = None

    def bind(self, dataset) -> None:
        if self.restore == "observation":
            if dataset.observation_dim != self.nq - 1 + self.nv:
                raise ConfigError(f"algo.oracle_restore=observation expects {self.env_id} observations "
                                  f"qpos[1:] ++ qvel ({self.nq - 1 + self.nv} dims), the dataset has "
                                  f"{dataset.observation_dim}")
            return
        if dataset.sim_states is None:
            raise ConfigError("algo.oracle=env_return needs the dataset's simulator states (infos/qpos, infos/qvel "
                              "of a D4RL file or an rlkit collection), which this dataset lacks; use such a file "
                              "or algo.oracle_restore=observation")
        shapes = (dataset.sim_states["qpos"].shape[1], dataset.sim_states["qvel"].shape[1])
        if shapes != (self.nq, self.nv):
            raise ConfigError(f"the dataset's infos/qpos, infos/qvel have {shapes[0]} and {shapes[1]} values per row "
                              f"but env '{self.env_id}' has nq={self.nq}, nv={self.nv}; the file belongs to "
                              "another env")
        self._sim = dataset.sim_states

    def _env(self, i: int):
        from rlkit import envs

        while len(self._envs) <= i:
            env = envs.make(self.env_id)
            env.reset(seed=len(self._envs))
            self._envs.append(env)
        return self._envs[i]

    def sim_states(self, states: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos, qvel)`` of the queried rows: stored (``infos``) or rebuilt from the observation."""
        if self.restore == "infos":
            return self._sim["qpos"][rows], self._sim["qvel"][rows]
        qpos = np.concatenate([np.zeros((len(states), 1)), states[:, :self.nq - 1]], axis=1)
        return qpos, states[:, self.nq - 1:]

    def returns(self, qpos: np.ndarray, qvel: np.ndarray, first_actions: np.ndarray, policy: PolicyFn,
                device: torch.device) -> np.ndarray:
        """Undiscounted ``horizon``-step returns from each restored state (episodes may end earlier)."""
        envs_ = [self._env(j) for j in range(min(self.num_envs, len(qpos)))]
        return rollout_returns(envs_, qpos, qvel, first_actions, policy, self.horizon, device)

    def _prefer(self, states, dataset_actions, policy_actions, rows, policy):
        if policy is None:
            raise ConfigError("algo.oracle=env_return needs the current policy to roll out")
        qpos, qvel = self.sim_states(states.cpu().numpy().astype(np.float64), rows.cpu().numpy())
        r_data = self.returns(qpos, qvel, dataset_actions.cpu().numpy(), policy, states.device)
        r_pol = self.returns(qpos, qvel, policy_actions.cpu().numpy(), policy, states.device)
        return torch.as_tensor(r_pol > r_data, device=states.device)


# ----------------------------------------------------------------------------------------------- file
LABEL_VALUES = ("dataset", "policy")


def read_label_file(path: str | Path) -> tuple[dict[int, bool], dict[int, int]]:
    """``(row -> policy_preferred, row -> line number)`` from a CSV with header ``row,preferred`` and values
    ``dataset|policy``; a malformed line is refused with its line number."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"algo.oracle_file={path} does not exist; write a CSV with header 'row,preferred'")
    labels: dict[int, bool] = {}
    lines: dict[int, int] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["row", "preferred"]:
            raise ConfigError(f"{path} line 1: the header must be 'row,preferred', got {','.join(header or [])!r}")
        for line, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != 2:
                raise ConfigError(f"{path} line {line}: expected 'row,preferred', got {','.join(fields)!r}")
            row_text, value = fields[0].strip(), fields[1].strip().lower()
            try:
                row = int(row_text)
            except ValueError:
                raise ConfigError(f"{path} line {line}: row {row_text!r} is not an integer") from None
            if row < 0:
                raise ConfigError(f"{path} line {line}: row {row} is negative")
            if value not in LABEL_VALUES:
                raise ConfigError(f"{path} line {line}: preferred must be dataset or policy, got {value!r}")
            if row in labels:
                raise ConfigError(f"{path} line {line}: row {row} is labelled twice")
            labels[row] = value == "policy"
            lines[row] = line
    if not labels:
        raise ConfigError(f"{path} holds no labels; add lines 'ROW,dataset' or 'ROW,policy'")
    return labels, lines


class FileOracle(PreferenceOracle):
    """Labels a person wrote; only the labelled rows can be queried (:meth:`candidates`)."""

    name = "file"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.labels, self._lines = read_label_file(self.path)

    def bind(self, dataset) -> None:
        n = dataset.size
        for row in self.labels:
            if row >= n:
                raise ConfigError(f"{self.path} line {self._lines[row]}: row {row} is outside the dataset "
                                  f"(rows 0..{n - 1})")

    def candidates(self, device: torch.device) -> torch.Tensor:
        return torch.as_tensor(sorted(self.labels), dtype=torch.long, device=device)

    def _prefer(self, states, dataset_actions, policy_actions, rows, policy):
        return torch.as_tensor([self.labels[int(r)] for r in rows.tolist()], dtype=torch.bool, device=rows.device)
