"""OPER / ODPR: offline (decoupled) prioritized resampling (Yue et al., arXiv 2306.05412).

A static priority ``p_i`` over the N dataset transitions defines an improved behaviour policy; any
policy-constrained offline algorithm then trains on it by *resampling* (indices drawn i.i.d. from ``p``)
or *reweighting* (uniform batches, loss weights ``w_i = N p_i``).  "Decoupled": only the policy terms see
the prioritized data, the critic keeps uniform batches (``decoupled: true`` in the sampler config;
the offline regime then passes the prioritized batch as ``batch.policy_batch``).

* **OPER-R** (released code): ``p_i ∝ (G_i - G_min) / (G_max - G_min) + p_base`` with ``G_i`` the
  undiscounted return of transition i's trajectory (raw rewards); ``p_base`` = 0.2 on AntMaze, 0 elsewhere.
* **OPER-A** (released code's weight generator): fit a double state-value network by TD on (re)sampled
  data for K rounds, score every transition with its TD advantage, turn advantages into multiplicative
  weights, then normalize them (shift, set std σ, floor ε).  Weights are cached per dataset + config hash.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.errors import ConfigError
from rlkit.nets import EnsembleMLP, polyak_update
from rlkit.optim import adam
from rlkit.utils import derive_seed

ANTMAZE_P_BASE = 0.2


# --------------------------------------------------------------------------------------------- OPER-R
def return_priorities(dataset, p_base: float = 0.0) -> np.ndarray:
    """Return-based probabilities ``p_i ∝ (G_i - G_min) / (G_max - G_min) + p_base`` (sum 1)."""
    returns = dataset.returns.astype(np.float64)
    spread = returns.max() - returns.min()
    score = (returns - returns.min()) / spread if spread > 0 else np.ones_like(returns)
    p = score + float(p_base)
    if p.sum() <= 0:
        raise ConfigError("all trajectories have the minimum return and p_base=0: OPER-R priorities are all "
                          "zero; set sampler.priorities.p_base > 0")
    return p / p.sum()


def _p_base_for(env_cfg, p_base: float | None) -> float:
    if p_base is not None:
        return float(p_base)
    family = (env_cfg or {}).get("family") if env_cfg is not None else None
    return ANTMAZE_P_BASE if family == "antmaze" else 0.0


def oper_r_priorities(dataset, p_base: float | None = None, env_cfg=None, **_: Any) -> np.ndarray:
    """OPER-R; ``p_base=None`` picks the released code's per-domain value (0.2 AntMaze, 0 otherwise)."""
    return return_priorities(dataset, _p_base_for(env_cfg, p_base))


# --------------------------------------------------------------------------------------------- normalisation
def normalize_priorities(weights: np.ndarray, std: float | None = 2.0, floor: float = 0.1,
                         ceiling: float | None = None) -> np.ndarray:
    """Spec 1.4, ``linear`` mode: ``w <- w - min w; p <- w / Σw``; with ``std = σ``:
    ``p <- 1/N + s (p - 1/N)`` where ``s = σ / (N std(p))`` (so ``N p`` has mean 1 and std σ), then the
    floor ``p <- max(p, ε/N)`` (and optional ceiling ``min(p, ε_max/N)``), renormalised."""
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    w = w - w.min()
    p = w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)
    if std is not None:
        spread = p.std()
        if spread > 0:
            p = 1.0 / n + (std / (n * spread)) * (p - 1.0 / n)
        p = np.maximum(p, floor / n)
        if ceiling is not None:
            p = np.minimum(p, ceiling / n)
    return p / p.sum()


# --------------------------------------------------------------------------------------------- OPER-A
def nstep_indices(dataset, nstep: int, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row i: n-step discounted reward sum within the episode, the row whose ``next_obs`` bootstraps,
    and ``γ^m (1 - terminal)`` for the m <= n steps actually taken (stops at episode ends)."""
    n_rows = dataset.size
    done = dataset.done_float
    ret = np.zeros(n_rows)
    last = np.arange(n_rows)
    alive = np.ones(n_rows, dtype=bool)
    disc = np.ones(n_rows)
    for k in range(nstep):
        idx = np.minimum(np.arange(n_rows) + k, n_rows - 1)
        ret += np.where(alive, disc * dataset.rewards[idx], 0.0)
        last = np.where(alive, idx, last)
        disc = np.where(alive, disc * gamma, disc)
        alive = alive & ~done[idx]
    bootstrap = disc * (1.0 - dataset.terminals[last])
    return ret.astype(np.float32), last, bootstrap.astype(np.float32)


class _ValueFitter:
    """Double V network fitted by TD on sampled data (OPER's released code): ``y = R^(n) + γ^n (1-d) min V̄(s_{+n})``."""

    def __init__(self, dataset, hidden, lr, gamma, nstep, tau, batch_size, reward_shift, device, seed):
        self.device = torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        obs = dataset.observations
        mean, std = dataset.observation_stats(eps=1e-3)
        self.obs = torch.as_tensor((obs - mean) / std, device=self.device)
        self.next_obs = torch.as_tensor((dataset.next_observations - mean) / std, device=self.device)
        shifted = copy.copy(dataset)
        shifted.rewards = dataset.rewards + reward_shift
        ret, last, boot = nstep_indices(shifted, nstep, gamma)
        self.ret = torch.as_tensor(ret, device=self.device)
        self.last = torch.as_tensor(last, device=self.device)
        self.boot = torch.as_tensor(boot, device=self.device)
        self.value = EnsembleMLP(obs.shape[1], hidden, 1, 2).to(self.device)
        self.target = copy.deepcopy(self.value).requires_grad_(False)
        self.lr, self.tau, self.batch_size = lr, tau, batch_size
        self.rng = np.random.default_rng(seed)
        del gen

    def v(self, net, x: torch.Tensor) -> torch.Tensor:
        return net(x).squeeze(-1).min(0).values

    def td_loss(self, idx: torch.Tensor, net=None) -> torch.Tensor:
        with torch.no_grad():
            y = self.ret[idx] + self.boot[idx] * self.v(self.target, self.next_obs[self.last[idx]])
        pred = (net or self.value)(self.obs[idx]).squeeze(-1)
        return (pred - y).pow(2).mean(-1).sum()

    def start_round(self, steps: int) -> None:
        """A round's fresh Adam and cosine learning rate over ``steps`` (V is not re-initialised)."""
        self.opt = adam(self.value.parameters(), self.lr)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(steps, 1), eta_min=0.0)

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One TD step on rows ``idx``, the LR schedule's step, then Polyak; returns the loss."""
        loss = self.td_loss(idx)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        polyak_update(self.value, self.target, self.tau)
        return loss.detach()

    def fit(self, probs: np.ndarray, steps: int, desc: str) -> list[float]:
        """:meth:`start_round`, then ``steps`` of :meth:`step` on batches ``i ~ probs``."""
        from tqdm import tqdm

        self.start_round(steps)
        cdf = np.cumsum(probs)
        cdf /= cdf[-1]
        losses = []
        for step in tqdm(range(steps), desc=desc, file=sys.stderr, mininterval=2.0, leave=False):
            idx = np.minimum(np.searchsorted(cdf, self.rng.random(self.batch_size), side="right"), len(cdf) - 1)
            loss = self.step(torch.as_tensor(idx, device=self.device))
            if step % max(steps // 20, 1) == 0:
                losses.append(loss)
        return [float(x) for x in losses]

    @torch.no_grad()
    def advantages(self, chunk: int = 65536) -> np.ndarray:
        """``A_i = R^(n)_i + γ^n (1-d) min V(s_{+n}) - min V(s_i)`` with the online nets, for all rows."""
        out = []
        for start in range(0, len(self.ret), chunk):
            idx = torch.arange(start, min(start + chunk, len(self.ret)), device=self.device)
            a = self.ret[idx] + self.boot[idx] * self.v(self.value, self.next_obs[self.last[idx]]) \
                - self.v(self.value, self.obs[idx])
            out.append(a.cpu().numpy())
        return np.concatenate(out).astype(np.float64)


def next_round_weights(weights: np.ndarray, advantages: np.ndarray) -> np.ndarray:
    """One OPER-A round (the released generator's ``main.py``): ``u = (A - min A) / mean(A - min A)``,
    ``w <- w ⊙ u``, renormalised to mean 1."""
    u = advantages - advantages.min()
    u = u / u.mean() if u.mean() > 0 else np.ones_like(u)
    w = weights * u
    return w / w.mean()


def _cache_key(dataset, params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for arr in (dataset.observations, dataset.actions, dataset.rewards, dataset.terminals, dataset.timeouts):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    from rlkit.data.sources import data_dir

    return data_dir() / "oper_weights"


def oper_a_weights(dataset, iterations: int = 5, first_steps: int = 1_000_000, later_steps: int = 1_000_000,
                   nstep: int = 1, seeds: int = 3, gamma: float = 0.99, batch_size: int = 256, lr: float = 3e-4,
                   hidden: tuple[int, ...] = (256, 256), tau: float = 0.005, reward_shift: float = 0.0,
                   device: str = "cpu", seed: int = 0, cache: bool = True) -> np.ndarray:
    """Raw OPER-A weights of every round, averaged over ``seeds`` fits: array ``(iterations, N)``, each row
    with mean 1.  Pseudo-steps (OPER's released generator), per seed::

        w <- 1; p <- uniform
        for k in 1..K:  fit V for T_k steps on batches i ~ p
                        A_i = TD advantage (online nets);  u = (A - min A) / mean(A - min A)
                        w <- w ⊙ u;  w <- w / mean(w);  p <- w / Σ w;  save w as round k

    Cached under ``$RLKIT_DATA/oper_weights/<hash>.npz`` keyed by the dataset contents and every parameter.
    """
    params = dict(iterations=iterations, first_steps=first_steps, later_steps=later_steps, nstep=nstep,
                  seeds=seeds, gamma=gamma, batch_size=batch_size, lr=lr, hidden=list(hidden), tau=tau,
                  reward_shift=reward_shift, seed=seed, seeding="derive_seed")
    path = cache_dir() / f"{_cache_key(dataset, params)}.npz"
    if cache and path.exists():
        print(f"rlkit: OPER-A weights from cache {path}", file=sys.stderr)
        return np.load(path)["weights"]
    n = dataset.size
    per_seed = np.zeros((seeds, iterations, n))
    for s in range(seeds):
        fitter = _ValueFitter(dataset, tuple(hidden), lr, gamma, nstep, tau, batch_size, reward_shift, device,
                              derive_seed(seed, f"oper-a value fit {s}"))
        w = np.ones(n)
        p = np.full(n, 1.0 / n)
        for k in range(iterations):
            steps = first_steps if k == 0 else later_steps
            fitter.fit(p, steps, desc=f"OPER-A seed {s + 1}/{seeds} round {k + 1}/{iterations}")
            w = next_round_weights(w, fitter.advantages())
            p = w / w.sum()
            per_seed[s, k] = w
    weights = per_seed.mean(axis=0)
    if cache:
        from rlkit.utils import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, weights=weights, params=json.dumps(params))
    return weights


def oper_a_priorities(dataset, iteration: int | None = None, std: float | None = 2.0, floor: float = 0.1,
                      ceiling: float | None = None, env_cfg=None, seed: int = 0, **fit: Any) -> np.ndarray:
    """OPER-A probabilities: the raw weights of round ``iteration`` (default: the last) normalised by
    :func:`normalize_priorities`.  AntMaze rewards are shifted by -1 before fitting V (as OPER's released code)."""
    family = env_cfg.get("family") if env_cfg is not None else None
    fit.setdefault("reward_shift", -1.0 if family == "antmaze" else 0.0)
    weights = oper_a_weights(dataset, **fit)
    k = weights.shape[0] if iteration is None else int(iteration)
    if not 1 <= k <= weights.shape[0]:
        raise ConfigError(f"OPER-A iteration {k} is out of range 1..{weights.shape[0]}")
    return normalize_priorities(weights[k - 1], std=std, floor=floor, ceiling=ceiling)


def entropy_ratio(p: np.ndarray) -> float:
    """Effective sample size of ``p`` as a fraction of N (1 = uniform): ``exp(H(p)) / N``."""
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()) / len(p))
