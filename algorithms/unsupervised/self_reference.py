"""Self-Reference (SR): "Self-Referencing Agents for Unsupervised Reinforcement Learning" (Zhao, Zhu, Lu, Lin, Liu,
Huang; Neural Networks 188, 2025; arXiv 2311.09692), an add-on to any URLB agent (``addon=self_reference``).

The agent's actor and critic get an extra input, the reference vector ``u_t`` (Sec. 4.2, Eqs. 3-7):

* **Reference memory** (Sec. 4.1, Alg. 1, :class:`ReferenceMemory`): the latest ``window`` (1e5) states of the
  replay buffer, refreshed only at episode ends (so a query never hits the current episode).  Keys are the
  raw states; retrieval is **cosine** k-NN, ``k`` = 10, and each hit ``s_j`` returns its ``D`` = 5-state
  continuation ``s_j .. s_{j+D-1}`` (cut at the episode's end by repeating its last state -- our padding; the
  paper does not say), so ``E_t`` is ``k x D`` states.  Exact search (a matrix product), as Faiss' flat index.
* **Query** (Sec. 4.1, :class:`QueryModule`): a Gaussian "query actor" ``pi_query(q|s)`` over the state space,
  with its own value function, trained with PPO on the **same reward as the main actor** (intrinsic in
  pretraining, extrinsic in finetuning) plus the identity loss ``L_id = ||E[q] - s||^2`` (unit weight).  We
  parametrise its mean as ``s + Delta(s)`` (so it starts at the identity; ``L_id = ||Delta(s)||^2``), 64-64 tanh
  MLPs with a state-independent log-std (CleanRL's PPO network), Adam lr 3e-4, clip 0.2, value coefficient 0.5,
  entropy 0, grad-norm clip 0.5.  **Our choice for the paper's ambiguity** (Alg. 1 draws the query update from
  the replay buffer, which does not fit on-policy PPO): each agent update takes one PPO step on the replay
  minibatch, with the query and its log-probability stored in the replay at acting time, the TD advantage
  ``A = r + Gamma V(s') - V(s)`` (batch-normalised; ``r``, ``Gamma`` the n-step reward and discount of the main
  critic) and the value target ``r + Gamma V(s')``.  In **half of the pretraining episodes** the query module is
  bypassed (``q = s``); those rows do not train it (``bypass_fraction``).
* **Aggregator** (Sec. 4.2, :class:`ReferenceAggregator`): multi-head cross-attention
  ``u_t = W_o MHA(Q, K + T, V + T)``, ``Q = QEnc(s_t)``, ``K = KEnc(E_t)``, ``V = VEnc(E_t)`` (MLP encoders), ``T``
  a learnt embedding of the offset ``0..D-1`` inside each continuation; every retrieved state is one token.
  Attention from :func:`rlkit.kernels.attention` (``attention_kind``: any kind; non-softmax kinds attend with
  the query repeated over the tokens and read one row; the causal-only kinds gla and slide read the last row).
  ``u_t`` is concatenated to the actor's input and the critic's state-action input and trained end to end
  through the critic loss (the actor's loss sees it detached, as the DDPG features).  ``U`` (``dim``), the head
  count, encoder width and learning rate are not in the paper: ``dim`` 256, 4 heads, hidden 256, lr = the
  agent's (documented config values).
* **Finetuning** (Alg. 1): query module and aggregator come from the snapshot; the reference memory starts as
  the pretraining one and keeps being appended (``keep_pretrain_states``: the pretraining states stay whole and
  the newest ``window`` finetuning states are added -- the paper does not say whether the 1e5 cap applies;
  ``false`` applies it to the union).  The query module is always used (no bypass).

Ablations (Sec. 6): ``source`` = ``learned_query`` | ``knn_state`` (k-NN around ``s_t``, no query module) |
``random_states`` (k uniform memory states + continuations) | ``noise`` (``u ~ N(0, I)``, Fig. 5); ``k``, ``D``,
``window`` (Fig. 7); ``active`` = ``both`` | ``pretrain`` | ``finetune`` (``u = 0`` in the other phase: Table 1's
"Freeze SR").
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit import kernels
from rlkit.algorithm import URLBAddon
from rlkit.errors import ConfigError
from rlkit.optim import adam

SOURCES = ("learned_query", "knn_state", "random_states", "noise")
PHASES = ("both", "pretrain", "finetune")
CAUSAL_KINDS = ("gla", "slide")  # kinds with only a causal form: read the last row


# ----------------------------------------------------------------------------- memory
class ReferenceMemory:
    """The latest ``window`` states of the replay buffer (+ states carried from pretraining) with cosine k-NN
    retrieval of ``D``-state continuations (module docstring)."""

    def __init__(self, obs_dim: int, window: int, device: torch.device, chunk: int = 256) -> None:
        self.obs_dim, self.window, self.device, self.chunk = obs_dim, int(window), device, int(chunk)
        self.carried = torch.zeros(0, obs_dim, device=device)        # pretraining states (finetuning only)
        self.carried_last = torch.zeros(0, dtype=torch.bool, device=device)  # last row of its episode
        self.keep_carried = True
        self.states = torch.zeros(0, obs_dim, device=device)
        self.keys = torch.zeros(0, obs_dim, device=device)
        self.episode_end = torch.zeros(0, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def refresh(self, replay) -> None:
        """Rebuild from the replay's newest ``window`` rows (all of completed episodes when called at an end)."""
        storage = replay.storage
        n = min(self.window, len(storage))
        positions = np.arange(len(storage) - n, len(storage))
        rows = storage.logical_to_physical(positions)
        obs = torch.as_tensor(storage.arrays["obs"][rows], dtype=torch.float32, device=self.device)
        done = storage.arrays["terminated"][rows].astype(bool) | storage.arrays["truncated"][rows].astype(bool)
        last = torch.as_tensor(done, device=self.device)
        if n:
            last[-1] = True  # the newest row ends the newest (completed) episode
        self._set(torch.cat([self.carried, obs]), torch.cat([self.carried_last, last]))

    def _set(self, states: torch.Tensor, last: torch.Tensor) -> None:
        if not self.keep_carried and states.shape[0] > self.window:
            states, last = states[-self.window:], last[-self.window:]
        self.states = states
        self.keys = F.normalize(states, dim=-1)
        # index of the last row of each row's episode: the next row (inclusive) flagged as an episode's last
        idx = torch.arange(states.shape[0], device=self.device)
        marks = torch.where(last, idx, torch.full_like(idx, states.shape[0] - 1))
        self.episode_end = torch.flip(torch.cummin(torch.flip(marks, [0]), 0).values, [0])

    def carry(self) -> None:
        """Finetuning: keep the current states as the carried pretraining block."""
        self.carried = self.states.clone()
        last = torch.zeros(len(self), dtype=torch.bool, device=self.device)
        if len(self):
            last[self.episode_end.unique()] = True
        self.carried_last = last

    @torch.no_grad()
    def nearest(self, query: torch.Tensor, k: int) -> torch.Tensor:
        """Row indices ``(B, k)`` of the ``k`` memory keys most cosine-similar to each query."""
        q = F.normalize(query, dim=-1)
        out = [torch.topk(q[i:i + self.chunk] @ self.keys.T, k, dim=1).indices for i in range(0, len(q), self.chunk)]
        return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long, device=self.device)

    def continuations(self, hits: torch.Tensor, horizon: int) -> torch.Tensor:
        """States ``(B, k, D, d)``: each hit's next ``D`` states, repeating its episode's last state past its end."""
        offsets = torch.arange(horizon, device=self.device)
        rows = torch.minimum(hits[..., None] + offsets, self.episode_end[hits][..., None])
        return self.states[rows]

    def state_dict(self) -> dict[str, Any]:
        return {"carried": self.carried.cpu(), "carried_last": self.carried_last.cpu(), "states": self.states.cpu(),
                "episode_end": self.episode_end.cpu(), "keep_carried": self.keep_carried}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.carried = state["carried"].to(self.device)
        self.carried_last = state["carried_last"].to(self.device)
        self.keep_carried = bool(state["keep_carried"])
        self.states = state["states"].to(self.device)
        self.keys = F.normalize(self.states, dim=-1)
        self.episode_end = state["episode_end"].to(self.device)


# ----------------------------------------------------------------------------- query module
def _layer(in_dim: int, out_dim: int, std: float = math.sqrt(2.0)) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class QueryModule(nn.Module):
    """The query actor ``pi_query(q|s) = N(s + Delta(s), diag(exp(2 log_std)))`` and its value ``V(s)``
    (CleanRL's PPO network: 64-64 tanh MLPs, orthogonal init, state-independent log-std)."""

    def __init__(self, obs_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.delta = nn.Sequential(_layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                   _layer(hidden, obs_dim, 0.01))
        self.log_std = nn.Parameter(torch.zeros(obs_dim))
        self.value = nn.Sequential(_layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                   _layer(hidden, 1, 1.0))

    def dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(obs + self.delta(obs), self.log_std.exp().expand_as(obs))


# ----------------------------------------------------------------------------- aggregator
def _encoder(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class ReferenceAggregator(nn.Module):
    """``u = W_o MHA(QEnc(s), KEnc(E) + T, VEnc(E) + T)`` over the ``k * D`` retrieved states (module docstring)."""

    def __init__(self, obs_dim: int, dim: int, heads: int, horizon: int, hidden: int, kind: str,
                 n_agents: int = 4) -> None:
        super().__init__()
        if kind not in kernels.KINDS:
            raise ConfigError(f"unknown addon.attention_kind '{kind}'; choose one of {', '.join(kernels.KINDS)}")
        if dim % heads:
            raise ConfigError(f"addon.dim={dim} is not divisible by addon.heads={heads}")
        self.dim, self.heads, self.kind = dim, heads, kind
        self.q_enc, self.k_enc, self.v_enc = (_encoder(obs_dim, hidden, dim) for _ in range(3))
        self.time = nn.Parameter(torch.randn(horizon, dim) * 0.02)
        self.out = nn.Linear(dim, dim)
        self.agents = nn.Parameter(torch.randn(heads, n_agents, dim // heads) * 0.02) if kind == "agent" else None

    def forward(self, obs: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """``obs (B, d)``, ``refs (B, k, D, d)`` -> ``u (B, dim)``."""
        b, k, horizon, _ = refs.shape
        h, dh = self.heads, self.dim // self.heads
        q = self.q_enc(obs).view(b, 1, h, dh)
        keys = (self.k_enc(refs) + self.time).reshape(b, k * horizon, h, dh)
        values = (self.v_enc(refs) + self.time).reshape(b, k * horizon, h, dh)
        if self.kind == "softmax":
            o, _ = kernels.attention(q, keys, values, kind="softmax", causal=False)
            o = o[:, 0]
        else:  # kinds that need as many queries as keys: repeat the query and read one row
            q = q.expand(b, k * horizon, h, dh)
            extra: dict[str, Any] = {}
            if self.kind == "agent":
                extra["agents"] = self.agents
            if self.kind == "gla":  # causal by construction: no decay, the last row sees every token
                extra["log_decay"] = torch.zeros_like(keys)
            if self.kind == "slide":  # causal 1-D window: as wide as the tokens, the last row sees every token
                extra["window"] = k * horizon
            causal = self.kind in CAUSAL_KINDS
            o, _ = kernels.attention(q, keys, values, kind=self.kind, causal=causal, **extra)
            o = o[:, -1] if causal else o[:, 0]
        return self.out(o.reshape(b, self.dim))


# ----------------------------------------------------------------------------- the add-on
class SelfReference(URLBAddon):
    """The Self-Reference add-on (module docstring)."""

    name: ClassVar[str] = "self_reference"

    def __init__(self, observation_space: gym.Space, device: str | torch.device = "cpu", *, window: int = 100_000,
                 k: int = 10, horizon: int = 5, dim: int = 256, heads: int = 4, hidden_dim: int = 256,
                 attention_kind: str = "softmax", lr: float = 1e-4, source: str = "learned_query",
                 active: str = "both", bypass_fraction: float = 0.5, keep_pretrain_states: bool = True,
                 query_hidden: int = 64, query_lr: float = 3e-4, ppo_clip: float = 0.2, value_coef: float = 0.5,
                 entropy_coef: float = 0.0, identity_coef: float = 1.0, max_grad_norm: float = 0.5,
                 search_chunk: int = 256) -> None:
        if len(observation_space.shape) != 1:
            raise ConfigError(f"addon=self_reference retrieves raw states; the env observes shape "
                              f"{observation_space.shape} (use env.kwargs.obs_type=states)")
        if source not in SOURCES:
            raise ConfigError(f"unknown addon.source '{source}'; choose one of {', '.join(SOURCES)}")
        if active not in PHASES:
            raise ConfigError(f"unknown addon.active '{active}'; choose one of {', '.join(PHASES)}")
        if min(int(window), int(k), int(horizon)) < 1:
            raise ConfigError(f"addon.window, addon.k and addon.horizon must be >= 1, got {window}, {k}, {horizon}")
        self.device = torch.device(device)
        self.obs_dim = int(np.prod(observation_space.shape))
        self.k, self.horizon, self.context_dim = int(k), int(horizon), int(dim)
        self.source, self.active, self.bypass_fraction = source, active, float(bypass_fraction)
        self.ppo_clip, self.value_coef, self.entropy_coef = float(ppo_clip), float(value_coef), float(entropy_coef)
        self.identity_coef, self.max_grad_norm = float(identity_coef), float(max_grad_norm)
        self.memory = ReferenceMemory(self.obs_dim, int(window), self.device, search_chunk)
        self.memory.keep_carried = bool(keep_pretrain_states)
        self.aggregator = ReferenceAggregator(self.obs_dim, int(dim), int(heads), self.horizon, int(hidden_dim),
                                              attention_kind).to(self.device)
        self.aggregator_opt = adam(self.aggregator.parameters(), float(lr))
        self.query = QueryModule(self.obs_dim, int(query_hidden)).to(self.device)
        self.query_opt = adam(self.query.parameters(), float(query_lr), eps=1e-5)
        self.reward_free = True
        self.bypass = np.zeros(0, dtype=np.float32)  # per env: this episode bypasses the query module
        self.generator = torch.Generator(device="cpu").manual_seed(0)

    # ------------------------------------------------------------------ phases and meta
    def setup(self, reward_free: bool) -> None:
        self.reward_free = bool(reward_free)

    @property
    def enabled(self) -> bool:
        """``u`` is computed in this phase (else it is 0: ``active`` ablation, Table 1)."""
        return self.active == "both" or (self.active == "pretrain") == self.reward_free

    @property
    def uses_query(self) -> bool:
        return self.source == "learned_query" and self.enabled

    def meta_columns(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """The query used at acting time, its log-probability and whether it came from the query module."""
        return {"sr_query": ((self.obs_dim,), np.float32), "sr_logp": ((), np.float32),
                "sr_from_query": ((), np.float32), "sr_bypass": ((), np.float32)}

    def init_meta(self, episode_step: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n = len(episode_step)
        if len(self.bypass) != n:
            self.bypass = np.zeros(n, dtype=np.float32)
        starting = np.asarray(episode_step) == 0
        fraction = self.bypass_fraction if self.reward_free else 0.0
        draws = (rng.random(n) < fraction).astype(np.float32)
        self.bypass = np.where(starting, draws, self.bypass).astype(np.float32)
        return {"sr_bypass": self.bypass.copy(), "sr_query": np.zeros((n, self.obs_dim), np.float32),
                "sr_logp": np.zeros(n, np.float32), "sr_from_query": np.zeros(n, np.float32)}

    def eval_meta(self, n: int) -> dict[str, np.ndarray]:
        return {"sr_bypass": np.zeros(n, np.float32), "sr_query": np.zeros((n, self.obs_dim), np.float32),
                "sr_logp": np.zeros(n, np.float32), "sr_from_query": np.zeros(n, np.float32)}

    # ------------------------------------------------------------------ the reference vector
    def _references(self, query: torch.Tensor) -> torch.Tensor:
        if self.source == "random_states":
            hits = torch.randint(0, len(self.memory), (len(query), self.k), generator=self.generator)
            hits = hits.to(self.device)
        else:
            hits = self.memory.nearest(query, self.k)
        return self.memory.continuations(hits, self.horizon)

    def _context(self, obs: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if not self.enabled or (self.source != "noise" and len(self.memory) < self.k):
            return torch.zeros(len(obs), self.context_dim, device=self.device)  # off, or nothing to retrieve yet
        if self.source == "noise":
            return torch.randn(len(obs), self.context_dim, generator=self.generator).to(self.device)
        return self.aggregator(obs, self._references(query))

    @torch.no_grad()
    def act_context(self, obs: torch.Tensor, meta: dict[str, np.ndarray], deterministic: bool
                    ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """``u_t`` for acting and the query values stored with the transition."""
        n = len(obs)
        bypass = torch.as_tensor(np.asarray(meta.get("sr_bypass", np.zeros(n))), device=self.device) > 0.5
        query, logp = obs.clone(), torch.zeros(n, device=self.device)
        from_query = torch.zeros(n, device=self.device)
        if self.uses_query:
            dist = self.query.dist(obs)
            sample = dist.mean if deterministic else dist.sample()
            use = ~bypass
            query = torch.where(use[:, None], sample, obs)
            logp = torch.where(use, dist.log_prob(sample).sum(-1), logp)
            from_query = use.float()
        u = self._context(obs, query)
        updates = {"sr_query": query.cpu().numpy(), "sr_logp": logp.cpu().numpy(),
                   "sr_from_query": from_query.cpu().numpy()}
        return u, updates

    def batch_context(self, batch, obs: torch.Tensor, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``u`` of the batch's states (with gradient; the queries stored at acting time) and ``u'`` of the next
        states (no gradient; the query module's mean, or ``s'`` in bypassed episodes and without the module)."""
        with torch.no_grad():
            query = torch.where(batch.sr_from_query[:, None] > 0.5, batch.sr_query, obs)
            next_query = next_obs
            if self.uses_query:
                bypass = batch.sr_bypass[:, None] > 0.5
                next_query = torch.where(bypass, next_obs, self.query.dist(next_obs).mean)
            u_next = self._context(next_obs, next_query)
        return self._context(obs, query), u_next

    def zero_grad(self) -> None:
        self.aggregator_opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.aggregator_opt.step()

    # ------------------------------------------------------------------ the query module's PPO step
    def update(self, batch, obs: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor
               ) -> dict[str, torch.Tensor]:
        """One PPO-clip step of the query actor and value on the replay minibatch plus the identity loss (our
        reading of Alg. 1: module docstring)."""
        if not self.uses_query:
            return {}
        rows = batch.sr_from_query > 0.5
        with torch.no_grad():
            target = reward + batch.discount * self.query.value(next_obs).squeeze(-1)
        value = self.query.value(obs).squeeze(-1)
        dist = self.query.dist(obs)
        advantage = (target - value).detach()
        weight = rows.float()
        count = weight.sum().clamp(min=1.0)
        mean = (advantage * weight).sum() / count
        std = (((advantage - mean) ** 2 * weight).sum() / count).sqrt()
        advantage = (advantage - mean) / (std + 1e-8)
        ratio = (dist.log_prob(batch.sr_query).sum(-1) - batch.sr_logp).exp()
        clipped = ratio.clamp(1 - self.ppo_clip, 1 + self.ppo_clip)
        policy_loss = -(torch.min(ratio * advantage, clipped * advantage) * weight).sum() / count
        value_loss = 0.5 * (((value - target) ** 2) * weight).sum() / count
        entropy = dist.entropy().sum(-1).mean()
        identity = self.query.delta(obs).square().sum(-1).mean()  # ||E[q] - s||^2
        loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy + self.identity_coef * identity
        self.query_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.query.parameters(), self.max_grad_norm)
        self.query_opt.step()
        return {"sr/query_policy_loss": policy_loss.detach(), "sr/query_value_loss": value_loss.detach(),
                "sr/identity_loss": identity.detach(), "sr/query_rows": weight.mean(),
                "sr/memory_size": float(len(self.memory))}

    def refresh(self, replay) -> None:
        self.memory.refresh(replay)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {"aggregator": self.aggregator.state_dict(), "aggregator_opt": self.aggregator_opt.state_dict(),
                "query": self.query.state_dict(), "query_opt": self.query_opt.state_dict(),
                "memory": self.memory.state_dict(), "bypass": self.bypass.copy(),
                "generator": self.generator.get_state(), "reward_free": self.reward_free}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.aggregator.load_state_dict(state["aggregator"])
        self.aggregator_opt.load_state_dict(state["aggregator_opt"])
        self.query.load_state_dict(state["query"])
        self.query_opt.load_state_dict(state["query_opt"])
        self.memory.load_state_dict(state["memory"])
        self.bypass = np.asarray(state["bypass"], dtype=np.float32)
        self.generator.set_state(state["generator"])

    def init_from_snapshot(self, state: dict[str, Any]) -> None:
        """Alg. 1's hand-off: the query actor/critic and the aggregator from pretraining (fresh optimisers), and the
        pretraining reference memory, carried and still appended to."""
        self.aggregator.load_state_dict(state["aggregator"])
        self.query.load_state_dict(state["query"])
        keep = self.memory.keep_carried
        self.memory.load_state_dict(state["memory"])
        self.memory.keep_carried = keep
        self.memory.carry()
