"""OAP: offline RL boosted by action-preference queries (Yang, Wang, Lin, Song & Huang, ICML 2023,
"Boosting Offline Reinforcement Learning with Action Preference Query"), wrapped around a base offline
algorithm through the algorithm contract.

The base (TD3+BC, the paper's main instantiation, or IQL, its AntMaze/Adroit choice) stays unchanged: OAP
hands it a batch whose decoupled policy batch (``Batch.policy_batch``, the batch its policy terms read)
carries the *preferred* action ``ã_i`` in its ``action`` column, so

* TD3+BC's constraint becomes ``max_π E[λ Q(s, π(s)) - (π(s) - ã)²]`` (paper eq. 6, Sec. 4.3);
* IQL's actor becomes ``max_π E[exp(β (Q̄(s, ã) - V(s))) log π(ã | s)]`` -- the natural analogue (the
  paper gives no formula): the weighted likelihood of the preferred action, weighted by its advantage;

while the critic (and IQL's value) still train on the dataset actions of the main batch.

Algorithm 1 of the paper, with the run's own update counter ``t``:

1. ``ã_i ← a_i`` for every row;
2. each update: one base update with BC target ``ã``;
3. after the updates of a query round (:mod:`.selection`): compute ``π(s_i)`` on every row, select the rows
   to query by ``||π(s_i) - a_i||²`` (unqueried first), ask the oracle (:mod:`.oracles`), record
   ``(s_k, a_k, π_k(s_k), label_k)``, train the RankNet (:mod:`.ranknet`) for ``ranknet_epochs`` on every
   queried row and pseudo-label every unqueried row.

What a policy-preferred row does (``target``):

* ``relax`` (rlkit's default, a reading that cannot redirect the policy to a stale action): the row keeps its
  dataset action as BC target, and its BC term is multiplied by ``relax_weight`` in ``[0, 1)`` (the policy batch's
  ``bc_weight`` column), so the critic's preference can move the policy there; a row whose answer is not confident
  (:mod:`.oracles`) is left alone;
* ``frozen`` (the literal reading of Algorithm 1): the BC target becomes the policy action of the round that labelled
  the row;
* ``live``: the BC target is the current ``π(s)`` at every update, which removes the constraint on that row.

The RankNet (paper Sec. 4.2) is trained on all but a held-out ``ranknet_holdout`` share of the queried rows, its
held-out agreement with the oracle is logged (``oap/ranknet_heldout_agreement``), and it pseudo-labels an unqueried
row only where its probability ``σ(f(s, π) - f(s, a))`` exceeds ``ranknet_confidence`` and only in rounds whose
held-out agreement reaches ``ranknet_min_agreement``.  The paper's reading: ``ranknet_holdout=0``,
``ranknet_confidence=0.5``, ``ranknet_min_agreement=0`` (every unqueried row labelled by the argmax).

Before training, the oracle's agreement with simulator rollouts is measured on held-out pairs
(:func:`.oracles.ground_truth_agreement`, ``oap/oracle_agreement``), and an oracle below ``min_oracle_agreement``
is refused in one line (``min_oracle_agreement=0`` accepts it).  The paper's readings together: ``target=frozen
schedule=interval confidence=0 ranknet_holdout=0 ranknet_confidence=0.5 ranknet_min_agreement=0
min_oracle_agreement=0``.

A query round runs under a forked torch RNG seeded from ``(seed, round)``, so the base's random stream is
the same with or without OAP and a resumed run replays the rounds exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rlkit.algorithm import Algorithm, UpdateResult
from rlkit.algorithms.offline.common import BC_WEIGHT, OfflineActorCritic, policy_batch
from rlkit.algorithms.offline.oap.oracles import (
    ORACLES,
    EnvReturnOracle,
    ExpertActionOracle,
    FileOracle,
    PreferenceOracle,
    ground_truth_agreement,
    load_expert_oracle,
    load_expert_policy,
)
from rlkit.algorithms.offline.oap.ranknet import RankNet, preference_probability, prefers_policy, train_ranknet
from rlkit.algorithms.offline.oap.selection import round_size, round_steps, select_queries
from rlkit.errors import ConfigError
from rlkit.replay import Batch
from rlkit.utils import derive_seed

TARGETS = ("relax", "frozen", "live")
#: default τ of each oracle's confidence test (algo.oracle_margin=null): Q units, action units, return units
DEFAULT_MARGIN = {"expert": 0.0, "expert_action": 0.1, "env_return": 0.0, "file": 0.0}


def build_base(base: Mapping[str, Any], observation_space, action_space, device) -> OfflineActorCritic:
    """The base offline algorithm from its config block (``_target_`` and its parameters)."""
    from hydra.utils import get_class

    params = dict(base)
    target = params.pop("_target_", None)
    if not target:
        raise ConfigError("algo.base has no _target_; name the base algorithm class (e.g. "
                          "rlkit.algorithms.offline.td3bc.TD3BC)")
    cls = get_class(str(target))
    if not (isinstance(cls, type) and issubclass(cls, OfflineActorCritic)):
        raise ConfigError(f"algo.base._target_={target} is not an offline actor-critic algorithm; OAP wraps "
                          "TD3BC or IQL")
    try:
        return cls(observation_space, action_space, device, **params)
    except TypeError as exc:
        raise ConfigError(f"bad algo.base parameters for {target.rsplit('.', 1)[-1]}: {exc}") from None


class OAP(Algorithm):
    """OAP around an :class:`OfflineActorCritic` base (see the module docstring)."""

    regimes = ("offline",)
    observation = "vector"
    action = "continuous"
    provides_priorities = True
    state_attributes = ("num_updates", "queries_used", "rounds_done", "oracle_calls", "oracle_agreement")

    def __init__(self, observation_space, action_space, device="cpu", *, base: Mapping[str, Any],
                 env_id: str, max_steps: int, seed: int = 0, oracle: str = "expert",
                 oracle_checkpoint: str | None = None, oracle_file: str | None = None, oracle_horizon: int = 100,
                 oracle_restore: str = "infos", confidence: float = 1.0, oracle_margin: float | None = None,
                 min_oracle_agreement: float = 0.6, agreement_pairs: int = 128, agreement_horizon: int = 100,
                 query_limit: int | None = 100_000, query_period: int = 100_000, schedule: str = "fraction",
                 first_query_at: float = 0.5, rounds: int = 5,
                 unqueried_first: bool = True, ranknet: bool = True, ranknet_epochs: int = 100,
                 ranknet_hidden: Sequence[int] = (512, 256), ranknet_dropout: float = 0.5,
                 ranknet_lr: float = 1e-3, ranknet_batch_size: int = 256, ranknet_holdout: float = 0.2,
                 ranknet_confidence: float = 0.75, ranknet_min_agreement: float = 0.7,
                 target: str = "relax", relax_weight: float = 0.5) -> None:
        self.base = build_base(base, observation_space, action_space, device)
        super().__init__(observation_space, action_space, device)
        if target not in TARGETS:
            raise ConfigError(f"bad value for 'algo.target': {target!r}; choose {', '.join(TARGETS)}")
        if not 0.0 <= relax_weight < 1.0:
            raise ConfigError(f"algo.relax_weight must be in [0, 1), got {relax_weight}")
        if not (0.0 <= ranknet_holdout < 1.0 and 0.5 <= ranknet_confidence < 1.0 and 0 <= ranknet_min_agreement <= 1):
            raise ConfigError("algo.ranknet_holdout must be in [0, 1), algo.ranknet_confidence in [0.5, 1) and "
                              f"algo.ranknet_min_agreement in [0, 1]; got {ranknet_holdout}, {ranknet_confidence}, "
                              f"{ranknet_min_agreement}")
        if ranknet_min_agreement > 0 and ranknet_holdout == 0:
            raise ConfigError("algo.ranknet_min_agreement needs held-out queries to measure; set algo.ranknet_holdout "
                              "> 0 or algo.ranknet_min_agreement=0")
        if query_limit is not None and int(query_limit) < 0:
            raise ConfigError(f"algo.query_limit must be >= 0 or null (unlimited), got {query_limit}")
        self.seed, self.env_id, self.target = int(seed), str(env_id), target
        self.relax_weight = float(relax_weight)
        self.query_limit = None if query_limit is None else int(query_limit)
        self.schedule = round_steps(int(max_steps), int(query_period), schedule, float(first_query_at), int(rounds))
        self.unqueried_first, self.use_ranknet = bool(unqueried_first), bool(ranknet)
        self.ranknet_epochs, self.ranknet_batch_size = int(ranknet_epochs), int(ranknet_batch_size)
        self.ranknet_holdout, self.ranknet_confidence = float(ranknet_holdout), float(ranknet_confidence)
        self.ranknet_min_agreement = float(ranknet_min_agreement)
        self.min_oracle_agreement = float(min_oracle_agreement)
        self.agreement_pairs, self.agreement_horizon = int(agreement_pairs), int(agreement_horizon)
        margin = DEFAULT_MARGIN.get(oracle, 0.0) if oracle_margin is None else float(oracle_margin)
        with torch.random.fork_rng(devices=[]):  # building the oracle and the RankNet leaves the base's RNG alone
            self.oracle = self._build_oracle(oracle, oracle_checkpoint, oracle_file, int(oracle_horizon),
                                             oracle_restore, float(confidence), margin)
            torch.manual_seed(derive_seed(self.seed, "oap ranknet init"))
            self.ranknet = RankNet(self.obs_dim, self.action_dim, ranknet_hidden, ranknet_dropout).to(self.device)
        self.ranknet_opt = torch.optim.Adam(self.ranknet.parameters(), lr=float(ranknet_lr))
        self.num_updates = 0
        self.queries_used = 0
        self.rounds_done = 0
        self.oracle_calls = 0
        #: the oracle's measured agreement with the simulator (NaN: not measured); set by :meth:`on_dataset`
        self.oracle_agreement = float("nan")
        self._data: dict[str, torch.Tensor] = {}
        self._start_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ construction
    def _build_oracle(self, name: str, checkpoint: str | None, path: str | None, horizon: int,
                      restore: str, confidence: float, margin: float) -> PreferenceOracle:
        if name not in ORACLES:
            raise ConfigError(f"bad value for 'algo.oracle': {name!r}; choose {', '.join(ORACLES)}")
        if name == "file":
            if not path:
                raise ConfigError("algo.oracle=file needs algo.oracle_file=PATH (a CSV with header row,preferred)")
            return FileOracle(path)
        if name == "env_return":
            return EnvReturnOracle(self.env_id, horizon, restore=restore, margin=margin)
        if name == "expert_action":
            expert = load_expert_policy(self.env_id, self.observation_space, self.action_space, self.device)
            return ExpertActionOracle(expert, self.action_space.low, self.action_space.high, margin)
        return load_expert_oracle(self.env_id, checkpoint, self.observation_space, self.action_space, self.device,
                                  confidence, margin)

    def check_oracle(self, dataset) -> dict[str, float]:
        """Measure the oracle against simulator rollouts (:func:`.oracles.ground_truth_agreement`) and refuse one
        whose agreement is below ``min_oracle_agreement``; returns the metrics to log."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            result = ground_truth_agreement(self.oracle, dataset, self.env_id, self.observation_space,
                                            self.action_space, self.device, self.agreement_pairs,
                                            self.agreement_horizon, seed=derive_seed(self.seed, "oap oracle check"))
        self.oracle_agreement = result.agreement
        if result.reason:
            print(f"[oap] oracle agreement not measured: {result.reason}", flush=True)
        elif result.agreement < self.min_oracle_agreement:
            raise ConfigError(
                f"the {self.oracle.name} oracle agrees with simulator rollouts on {result.agreement:.2f} of its "
                f"{result.confident} confident answers (of {result.pairs} held-out pairs), below "
                f"algo.min_oracle_agreement={self.min_oracle_agreement}; use a better oracle (algo.oracle_checkpoint="
                "RUN_DIR of a SAC expert, algo.oracle=expert_action) or accept it with algo.min_oracle_agreement=0")
        else:
            print(f"[oap] oracle agreement {result.agreement:.2f} on {result.confident} confident of {result.pairs} "
                  "held-out pairs", flush=True)
        if result.reason:
            return {}
        return {"oap/oracle_agreement": result.agreement, "oap/oracle_confident_share": result.confident / result.pairs}

    @property
    def priority_feedback(self) -> bool:
        return self.base.priority_feedback

    @priority_feedback.setter
    def priority_feedback(self, value: bool) -> None:
        self.base.priority_feedback = value

    # ------------------------------------------------------------------ contract
    def on_dataset(self, dataset) -> None:
        """Base setup, the oracle's check, the dataset tensors and the initial labels ``ã_i = a_i``."""
        self.base.on_dataset(dataset)
        self.oracle.bind(dataset)
        self._start_metrics = self.check_oracle(dataset)
        obs = torch.as_tensor(dataset.observations, device=self.device)
        mean, std = (torch.as_tensor(x, device=self.device) for x in dataset.observation_stats(eps=1e-3))
        self._data = {"obs": obs, "action": torch.as_tensor(dataset.actions, device=self.device),
                      "obs_mean": mean, "obs_std": std}
        n, a = dataset.size, self.action_dim
        #: the preferred action ``ã_i`` (env scale) and whether it is the policy's
        self.target_action = self._data["action"].clone()
        self.prefer_policy = torch.zeros(n, dtype=torch.bool, device=self.device)
        #: the multiplier of each row's BC term (``target=relax``): ``relax_weight`` on policy-preferred rows, else 1
        self.bc_weight = torch.ones(n, device=self.device)
        #: the query set ``D_q`` (one entry per queried row, its latest query)
        self.queried = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.query_policy_action = torch.zeros(n, a, device=self.device)
        self.query_label = torch.zeros(n, dtype=torch.bool, device=self.device)

    def act(self, obs: np.ndarray, state: Any = None, deterministic: bool = True):
        return self.base.act(obs, state, deterministic)

    def critic_for_diagnostics(self):
        return self.base.critic_for_diagnostics()

    def update(self, batch) -> UpdateResult:
        self.num_updates += 1
        result = self.base.update(self.with_preferred_actions(batch))
        metrics = dict(result.metrics)
        if self.num_updates == 1:  # the check's figures, once per run (not again after a resume)
            metrics.update(self._start_metrics)
        if self.rounds_done < len(self.schedule) and self.num_updates == self.schedule[self.rounds_done]:
            metrics.update(self.query_round())
        return UpdateResult(metrics, result.priorities)

    def with_preferred_actions(self, batch):
        """``batch`` with a policy batch whose ``action`` column holds ``ã`` of its rows, or (``target=relax``)
        whose ``bc_weight`` column holds the rows' BC multipliers (the main batch and its dataset actions are
        untouched: the critic still trains on them)."""
        pb = policy_batch(batch)
        rows = pb.indices.long()
        if self.target == "relax":
            relaxed = Batch(pb)
            relaxed[BC_WEIGHT] = self.bc_weight[rows]
            return Batch(batch, policy_batch=relaxed)
        target = self.target_action[rows]
        if self.target == "live":
            with torch.no_grad():
                target = torch.where(self.prefer_policy[rows, None], self.policy_env_action(pb.obs), target)
        preferred = Batch(pb)
        preferred["action"] = target
        return Batch(batch, policy_batch=preferred)

    # ------------------------------------------------------------------ query rounds
    @torch.no_grad()
    def policy_env_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The base's deterministic action (env scale) on raw observations."""
        base = self.base
        action = base.policy_action(base.obs_norm(obs), True).clamp(-1.0, 1.0)
        return action * base.action_scale + base.action_bias

    def _all_policy_actions(self, chunk: int = 65536) -> torch.Tensor:
        obs = self._data["obs"]
        return torch.cat([self.policy_env_action(obs[i:i + chunk]) for i in range(0, obs.shape[0], chunk)])

    def _ranknet_inputs(self, rows: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = (self._data["obs"][rows] - self._data["obs_mean"]) / self._data["obs_std"]
        return obs, self.base.from_env_action(action)

    def _ranknet_prefers_policy(self, rows: torch.Tensor, data_action: torch.Tensor,
                                policy_action: torch.Tensor) -> torch.Tensor:
        obs, a = self._ranknet_inputs(rows, data_action)
        return prefers_policy(self.ranknet, obs, a, self.base.from_env_action(policy_action))

    def query_round(self) -> dict[str, float]:
        """One round of Algorithm 1 (module docstring); returns its metrics."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(self.seed, f"oap query round {self.rounds_done}"))
            metrics = self._query_round()
        self.rounds_done += 1
        return metrics

    def _query_round(self) -> dict[str, float]:
        data_action = self._data["action"]
        pi = self._all_policy_actions()
        divergence = (self.base.from_env_action(pi) - self.base.from_env_action(data_action)).pow(2).sum(-1)
        candidates = self.oracle.candidates(self.device)
        n_candidates = data_action.shape[0] if candidates is None else int(candidates.numel())
        k = round_size(self.query_limit, self.queries_used, len(self.schedule) - self.rounds_done, n_candidates)
        rows = select_queries(divergence, self.queried, k, self.unqueried_first, candidates)
        metrics: dict[str, float] = {}
        judged = self.oracle.judge(self._data["obs"][rows], data_action[rows], pi[rows], rows,
                                   policy=self.policy_env_action)
        labels = judged.relaxing  # what OAP acts on: confident preferences for the policy
        if self.use_ranknet and self.rounds_done > 0 and rows.numel():  # before training on the new queries
            guess = self._ranknet_prefers_policy(rows, data_action[rows], pi[rows])
            metrics["oap/agreement"] = float((guess == labels).float().mean())
        self.queried[rows] = True
        self.query_policy_action[rows] = pi[rows]
        self.query_label[rows] = labels
        self.queries_used += int(rows.numel())
        self.oracle_calls = self.oracle.calls

        q_rows = torch.nonzero(self.queried).squeeze(-1)
        prefer = torch.zeros_like(self.prefer_policy)
        prefer[q_rows] = self.query_label[q_rows]
        target = data_action.clone()
        u_rows = torch.nonzero(~self.queried).squeeze(-1)
        if self.use_ranknet and q_rows.numel() and u_rows.numel():  # nothing to pseudo-label: no training
            pseudo, ranknet_metrics = self._ranknet_labels(q_rows, u_rows, data_action, pi)
            metrics.update(ranknet_metrics)
            prefer[u_rows] = pseudo
            target[u_rows] = torch.where(pseudo[:, None], pi[u_rows], data_action[u_rows])
        target[q_rows] = torch.where(self.query_label[q_rows, None], self.query_policy_action[q_rows],
                                     data_action[q_rows])
        self.prefer_policy.copy_(prefer)
        if self.target == "relax":
            self.bc_weight.copy_(torch.where(prefer, self.relax_weight, 1.0))
        else:
            self.target_action.copy_(target)
        # logged at rounds only: the logger averages a log window, and the count is constant between rounds
        metrics.update({"oap/queries": float(self.queries_used), "oap/round": float(self.rounds_done + 1),
                        "oap/round_queries": float(rows.numel()),
                        "oap/oracle_confident": float(judged.confident.float().mean()) if rows.numel() else 0.0,
                        "oap/oracle_policy_preferred": float(labels.float().mean()) if rows.numel() else 0.0,
                        "oap/policy_preferred": float(prefer.float().mean()),
                        "oap/relaxed_rows": float(prefer.sum()),
                        "oap/divergence_queried": float(divergence[rows].mean()) if rows.numel() else 0.0})
        return metrics

    def _ranknet_labels(self, q_rows: torch.Tensor, u_rows: torch.Tensor, data_action: torch.Tensor,
                        pi: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Train the RankNet on the queried rows but a held-out share, measure its held-out agreement with the
        oracle, and label the unqueried rows it is confident on (none when the agreement is below the gate)."""
        n_held = int(round(self.ranknet_holdout * q_rows.numel()))
        order = q_rows[torch.randperm(q_rows.numel(), device=q_rows.device)]
        held, train = order[:n_held], order[n_held:]
        obs, a = self._ranknet_inputs(train, data_action[train])
        metrics = train_ranknet(self.ranknet, self.ranknet_opt, obs, a,
                                self.base.from_env_action(self.query_policy_action[train]),
                                self.query_label[train], self.ranknet_epochs, self.ranknet_batch_size)
        if held.numel():
            guess = self._ranknet_prefers_policy(held, data_action[held], self.query_policy_action[held])
            held_agreement = float((guess == self.query_label[held]).float().mean())
            metrics["oap/ranknet_heldout_agreement"] = held_agreement
        else:
            held_agreement = 1.0  # no gate without held-out rows (the paper's reading)
        pseudo = torch.zeros(u_rows.numel(), dtype=torch.bool, device=u_rows.device)
        if held_agreement >= self.ranknet_min_agreement:
            obs, a = self._ranknet_inputs(u_rows, data_action[u_rows])
            prob = preference_probability(self.ranknet, obs, a, self.base.from_env_action(pi[u_rows]))
            pseudo = prob > self.ranknet_confidence
        metrics["oap/ranknet_labelled"] = float(pseudo.sum())
        return pseudo, metrics

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "base": self.base.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "base" not in state:
            raise KeyError("checkpoint lacks algorithm state ['base']")
        self.base.load_state_dict(state["base"])
        super().load_state_dict({k: v for k, v in state.items() if k != "base"})
        self.oracle.calls = self.oracle_calls
