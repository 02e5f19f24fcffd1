"""Multi-layer perceptrons, stacked ensembles and target-network updates.

``layernorm=True`` places LayerNorm (learnable scale and bias) after every hidden Linear layer and
before its activation, never on the output layer: the SEEM fix (Yue et al. 2023; as in the
authors' released TD3 code) that bounds Q-value divergence.

An ensemble of ``E`` MLPs (twin critics, REDQ-style ensembles) is one module whose Linear layers hold
``(E, in, out)`` weights and run as one batched matrix multiply, instead of ``E`` sequential forwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "mish": nn.Mish,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation '{name}'; choose one of {sorted(ACTIVATIONS)}") from None


class MLP(nn.Sequential):
    """``in -> [Linear -> (LayerNorm) -> act -> (Dropout)] * len(hidden) -> Linear -> out``."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str = "relu",
                 layernorm: bool = False, dropout: float = 0.0, output_scale: float | None = None) -> None:
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
            layers.append(nn.Linear(prev, width))
            if layernorm:
                layers.append(nn.LayerNorm(width))
            layers.append(_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        last = nn.Linear(prev, out_dim)
        if output_scale is not None:
            with torch.no_grad():
                last.weight.mul_(output_scale)
                last.bias.mul_(output_scale)
        layers.append(last)
        super().__init__(*layers)


class EnsembleLinear(nn.Module):
    """``E`` independent Linear layers evaluated as one batched matmul: ``(E, B, in) -> (E, B, out)``.

    Each member is initialised like ``nn.Linear`` (uniform in ``±1/sqrt(in)`` for weight and bias), so an
    ensemble of one matches a plain layer in distribution.
    """

    def __init__(self, in_dim: int, out_dim: int, ensemble_size: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.ensemble_size = in_dim, out_dim, ensemble_size
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # the same input for every member
            x = x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"in={self.in_dim}, out={self.out_dim}, ensemble={self.ensemble_size}"


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the feature axis with a separate scale and bias per ensemble member."""

    def __init__(self, dim: int, ensemble_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return x * self.weight + self.bias


#: above this many activation elements per layer (``E * rows * width``, 8 MiB of fp32) the stacked
#: ``baddbmm`` loses to one ``addmm`` per member on the CPU (measured on a 2-core EPYC, 3x256 critics,
#: forward + backward: E=2 at 7936 rows, CQL's penalty batch, 0.75x the time per member; E=10 at 1024-4096
#: rows 0.75-0.84x; equal or slower below, where the one batched call saves E-1 kernel launches).
PER_MEMBER_ELEMENTS = 1 << 21
#: ... and each member's rows run in chunks of at most this many activation elements (1 MiB of fp32; 1024
#: rows at width 256): the activations then stay in cache between a layer and its ReLU, and the allocator
#: reuses their blocks instead of faulting in fresh pages (CQL's penalty batch: 0.77x the time unchunked).
PER_MEMBER_CHUNK_ELEMENTS = 1 << 18


class EnsembleMLP(nn.Sequential):
    """``E`` MLPs with identical shapes, stacked: ``(B, in)`` or ``(E, B, in)`` -> ``(E, B, out)``.

    Small batches run every layer as one batched matmul over the members; large ones (``E * B * width``
    above :data:`PER_MEMBER_ELEMENTS`, on the CPU) run each member's layers as plain ``addmm`` on the
    member's slices of the same stacked parameters, in row chunks (same function, different kernels).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, ensemble_size: int,
                 activation: str = "relu", layernorm: bool = False) -> None:
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
            layers.append(EnsembleLinear(prev, width, ensemble_size))
            if layernorm:
                layers.append(EnsembleLayerNorm(width, ensemble_size))
            layers.append(_activation(activation))
            prev = width
        layers.append(EnsembleLinear(prev, out_dim, ensemble_size))
        super().__init__(*layers)
        self.ensemble_size = ensemble_size
        self.max_width = max([in_dim, out_dim, *hidden])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.ensemble_size * x.shape[-2] * self.max_width > PER_MEMBER_ELEMENTS:
            return self.forward_per_member(x)
        return super().forward(x)

    def forward_per_member(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as :meth:`forward`, one ``addmm`` chain per member: ``(E, B, out)``."""
        inputs = x.unbind(0) if x.dim() == 3 else (x,) * self.ensemble_size
        # unbind once per tensor: one backward node stacks the members' gradients
        params = [(layer, layer.weight.unbind(0), layer.bias.unbind(0))
                  if isinstance(layer, EnsembleLinear | EnsembleLayerNorm) else (layer, None, None) for layer in self]
        chunk = max(1, PER_MEMBER_CHUNK_ELEMENTS // self.max_width)
        outputs = []
        for e, x_e in enumerate(inputs):
            parts = []
            for h in x_e.split(chunk):
                for layer, weight, bias in params:
                    if isinstance(layer, EnsembleLinear):
                        h = torch.addmm(bias[e], h, weight[e])
                    elif isinstance(layer, EnsembleLayerNorm):
                        h = torch.addcmul(bias[e], nn.functional.layer_norm(h, h.shape[-1:], eps=layer.eps),
                                          weight[e])
                    else:
                        h = layer(h)
                parts.append(h)
            outputs.append(torch.cat(parts) if len(parts) > 1 else parts[0])
        return torch.stack(outputs)


class QEnsemble(nn.Module):
    """``E`` state-action value functions ``Q_k(s, a)``, one batched forward: returns ``(E, B)``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256),
                 ensemble_size: int = 2, activation: str = "relu", layernorm: bool = False) -> None:
        super().__init__()
        self.net = EnsembleMLP(obs_dim + action_dim, hidden, 1, ensemble_size, activation, layernorm)
        self.ensemble_size = ensemble_size

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)

    def member(self, index: int) -> nn.Module:
        """A functional view of one member, ``(obs, act) -> (B,)`` (used by SEEM on ``Q1``)."""
        return _EnsembleMember(self, index)


class _EnsembleMember(nn.Module):
    def __init__(self, ensemble: QEnsemble, index: int) -> None:
        super().__init__()
        self.ensemble, self.index = ensemble, index

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        for layer in self.ensemble.net:
            if isinstance(layer, EnsembleLinear):
                x = x @ layer.weight[self.index] + layer.bias[self.index]
            elif isinstance(layer, EnsembleLayerNorm):
                x = nn.functional.layer_norm(x, x.shape[-1:], eps=layer.eps)
                x = x * layer.weight[self.index] + layer.bias[self.index]
            else:
                x = layer(x)
        return x.squeeze(-1)


@torch.no_grad()
def polyak_update(source: Iterable[torch.Tensor] | nn.Module, target: Iterable[torch.Tensor] | nn.Module,
                  tau: float) -> None:
    """``θ_target <- τ θ + (1 - τ) θ_target`` with one fused foreach call (no per-tensor Python loop)."""
    src = list(source.parameters()) if isinstance(source, nn.Module) else list(source)
    tgt = list(target.parameters()) if isinstance(target, nn.Module) else list(target)
    if tau == 1.0:
        torch._foreach_copy_(tgt, src)
    else:
        torch._foreach_lerp_(tgt, src, tau)
