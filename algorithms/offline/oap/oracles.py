"""OAP's action-preference oracles (Yang et al. 2023, Sec. 4.1), behind one interface.

``judge(states, dataset_actions, policy_actions, rows) -> Judgement`` answers, per queried row, whether the
current policy's action ``π(s_i)`` is preferred over the dataset action ``a_i`` (ties: the dataset action) and
whether the oracle is *confident* of it; ``prefer(...)`` is the bare preference.  States are raw observations,
actions env-scale, all torch tensors on one device; ``rows`` are the dataset row indices.  Every answered pair is
counted in ``calls``.

**Confidence** (rlkit's addition; the paper acts on every answer): an answer counts only where the oracle's
margin clears ``confidence`` times its own uncertainty plus ``margin`` (both 0: every answer counts, the paper's
reading).  For ``expert`` the uncertainty is the spread of the critic ensemble: with ``d_k = Q_k(s, π) - Q_k(s, a)``
the answer is confident when ``|mean_k d_k| > κ std_k d_k + τ`` and the sign agrees with the min-Q preference;
``expert_action`` and ``env_return`` compare their margin with ``τ``; a label file is always confident.

**Agreement with the ground truth** (:func:`ground_truth_agreement`): before training, on held-out dataset rows
with simulator states, pairs ``(a_i, b_i)`` with ``b_i`` the dataset action plus ``N(0, 0.3²)`` noise (half-range
units, clipped) are ranked by the oracle and by the simulator (restore the row's state, take the action, follow the
task's shipped expert policy for ``horizon`` steps, discounted return); the agreement is the fraction of the
oracle's *confident* answers that the simulator confirms, on the *decisive* pairs (the half with the larger true
return gap: on the other half the simulator's own verdict turns on chaotic contact events, as on hopper, where even
the expert's own action beats the dataset's in only about half of the states).

* ``expert``: ``argmax_{a ∈ {a_i, π(s_i)}} Q*(s_i, a)`` with ``Q* = min_k Q_k`` of an rlkit SAC run's
  critic (the paper's oracle, Sec. 4.1: an online SAC expert's Q), or of the critic shipped for the task: for
  hopper, walker2d and halfcheetah the critic trained together with the shipped SAC expert (an expert's
  ``Q^{μ_e}`` fitted by FQE, :mod:`rlkit.data.expert_critic`, is the alternative for a run that kept no critic);
* ``env_return``: restore the simulator to the row's state (MuJoCo ``qpos``/``qvel`` from the dataset's
  ``infos/``, or rebuilt from the observation), take the action, follow the current policy for
  ``horizon - 1`` more steps and prefer the higher undiscounted return;
* ``expert_action``: a positive control, not the paper's: the action closer (Euclidean, actions in ``[-1, 1]``) to
  the task's shipped expert policy's mean action ``μ_e(s_i)``;
* ``file``: labels a person wrote, a CSV ``row,preferred`` with values ``dataset|policy`` (no ground truth to check
  them against: their agreement is not measured).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlkit.envs.mujoco import task_of
from rlkit.envs.restore import OBSERVATION_STATES, rollout_returns, state_from_observation
from rlkit.errors import ConfigError

ORACLES = ("expert", "expert_action", "env_return", "file")
#: MuJoCo locomotion tasks whose whole state is ``(qpos, qvel)``, as D4RL's ``infos/`` store it (AntMaze is not:
#: its goal is not part of the simulator state)
RESTORABLE_INFOS = ("hopper", "walker2d", "halfcheetah", "ant")

PolicyFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Judgement:
    """An oracle's answers for a set of rows: ``policy_preferred`` and ``confident`` (bool per row)."""

    policy_preferred: torch.Tensor
    confident: torch.Tensor

    @property
    def relaxing(self) -> torch.Tensor:
        """Rows whose answer OAP acts on: the policy's action is preferred, confidently."""
        return self.policy_preferred & self.confident


class PreferenceOracle:
    """Base: counts answered pairs; subclasses implement :meth:`_prefer` (every answer confident) or override
    :meth:`_judge`.  ``confidence`` (κ) and ``margin`` (τ) set the confidence test (module docstring)."""

    name = "oracle"
    #: whether :func:`ground_truth_agreement` can check this oracle against simulator rollouts
    checkable = True

    def __init__(self, confidence: float = 0.0, margin: float = 0.0) -> None:
        self.calls = 0
        if confidence < 0 or margin < 0:
            raise ConfigError(f"algo.confidence and algo.oracle_margin must be >= 0, got {confidence} and {margin}")
        self.confidence, self.margin = float(confidence), float(margin)

    @property
    def gated(self) -> bool:
        """False when κ = τ = 0: every answer counts (the paper's reading)."""
        return self.confidence > 0 or self.margin > 0

    def bind(self, dataset) -> None:
        """Check the oracle against the dataset before training (the default accepts any)."""

    def candidates(self, device: torch.device) -> torch.Tensor | None:
        """Rows this oracle can answer (None: every row)."""
        return None

    def prefer(self, states: torch.Tensor, dataset_actions: torch.Tensor, policy_actions: torch.Tensor,
               rows: torch.Tensor, policy: PolicyFn | None = None) -> torch.Tensor:
        """Bool per row: the policy action is preferred.  ``policy`` (raw obs -> env-scale action) is the
        current policy, which rollout oracles follow after the compared action."""
        return self.judge(states, dataset_actions, policy_actions, rows, policy).policy_preferred

    def judge(self, states: torch.Tensor, dataset_actions: torch.Tensor, policy_actions: torch.Tensor,
              rows: torch.Tensor, policy: PolicyFn | None = None) -> Judgement:
        """Preference and confidence per row (see :meth:`prefer`); counts the answered pairs."""
        preferred, confident = self._judge(states, dataset_actions, policy_actions, rows, policy)
        self.calls += int(rows.numel())
        if not self.gated:
            confident = torch.ones_like(preferred, dtype=torch.bool)
        return Judgement(preferred.to(torch.bool), confident.to(torch.bool))

    def _judge(self, states, dataset_actions, policy_actions, rows, policy) -> tuple[torch.Tensor, torch.Tensor]:
        """``(policy_preferred, confident)``; the default: :meth:`_prefer`, every answer confident."""
        preferred = self._prefer(states, dataset_actions, policy_actions, rows, policy)
        return preferred, torch.ones_like(preferred, dtype=torch.bool)

    def _prefer(self, states, dataset_actions, policy_actions, rows, policy) -> torch.Tensor:
        raise NotImplementedError


def margin_confident(preferred: torch.Tensor, margin: torch.Tensor, spread: torch.Tensor | float,
                     confidence: float, threshold: float) -> torch.Tensor:
    """``|margin| > κ spread + τ`` with the margin's sign agreeing with ``preferred`` (margin > 0: the policy)."""
    clears = margin.abs() > confidence * spread + threshold
    return clears & (preferred == (margin > 0))


# ----------------------------------------------------------------------------------------------- expert
class ExpertQOracle(PreferenceOracle):
    """``Q*(s, π(s)) > Q*(s, a)`` with ``Q* = min_k Q_k``; ``q_heads(raw obs, env-scale action) -> [K, B]`` gives
    every head, whose spread sets the confidence (module docstring)."""

    name = "expert"

    def __init__(self, q_heads: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], description: dict,
                 confidence: float = 1.0, margin: float = 0.0) -> None:
        super().__init__(confidence, margin)
        self.q_heads, self.description = q_heads, description

    def q_fn(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``min_k Q_k(s, a)``."""
        return self.q_heads(obs, action).min(0).values

    @torch.no_grad()
    def _judge(self, states, dataset_actions, policy_actions, rows, policy):
        chunk = 65536
        diffs = [self.q_heads(states[i:i + chunk], policy_actions[i:i + chunk])
                 - self.q_heads(states[i:i + chunk], dataset_actions[i:i + chunk]) for i in range(0, len(rows), chunk)]
        prefs = [self.q_fn(states[i:i + chunk], policy_actions[i:i + chunk])
                 > self.q_fn(states[i:i + chunk], dataset_actions[i:i + chunk]) for i in range(0, len(rows), chunk)]
        if not diffs:
            empty = rows.new_zeros(0, dtype=torch.bool)
            return empty, empty
        d, preferred = torch.cat(diffs, 1), torch.cat(prefs)
        return preferred, margin_confident(preferred, d.mean(0), d.std(0, unbiased=False), self.confidence,
                                           self.margin)


def shipped_critic_path(env_id: str) -> Path:
    from rlkit.data.collect import POLICY_DIR

    return POLICY_DIR / f"{env_id}-expert-critic.pt"


def load_expert_oracle(env_id: str, checkpoint: str | None, observation_space, action_space,
                       device: torch.device, confidence: float = 1.0, margin: float = 0.0) -> ExpertQOracle:
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

    def q_heads(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return expert.critic(obs, expert.from_env_action(action))

    return ExpertQOracle(q_heads, description, confidence, margin)


# ----------------------------------------------------------------------------------------------- expert action
def shipped_expert_path(env_id: str) -> Path:
    from rlkit.data.collect import POLICY_DIR
    from rlkit.envs.mujoco import task_of

    return POLICY_DIR / f"{task_of(env_id)}-expert.pt"


def load_expert_policy(env_id: str, observation_space, action_space, device: torch.device) -> Callable:
    """The task's shipped expert policy as ``raw obs -> env-scale mean action`` (torch in, torch out)."""
    from omegaconf import OmegaConf

    from rlkit.regimes.base import build_algorithm

    path = shipped_expert_path(env_id)
    if not path.is_file():
        raise ConfigError(f"rlkit ships no expert policy for env '{env_id}' (only hopper, walker2d, halfcheetah); "
                          "use algo.oracle=file or algo.oracle=env_return")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    expert = build_algorithm(OmegaConf.create({"algo": payload["algo_config"]}), observation_space, action_space,
                             device)
    expert.actor.load_state_dict(payload["actor"])
    expert.actor.requires_grad_(False)

    @torch.no_grad()
    def mean_action(obs: torch.Tensor) -> torch.Tensor:
        return expert.actor(obs).mode * expert.action_scale + expert.action_bias

    return mean_action


class ExpertActionOracle(PreferenceOracle):
    """Positive control: the action closer to the expert's mean action ``μ_e(s)`` in ``[-1, 1]`` units; margin
    ``|a - μ_e| - |π - μ_e|`` against ``τ``."""

    name = "expert_action"

    def __init__(self, expert: Callable[[torch.Tensor], torch.Tensor], low: np.ndarray, high: np.ndarray,
                 margin: float = 0.1) -> None:
        super().__init__(0.0, margin)
        self.expert = expert
        self.low, self.high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)

    def _unit(self, action: torch.Tensor) -> torch.Tensor:
        low, high = self.low.to(action.device), self.high.to(action.device)
        return (action - low) / (high - low) * 2 - 1

    @torch.no_grad()
    def _judge(self, states, dataset_actions, policy_actions, rows, policy):
        target = self._unit(self.expert(states))
        d_data = (self._unit(dataset_actions) - target).norm(dim=-1)
        d_policy = (self._unit(policy_actions) - target).norm(dim=-1)
        preferred = d_policy < d_data
        return preferred, margin_confident(preferred, d_data - d_policy, 0.0, 0.0, self.margin)


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
    #: it *is* the simulator (following the current policy instead of the expert): nothing to check it against
    checkable = False

    def __init__(self, env_id: str, horizon: int = 100, num_envs: int = 64, restore: str = "infos",
                 margin: float = 0.0) -> None:
        super().__init__(0.0, margin)
        from rlkit.envs.restore import sim_data

        if restore not in RESTORE_MODES:
            raise ConfigError(f"bad value for 'algo.oracle_restore': {restore!r}; choose infos or observation")
        task = task_of(env_id)
        if task not in RESTORABLE_INFOS:
            raise ConfigError(f"algo.oracle=env_return cannot restore env '{env_id}' to a dataset state (only "
                              f"{', '.join(RESTORABLE_INFOS)}); use algo.oracle=expert or algo.oracle=file")
        if restore == "observation" and task not in OBSERVATION_STATES:
            raise ConfigError(f"algo.oracle_restore=observation cannot rebuild env '{env_id}' from its observation "
                              f"(only {', '.join(sorted(OBSERVATION_STATES))}); use algo.oracle_restore=infos with a "
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
        qpos, qvel, _ = state_from_observation(task_of(self.env_id), states)
        return qpos, qvel

    def returns(self, qpos: np.ndarray, qvel: np.ndarray, first_actions: np.ndarray, policy: PolicyFn,
                device: torch.device) -> np.ndarray:
        """Undiscounted ``horizon``-step returns from each restored state (episodes may end earlier)."""
        envs_ = [self._env(j) for j in range(min(self.num_envs, len(qpos)))]
        return rollout_returns(envs_, qpos, qvel, first_actions, policy, self.horizon, device)

    def _judge(self, states, dataset_actions, policy_actions, rows, policy):
        if policy is None:
            raise ConfigError("algo.oracle=env_return needs the current policy to roll out")
        qpos, qvel = self.sim_states(states.cpu().numpy().astype(np.float64), rows.cpu().numpy())
        r_data = self.returns(qpos, qvel, dataset_actions.cpu().numpy(), policy, states.device)
        r_pol = self.returns(qpos, qvel, policy_actions.cpu().numpy(), policy, states.device)
        gap = torch.as_tensor(r_pol - r_data, device=states.device)
        preferred = gap > 0
        return preferred, margin_confident(preferred, gap, 0.0, 0.0, self.margin)


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
    """Labels a person wrote; only the labelled rows can be queried (:meth:`candidates`); every label is
    confident and none can be checked against the simulator (the policy action it judged is not in the file)."""

    name = "file"
    checkable = False

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


# ----------------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class Agreement:
    """:func:`ground_truth_agreement`'s result: the fraction of the oracle's confident answers on decisive pairs that
    the simulator confirms (NaN when not measured, ``reason`` says why), over ``confident`` such answers of
    ``pairs`` pairs."""

    agreement: float
    confident: int
    pairs: int
    reason: str = ""


def ground_truth_agreement(oracle: PreferenceOracle, dataset, env_id: str, observation_space, action_space,
                           device: torch.device, pairs: int = 128, horizon: int = 100, gamma: float = 0.99,
                           noise: float = 0.3, seed: int = 0, min_confident: int = 20) -> Agreement:
    """How often the oracle's confident answers agree with simulator rollouts (module docstring).

    Rows: ``pairs`` dataset rows drawn with a generator seeded by ``seed``; the compared actions: the row's action
    ``a`` and ``b = clip(a + N(0, noise²))`` (half-range units); the truth: restore the row's ``qpos``/``qvel``, take
    the action, then follow the task's shipped expert for ``horizon - 1`` steps (discounted by ``gamma``), and
    prefer the larger return.  The check does not count as queries (``oracle.calls`` is restored)."""
    from rlkit import envs
    from rlkit.envs.mujoco import task_of

    if pairs <= 0:
        return Agreement(math.nan, 0, 0, "algo.agreement_pairs=0")
    if not oracle.checkable:
        return Agreement(math.nan, 0, 0, f"the {oracle.name} oracle has no simulator truth to be checked against")
    task = task_of(env_id)
    if task not in RESTORABLE_INFOS or dataset.sim_states is None:
        return Agreement(math.nan, 0, 0, f"env '{env_id}' with this dataset cannot be restored to its rows' states "
                                         "(needs a MuJoCo locomotion task and infos/qpos, infos/qvel)")
    if not shipped_expert_path(env_id).is_file():
        return Agreement(math.nan, 0, 0, f"rlkit ships no expert policy for '{task}' to roll out the truth with")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(dataset.size, min(pairs, dataset.size), replace=False))
    low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
    a = np.asarray(dataset.actions[rows], np.float64)
    unit = (a - low) / (high - low) * 2 - 1
    b_unit = np.clip(unit + noise * rng.standard_normal(unit.shape), -1.0, 1.0)
    b = (b_unit + 1) / 2 * (high - low) + low
    states = torch.as_tensor(dataset.observations[rows], dtype=torch.float32, device=device)
    to_t = lambda x: torch.as_tensor(x, dtype=torch.float32, device=device)  # noqa: E731
    calls = oracle.calls
    judged = oracle.judge(states, to_t(a), to_t(b), torch.as_tensor(rows, device=device))
    oracle.calls = calls
    follow = load_expert_policy(env_id, observation_space, action_space, device)
    pool = [envs.make(env_id) for _ in range(min(32, len(rows)))]
    for i, env in enumerate(pool):
        env.reset(seed=i)
    qpos, qvel = dataset.sim_states["qpos"][rows], dataset.sim_states["qvel"][rows]
    r_a = rollout_returns(pool, qpos, qvel, a.astype(np.float32), follow, horizon, device, gamma)
    r_b = rollout_returns(pool, qpos, qvel, b.astype(np.float32), follow, horizon, device, gamma)
    for env in pool:
        env.close()
    truth, gap = r_b > r_a, np.abs(r_b - r_a)
    confident = judged.confident.cpu().numpy() & (gap >= np.median(gap))
    n = int(confident.sum())
    if n < min_confident:
        return Agreement(math.nan, n, len(rows),
                         f"only {n} of {len(rows)} answers are confident on decisive pairs (need {min_confident})")
    agree = judged.policy_preferred.cpu().numpy()[confident] == truth[confident]
    return Agreement(float(agree.mean()), n, len(rows))
