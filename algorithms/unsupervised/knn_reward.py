"""Particle-based entropy reward (APT, Liu & Abbeel 2021) as CIC and MOSS compute it.

CIC (Laskin et al. 2022) and MOSS (Zhao et al. 2022), as in their released code.  For a batch of source embeddings
``e_i`` and target embeddings ``t_j``:

* ``D_ij = ||e_i - t_j||_2``; keep the ``k`` smallest ``D_ij`` of each row (the row's own target included,
  so with ``source = target`` one kept distance is 0);
* running statistics over **all** ``b k`` kept distances ``X`` of the batch (:class:`RunningMeanVar`):
  ``delta = mean(X) - M``, ``M <- M + delta B/(n+B)``, ``S <- (S n + Var(X) B + delta^2 n B/(n+B))/(n+B)``,
  ``n <- n + B``, starting from ``M = 0, S = 1, n = 1e-4``;
* normalise with the updated statistics: ``D~ = D/S`` (CIC, PyTorch) or ``D~ = (D - M)/S`` (MOSS, JAX,
  ``subtract_mean=True``).  ``S`` is a running *variance* used directly as the divisor (no square root) in
  both reference codebases -- replicated.  URLB's own ``PBE`` (APT, APS) divides by the running *mean*
  instead, ``D~ = D/M`` (``divisor="mean"``);
* ``r_i = log(1 + mean_k max(D~_ik - c, 0))`` with ``c = 0.0005`` (``average=True``), or only the k-th
  neighbour ``r_i = log(1 + max(D~_ik - c, 0))`` (``average=False``).

``Var(X)`` is the unbiased sample variance in the CIC PyTorch code (``torch.var``) and the biased one in the
MOSS JAX code (``jnp.var``): ``unbiased`` selects it.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanVar(nn.Module):
    """The reference codebases' ``RMS``: running mean ``M`` and variance ``S`` of scalars (Chan et al.'s
    parallel update); buffers, so the statistics travel with ``state_dict`` (exact resume, snapshots)."""

    def __init__(self, epsilon: float = 1e-4, unbiased: bool = True) -> None:
        super().__init__()
        self.unbiased = unbiased
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("var", torch.ones(1))
        self.register_buffer("count", torch.full((), float(epsilon), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge the values ``x`` (any shape, flattened) and return the updated ``(M, S)``."""
        x = x.reshape(-1).to(self.mean.dtype)
        batch = x.numel()
        n = self.count.to(x.dtype)
        delta = x.mean() - self.mean
        total = n + batch
        new_mean = self.mean + delta * batch / total
        new_var = (self.var * n + torch.var(x, correction=1 if self.unbiased else 0) * batch
                   + delta.square() * n * batch / total) / total
        self.mean.copy_(new_mean)
        self.var.copy_(new_var)
        self.count.add_(batch)
        return self.mean, self.var


class CandidateQueue(nn.Module):
    """A FIFO of ``size`` embeddings that a kNN reward measures distances to (ProtoRL's candidate queue, Yarats et
    al. 2021, Sec. 4.2); starts as zeros, as in URLB's code.  Buffers, so it travels with ``state_dict``; like
    :class:`RunningMeanVar` it is reward state that measurements restore."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("items", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, rows: torch.Tensor) -> None:
        """Write ``rows`` at the pointer (wrapping around) and advance it."""
        size = self.items.shape[0]
        if rows.shape[0] > size:
            raise ValueError(f"cannot push {rows.shape[0]} rows into a queue of {size}")
        index = (self.ptr + torch.arange(rows.shape[0], device=rows.device)) % size
        self.items[index] = rows.to(self.items.dtype)
        self.ptr.copy_((self.ptr + rows.shape[0]) % size)


def knn_distances(source: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` smallest Euclidean distances ``||e_i - t_j||`` of each source row, ascending: ``(b1, k)``."""
    if k > target.shape[0]:
        raise ValueError(f"knn_k={k} exceeds the batch of {target.shape[0]} targets; use a larger batch")
    distances = torch.cdist(source.unsqueeze(0), target.unsqueeze(0),
                            compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
    return distances.topk(k, dim=1, largest=False, sorted=True).values


@torch.no_grad()
def particle_entropy_reward(source: torch.Tensor, target: torch.Tensor, stats: RunningMeanVar | None,
                            k: int = 16, clip: float = 0.0005, average: bool = True,
                            subtract_mean: bool = False, divisor: str = "var") -> torch.Tensor:
    """APT's kNN particle-entropy reward of each source row, shape ``(b1,)`` (module docstring).

    ``stats=None`` skips the running normalisation (``knn_rms=False`` in the references).
    """
    kept = knn_distances(source, target, k)  # (b1, k)
    if not average:
        kept = kept[:, -1:]
    if stats is not None:
        mean, var = stats.update(kept)
        scale = mean if divisor == "mean" else var
        kept = (kept - mean) / scale if subtract_mean else kept / scale
    kept = torch.clamp_min(kept - clip, 0.0)
    return torch.log1p(kept.mean(dim=1))
