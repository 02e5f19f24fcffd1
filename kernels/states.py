"""Rollout state of one attention layer, one small dataclass per family of kinds.

Layout conventions (fla's): tokens are [B, T, H, D]; recurrent states are
[B, H, d_k, d_v] in float32 (fla's convention) whatever the dtype of q, k, v (float64 inputs,
used by the tests, keep float64 states).

States are *linear* values: pass the state returned by a call to the next call, and do not extend the
same state twice along two branches. ``KVCache`` writes new keys in place into a preallocated buffer
(amortised O(1) append; a true K/V cache, unlike STORM's released code), so two branches extended from one cache would
overwrite each other's newest entries; call ``clone()`` first when branching. When autograd records
the append (grad mode on and an input requires grad) the cache grows out of place instead, so that
tensors saved for backward are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

__all__ = [
    "KVCache",
    "LinearState",
    "AgentState",
    "GLAState",
    "SlideState",
    "AttentionState",
    "conv_cache_zeros",
    "acc_dtype",
]


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation / recurrent-state dtype for inputs of ``dtype``: float64 stays, all else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _records_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def conv_cache_zeros(batch: int, kernel: int, heads: int, dim: int, device, dtype) -> Tensor | None:
    """The last (kernel - 1) value rows a causal depthwise convolution needs; zeros = left padding."""
    if kernel <= 1:
        return None
    return torch.zeros(batch, kernel - 1, heads, dim, device=device, dtype=dtype)


@dataclass
class KVCache:
    """KV cache of one softmax-attention layer.

    ``k``: [B, capacity, H, d_k], ``v``: [B, capacity, H, d_v]; the first ``length`` positions are valid.
    """

    k: Tensor
    v: Tensor
    length: int = 0

    @classmethod
    def empty(
        cls,
        batch: int,
        heads: int,
        dim_k: int,
        dim_v: int,
        capacity: int,
        *,
        device=None,
        dtype=torch.float32,
    ) -> KVCache:
        capacity = max(int(capacity), 1)
        return cls(
            torch.zeros(batch, capacity, heads, dim_k, device=device, dtype=dtype),
            torch.zeros(batch, capacity, heads, dim_v, device=device, dtype=dtype),
            0,
        )

    @property
    def capacity(self) -> int:
        return self.k.shape[1]

    @property
    def position(self) -> int:
        """Number of tokens seen so far (the absolute position of the next token)."""
        return self.length

    def keys(self) -> Tensor:
        return self.k[:, : self.length]

    def values(self) -> Tensor:
        return self.v[:, : self.length]

    def append(self, k_new: Tensor, v_new: Tensor) -> KVCache:
        """Return the cache extended by ``k_new, v_new`` ([B, T, H, D]).

        In place into spare capacity (doubling it when full) unless autograd records the write.
        """
        n = k_new.shape[1]
        end = self.length + n
        if _records_grad(k_new, v_new, self.k, self.v):
            k = torch.cat([self.keys(), k_new.to(self.k.dtype)], dim=1)
            v = torch.cat([self.values(), v_new.to(self.v.dtype)], dim=1)
            return KVCache(k, v, end)
        k_buf, v_buf = self.k, self.v
        if end > self.capacity:
            new_cap = max(end, 2 * self.capacity)
            k_buf = k_buf.new_zeros((k_buf.shape[0], new_cap, *k_buf.shape[2:]))
            v_buf = v_buf.new_zeros((v_buf.shape[0], new_cap, *v_buf.shape[2:]))
            k_buf[:, : self.length] = self.keys()
            v_buf[:, : self.length] = self.values()
        k_buf[:, self.length : end] = k_new
        v_buf[:, self.length : end] = v_new
        return KVCache(k_buf, v_buf, end)

    def clone(self) -> KVCache:
        return KVCache(self.k.clone(), self.v.clone(), self.length)

    def detach(self) -> KVCache:
        return KVCache(self.k.detach(), self.v.detach(), self.length)


class _RecurrentState:
    """What the recurrent states share: the token counter as position, and tensor-wise clone/detach."""

    count: int

    @property
    def position(self) -> int:
        return self.count

    def clone(self):
        return _map_tensors(self, Tensor.clone)

    def detach(self):
        return _map_tensors(self, Tensor.detach)


@dataclass
class LinearState(_RecurrentState):
    """Recurrent state of ``focused_linear`` and ``inline`` (their causal recurrent forms, derived).

    ``S`` = sum_j phi(k_j)^T v_j [B, H, d_k, d_v]; ``z`` = sum_j phi(k_j) [B, H, d_k];
    ``u`` = sum_j v_j [B, H, d_v] (InLine only, else None); ``count`` = tokens seen;
    ``conv`` = the last (K_c - 1) values [B, K_c - 1, H, d_v] for the causal local convolution, or None.
    """

    S: Tensor
    z: Tensor
    u: Tensor | None = None
    count: int = 0
    conv: Tensor | None = None

    @classmethod
    def zeros(
        cls,
        batch: int,
        heads: int,
        dim_k: int,
        dim_v: int,
        *,
        with_sum_v: bool = False,
        conv_kernel: int = 0,
        device=None,
        dtype=torch.float32,
    ) -> LinearState:
        f32 = dict(device=device, dtype=acc_dtype(dtype))
        return cls(
            torch.zeros(batch, heads, dim_k, dim_v, **f32),
            torch.zeros(batch, heads, dim_k, **f32),
            torch.zeros(batch, heads, dim_v, **f32) if with_sum_v else None,
            0,
            conv_cache_zeros(batch, conv_kernel, heads, dim_v, device, dtype),
        )


@dataclass
class AgentState(_RecurrentState):
    """Online-softmax state of causal agent attention (derived causal form), per batch, head and agent.

    ``m``: running max [B, H, n]; ``l``: running denominator [B, H, n]; ``acc``: running numerator
    [B, H, n, d_v]; all float32; ``count`` = tokens seen; ``conv`` as in :class:`LinearState`.
    """

    m: Tensor
    l: Tensor
    acc: Tensor
    count: int = 0
    conv: Tensor | None = None

    @classmethod
    def zeros(
        cls,
        batch: int,
        heads: int,
        n_agents: int,
        dim_v: int,
        *,
        conv_kernel: int = 0,
        device=None,
        dtype=torch.float32,
    ) -> AgentState:
        f32 = dict(device=device, dtype=acc_dtype(dtype))
        return cls(
            torch.full((batch, heads, n_agents), float("-inf"), **f32),
            torch.zeros(batch, heads, n_agents, **f32),
            torch.zeros(batch, heads, n_agents, dim_v, **f32),
            0,
            conv_cache_zeros(batch, conv_kernel, heads, dim_v, device, dtype),
        )


@dataclass
class GLAState(_RecurrentState):
    """Recurrent state of gated linear attention (Yang et al. ICML 2024): ``S`` [B, H, d_k, d_v] float32."""

    S: Tensor
    count: int = 0

    @classmethod
    def zeros(
        cls,
        batch: int,
        heads: int,
        dim_k: int,
        dim_v: int,
        *,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> GLAState:
        return cls(torch.zeros(batch, heads, dim_k, dim_v, device=device, dtype=acc_dtype(dtype)), 0)


@dataclass
class SlideState(_RecurrentState):
    """Rollout state of causal slide attention (Slide-Transformer, Pan et al. CVPR 2023, Sec. 3.3, our causal
    1-D form): ring buffers of the last ``window - 1`` projected keys and values.

    ``k``: [B, window - 1, H, d_k], ``v``: [B, window - 1, H, d_v] (raw projections, before the deformed
    shift, which is recomputed from them); position p lives in slot p % (window - 1); ``count`` = tokens
    seen. Constant size whatever the rollout length. Writes go in place unless autograd records them.
    """

    k: Tensor
    v: Tensor
    count: int = 0

    @classmethod
    def zeros(
        cls,
        batch: int,
        heads: int,
        dim_k: int,
        dim_v: int,
        window: int,
        *,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> SlideState:
        n = max(int(window) - 1, 0)
        return cls(
            torch.zeros(batch, n, heads, dim_k, device=device, dtype=dtype),
            torch.zeros(batch, n, heads, dim_v, device=device, dtype=dtype),
            0,
        )

    @property
    def window(self) -> int:
        return self.k.shape[1] + 1

    def history(self) -> tuple[Tensor, Tensor]:
        """The cached keys and values in time order: [B, min(count, window - 1), H, D] each."""
        size = self.k.shape[1]
        n = min(self.count, size)
        if n == 0:
            return self.k[:, :0], self.v[:, :0]
        slots = torch.arange(self.count - n, self.count, device=self.k.device) % size
        return self.k.index_select(1, slots), self.v.index_select(1, slots)

    def push(self, k_new: Tensor, v_new: Tensor) -> SlideState:
        """The state after the T tokens ``k_new, v_new`` [B, T, H, D]: only the last window - 1 are kept."""
        size, T = self.k.shape[1], k_new.shape[1]
        m = min(T, size)
        if m == 0:
            return SlideState(self.k, self.v, self.count + T)
        slots = torch.arange(self.count + T - m, self.count + T, device=self.k.device) % size
        kn, vn = k_new[:, T - m :].to(self.k.dtype), v_new[:, T - m :].to(self.v.dtype)
        if _records_grad(k_new, v_new, self.k, self.v):
            return SlideState(self.k.index_copy(1, slots, kn), self.v.index_copy(1, slots, vn), self.count + T)
        self.k.index_copy_(1, slots, kn)
        self.v.index_copy_(1, slots, vn)
        return SlideState(self.k, self.v, self.count + T)


AttentionState = KVCache | LinearState | AgentState | GLAState | SlideState


def _map_tensors(state, fn):
    changes = {name: fn(val) for name, val in vars(state).items() if isinstance(val, Tensor)}
    return replace(state, **changes)
