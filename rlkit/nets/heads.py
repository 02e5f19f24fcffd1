"""Distribution heads shared by the world models: symlog two-hot regression and straight-through
categorical latents with uniform mixing (DreamerV3, Hafner et al. 2023; STORM, Zhang et al. 2023).

Symlog two-hot (DreamerV3 eq. 9-11; STORM's reward and critic heads):

* ``symlog(x) = sign(x) log(1 + |x|)``, ``symexp(x) = sign(x) (exp(|x|) - 1)`` (inverse of each other);
* ``K`` bins ``b_0 < ... < b_{K-1}`` evenly spaced on ``[low, high]`` in symlog space;
* ``twohot(y)`` puts weight on the two bins around ``y' = clip(symlog(y), low, high)``:
  ``w_{k+1} = (y' - b_k) / (b_{k+1} - b_k)``, ``w_k = 1 - w_{k+1}``;
* loss ``CE = -twohot(y)^T log softmax(logits)``; decoded value ``symexp(softmax(logits)^T b)``.

Straight-through categorical (DreamerV3 "unimix"; STORM's latent), over the last axis of ``C`` classes:

* ``unimix_logits(l) = log((1 - u) softmax(l) + u / C)`` (``u = 0.01``);
* ``straight_through_sample(l) = onehot(sample) + p - sg(p)``, ``p = softmax(l)``: the forward value is
  the one-hot sample and the gradient is that of ``p`` (Bengio et al. 2013);
* ``categorical_kl(q, p) = sum_c q_c (log q_c - log p_c)`` per variable;
* ``sample_categorical(l)``: indices by Gumbel-max, ``argmax(l - log(-log u))``, ``u ~ U(0, 1)``.

Everything here computes in float32 (bfloat16 inputs are promoted) or in float64 for float64 inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "full_precision",
    "symlog",
    "symexp",
    "TwoHotSymlog",
    "unimix_logits",
    "straight_through_sample",
    "sample_categorical",
    "categorical_kl",
]


def full_precision(x: Tensor) -> Tensor:
    """``x`` as float32, or unchanged when it is float64: the bfloat16 outputs of an autocast region (and integer
    inputs) go to float32 for the losses and distributions, and a model run in float64 (the fidelity checks in
    ``bench/fidelity``) stays in float64."""
    return x if x.dtype == torch.float64 else x.float()


def symlog(x: Tensor) -> Tensor:
    """``sign(x) log(1 + |x|)``."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """``sign(x) (exp(|x|) - 1)``, the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHotSymlog(nn.Module):
    """Symlog two-hot encoding over ``num_bins`` bins evenly spaced on ``[low, high]`` (module doc).

    The bins are a non-persistent buffer: they follow ``.to(device)`` and stay out of checkpoints.
    """

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        if num_bins < 2 or not high > low:
            raise ValueError(f"two-hot needs num_bins >= 2 and high > low, got {num_bins}, [{low}, {high}]")
        self.num_bins, self.low, self.high = int(num_bins), float(low), float(high)
        self.register_buffer("bins", torch.linspace(low, high, num_bins), persistent=False)

    def _position(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """Lower bin index ``k`` (int64) and upper weight ``w_{k+1}`` of ``twohot(target)``."""
        y = symlog(full_precision(target)).clamp(self.low, self.high)
        pos = (y - self.low) * ((self.num_bins - 1) / (self.high - self.low))
        lower = pos.floor().clamp(0, self.num_bins - 2)
        return lower.long(), pos - lower

    def encode(self, target: Tensor) -> Tensor:
        """``twohot(symlog(target))``: probabilities of shape ``target.shape + (num_bins,)``."""
        lower, w = self._position(target)
        probs = torch.zeros(*target.shape, self.num_bins, device=target.device)
        probs.scatter_(-1, lower[..., None], (1.0 - w)[..., None])
        probs.scatter_add_(-1, (lower + 1)[..., None], w[..., None])
        return probs

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-element cross-entropy ``-twohot(symlog(target))^T log softmax(logits)`` (no reduction)."""
        logp = F.log_softmax(full_precision(logits), dim=-1)
        lower, w = self._position(target)
        lo = logp.gather(-1, lower[..., None])[..., 0]
        hi = logp.gather(-1, (lower + 1)[..., None])[..., 0]
        return -((1.0 - w) * lo + w * hi)

    def decode(self, logits: Tensor) -> Tensor:
        """``symexp(softmax(logits)^T bins)`` (float32)."""
        probs = F.softmax(full_precision(logits), dim=-1)
        return symexp(probs @ self.bins.to(probs.dtype))

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, low={self.low}, high={self.high}"


def unimix_logits(logits: Tensor, mix: float = 0.01) -> Tensor:
    """``log((1 - mix) softmax(logits) + mix / C)`` over the last axis (``mix = 0``: log-softmax)."""
    if mix <= 0:
        return F.log_softmax(full_precision(logits), dim=-1)
    probs = (1.0 - mix) * F.softmax(full_precision(logits), dim=-1) + mix / logits.shape[-1]
    return torch.log(probs)


def sample_categorical(logits: Tensor) -> Tensor:
    """Indices drawn from ``Categorical(softmax(logits))`` over the last axis, by Gumbel-max:
    ``argmax(l + g)``, ``g = -log(-log u)``, ``u ~ U(0, 1)`` (exact and vectorised)."""
    logits = full_precision(logits)
    u = torch.rand_like(logits).clamp_(min=torch.finfo(logits.dtype).tiny)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def straight_through_sample(logits: Tensor) -> Tensor:
    """One-hot sample of ``Categorical(logits)`` (last axis) with the straight-through gradient of the
    probabilities: ``onehot + p - sg(p)``."""
    logits = full_precision(logits)
    probs = F.softmax(logits, dim=-1)
    index = sample_categorical(logits)
    onehot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
    return onehot + probs - probs.detach()


def categorical_kl(q_logits: Tensor, p_logits: Tensor) -> Tensor:
    """``KL(q || p) = sum_c q_c (log q_c - log p_c)`` over the last axis (normalised log-probs inside)."""
    log_q = F.log_softmax(full_precision(q_logits), dim=-1)
    log_p = F.log_softmax(full_precision(p_logits), dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)
