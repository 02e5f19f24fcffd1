"""Distributional value heads and targets: noisy layers, the C51 dueling Q head, the categorical projection.

* :class:`NoisyLinear` -- factorised Gaussian noisy layer (Fortunato et al. 2018, eq. 11):
  ``y = (mu_w + sigma_w * (f(e_out) f(e_in)^T)) x + mu_b + sigma_b * f(e_out)``, ``f(e) = sign(e) sqrt|e|``,
  ``mu ~ U(-1/sqrt(p), 1/sqrt(p))``, ``sigma_w = sigma0 / sqrt(p)``, ``sigma_b = sigma0 / sqrt(q)`` (``p`` inputs,
  ``q`` outputs, ``sigma0 = 0.5``: the bias scale of mila-iqia/spr's ``src/models.py`` ``NoisyLinear``). In eval
  mode (``module.eval()``) the noise is off and the layer is its mean (:meth:`NoisyLinear.mean` always is).
* :class:`C51Head` -- Q(s, .) as ``A`` categorical distributions over ``atoms`` fixed returns
  ``z_j = v_min + j (v_max - v_min) / (atoms - 1)`` (Bellemare et al. 2017). Dueling (Wang et al. 2016,
  eq. 9, on the logits as in Rainbow, Hessel et al. 2018, Sec. 3): ``l(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``,
  ``p(s, a) = softmax_j l(s, a)``; each stream is ``Linear(in, hidden) -> ReLU -> Linear(hidden, .)``
  (noisy or plain). :meth:`C51Head.expected` gives ``Q(s, a) = sum_j p_j z_j``. With dueling, the gradient that
  leaves the head into its input is scaled by ``1/sqrt(2)`` (Wang et al. 2016, Sec. 4.2; rlpyt's
  ``DQNDistributionalDuelingHeadModel``, which mila-iqia/spr uses). :meth:`C51Head.projection` is SPR's
  projection ``g`` (mila-iqia/spr ``QL1Head`` with ``q_l1_type = [value, advantage]``): the value and advantage
  streams' first layers concatenated (``2 hidden`` wide with dueling), mean weights, no ReLU.
* :func:`categorical_projection` -- the C51 target (Bellemare et al. 2017, Algorithm 1) for n-step returns:
  each atom moves to ``Tz_j = clip(R + Gamma z_j, v_min, v_max)`` (``Gamma = gamma^n (1 - done)``) and its
  mass ``p_j`` splits between the two neighbouring atoms in proportion to closeness.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.nets.heads import full_precision


class NoisyLinear(nn.Module):
    """Factorised Gaussian noisy linear layer (module docstring); :meth:`reset_noise` draws new noise."""

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 / math.sqrt(in_features)))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 / math.sqrt(out_features)))
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))
        self.reset_noise()

    @staticmethod
    def _f(x: Tensor) -> Tensor:
        return x.sign() * x.abs().sqrt()

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        self.eps_in.copy_(self._f(torch.randn(self.in_features, generator=generator)))
        self.eps_out.copy_(self._f(torch.randn(self.out_features, generator=generator)))

    def mean(self, x: Tensor) -> Tensor:
        """The layer without noise, ``mu_w x + mu_b``, in any mode."""
        return F.linear(x, self.weight_mu, self.bias_mu)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.mean(x)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}"


def _linear(in_dim: int, out_dim: int, noisy: bool, sigma0: float) -> nn.Module:
    return NoisyLinear(in_dim, out_dim, sigma0) if noisy else nn.Linear(in_dim, out_dim)


def _mean(layer: nn.Module, x: Tensor) -> Tensor:
    return layer.mean(x) if isinstance(layer, NoisyLinear) else layer(x)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


class C51Head(nn.Module):
    """Distributional (C51), optionally dueling and noisy, Q head: features ``[B, in]`` -> logits ``[B, A, atoms]``."""

    def __init__(self, in_dim: int, action_dim: int, atoms: int = 51, v_min: float = -10.0, v_max: float = 10.0,
                 hidden: int = 256, dueling: bool = True, noisy: bool = True, sigma0: float = 0.5) -> None:
        super().__init__()
        self.action_dim, self.atoms, self.dueling = action_dim, atoms, dueling
        self.grad_scale = 2.0 ** -0.5 if dueling else 1.0
        self.projection_dim = 2 * hidden if dueling else hidden
        self.register_buffer("support", torch.linspace(v_min, v_max, atoms), persistent=False)
        self.advantage_hidden = _linear(in_dim, hidden, noisy, sigma0)
        self.advantage_out = _linear(hidden, action_dim * atoms, noisy, sigma0)
        if dueling:
            self.value_hidden = _linear(in_dim, hidden, noisy, sigma0)
            self.value_out = _linear(hidden, atoms, noisy, sigma0)

    def projection(self, x: Tensor) -> Tensor:
        """SPR's ``g`` (module docstring): ``[value_hidden(x), advantage_hidden(x)]`` with mean weights, no ReLU."""
        adv = _mean(self.advantage_hidden, x)
        return torch.cat([_mean(self.value_hidden, x), adv], -1) if self.dueling else adv

    def forward(self, x: Tensor) -> Tensor:
        if self.grad_scale != 1.0:
            x = _ScaleGrad.apply(x, self.grad_scale)
        adv = self.advantage_out(F.relu(self.advantage_hidden(x))).view(-1, self.action_dim, self.atoms)
        if not self.dueling:
            return adv
        value = self.value_out(F.relu(self.value_hidden(x))).view(-1, 1, self.atoms)
        return value + adv - adv.mean(1, keepdim=True)

    def distribution(self, logits: Tensor) -> Tensor:
        """``p(s, a)`` over the atoms: softmax of the logits (at least float32)."""
        return F.softmax(full_precision(logits), dim=-1)

    def expected(self, logits: Tensor) -> Tensor:
        """``Q(s, a) = sum_j p_j z_j``: ``[..., A, atoms]`` -> ``[..., A]``."""
        return self.distribution(logits) @ self.support

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise(generator)


def categorical_projection(probs: Tensor, returns: Tensor, discounts: Tensor, support: Tensor) -> Tensor:
    """Project ``R + Gamma z`` (per row) onto ``support`` (module docstring); ``probs [B, atoms]`` -> ``[B, atoms]``.

    ``returns`` and ``discounts`` have shape ``[B]``; ``discounts`` already holds ``gamma^n (1 - done)``.
    """
    atoms = support.numel()
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (atoms - 1)
    tz = (returns[:, None] + discounts[:, None] * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    # an atom that lands exactly on a support point (lower == upper) keeps all its mass there
    lower_w = torch.where(lower == upper, torch.ones_like(b), upper.float() - b)
    upper_w = b - lower.float()
    out = torch.zeros_like(probs)
    out.scatter_add_(1, lower, probs * lower_w)
    out.scatter_add_(1, upper, probs * upper_w)
    return out
