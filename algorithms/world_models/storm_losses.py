"""STORM's loss terms and return utilities (Zhang et al. 2023; the authors' released code), as small pure
functions.

World model, batch B x T:

* ``reconstruction_loss``: ``(1/BT) sum_{b,t} sum_{c,h,w} (o_hat - o)^2`` (summed over pixels);
* reward / termination: two-hot CE and BCE-with-logits, both means over B x T (in ``storm.py``);
* ``kl_balance``: ``KL_t = sum_i KL(q_{t+1,i} || p_{t,i})`` for t = 0..T-2 (the posterior of the *next*
  frame against the prior the transformer produced at t);
  ``L_dyn = max(free, mean KL[sg(q) || p])``, ``L_rep = max(free, mean KL[q || sg(p)])``.
  STORM clips the batch-mean KL (``free_bits_mode="batch_mean"``, a quirk of its released code); DreamerV3 clips each
  step's KL before the mean (``"per_step"``).

Actor-critic (DreamerV3-style):

* ``lambda_returns``: ``G_L = V(s_L)``,
  ``G_t = r_t + gamma c_t [(1 - lambda) V(s_j) + lambda G_{t+1}]`` with ``c_t = 1 - d_t`` and
  ``j = t`` (STORM's released code, ``bootstrap="t"``) or ``j = t + 1`` (DreamerV3, ``"t+1"``);
* ``percentile``: the ``k``-th smallest element with ``k = floor(p N)`` (1-based, at least 1), as
  ``torch.kthvalue`` in the reference;
* :class:`ReturnNormalizer`: EMAs (decay 0.99) of the 5th and 95th percentiles of the returns,
  starting at 0 without bias correction (STORM's released code; ``debias=True`` divides by ``1 - decay^n``);
  scale ``max(floor, EMA95 - EMA5)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.nets.heads import categorical_kl, full_precision

FREE_BITS_MODES = ("batch_mean", "per_step")
BOOTSTRAP_MODES = ("t", "t+1")


def reconstruction_loss(obs_hat: Tensor, obs: Tensor) -> Tensor:
    """Squared error summed over the last three (pixel) axes, mean over the rest."""
    return (full_precision(obs_hat) - full_precision(obs)).pow(2).sum((-3, -2, -1)).mean()


def kl_balance(post_logits: Tensor, prior_logits: Tensor, free_bits: float = 1.0,
               mode: str = "batch_mean") -> tuple[Tensor, Tensor, Tensor]:
    """``(L_dyn, L_rep, mean KL)`` for posterior logits [B, T, K, C] and prior logits [B, T, K, C]
    (prior at t predicts the posterior at t + 1; see the module doc)."""
    q, p = post_logits[:, 1:], prior_logits[:, :-1]
    kl_dyn = categorical_kl(q.detach(), p).sum(-1)  # [B, T-1]: summed over the K variables
    kl_rep = categorical_kl(q, p.detach()).sum(-1)
    if mode == "batch_mean":
        dyn = kl_dyn.mean().clamp(min=free_bits)
        rep = kl_rep.mean().clamp(min=free_bits)
    elif mode == "per_step":
        dyn = kl_dyn.clamp(min=free_bits).mean()
        rep = kl_rep.clamp(min=free_bits).mean()
    else:
        raise ValueError(f"free_bits_mode must be one of {FREE_BITS_MODES}, got {mode!r}")
    return dyn, rep, kl_dyn.detach().mean()


def lambda_returns(rewards: Tensor, values: Tensor, continues: Tensor, gamma: float, lam: float,
                   bootstrap: str = "t") -> Tensor:
    """lambda-returns [B, L] from rewards [B, L], values [B, L+1] and continuation flags [B, L]."""
    if bootstrap not in BOOTSTRAP_MODES:
        raise ValueError(f"lambda_bootstrap must be one of {BOOTSTRAP_MODES}, got {bootstrap!r}")
    L = rewards.shape[1]
    mix = values[:, :-1] if bootstrap == "t" else values[:, 1:]
    discount = gamma * continues
    out = torch.empty_like(rewards)
    g = values[:, -1]
    for t in reversed(range(L)):
        g = rewards[:, t] + discount[:, t] * ((1.0 - lam) * mix[:, t] + lam * g)
        out[:, t] = g
    return out


def percentile(x: Tensor, p: float) -> Tensor:
    """The ``k``-th smallest element of ``x`` with ``k = max(1, floor(p N))`` (1-based)."""
    flat = full_precision(x.reshape(-1))
    k = max(1, int(p * flat.numel()))
    return flat.kthvalue(k).values


class ReturnNormalizer:
    """Percentile-range return scale with scalar EMAs held as tensors ``low``/``high`` (see module doc).

    The owner keeps the three tensors as attributes so that checkpoints include them.
    """

    def __init__(self, decay: float = 0.99, low_p: float = 0.05, high_p: float = 0.95, floor: float = 1.0,
                 debias: bool = False) -> None:
        self.decay, self.low_p, self.high_p, self.floor, self.debias = decay, low_p, high_p, floor, debias

    def update(self, returns: Tensor, ema: Tensor) -> Tensor:
        """Update ``ema`` = [low, high, updates] in place from ``returns``; return the scale."""
        new = torch.stack([percentile(returns, self.low_p), percentile(returns, self.high_p)])
        ema[:2].mul_(self.decay).add_((1.0 - self.decay) * new.detach())
        ema[2].add_(1.0)
        low, high = ema[0], ema[1]
        if self.debias:
            correction = 1.0 - self.decay ** ema[2]
            low, high = low / correction, high / correction
        return (high - low).clamp(min=self.floor)
