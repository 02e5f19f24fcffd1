"""Gated linear attention on CUDA: fla's kernels when installed, else our own fused recurrent kernel.

Own kernel (GLA's recurrent form, Yang et al. ICML 2024): per (batch, head, d_v slice) one program runs the recurrence
    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   o_t = scale q_t S_t
with S in fp32 registers. d_v is split into slices of at most 32 columns (the columns of S evolve
independently), so B*H*ceil(d_v/32) programs run in parallel.
Backward, same grid: a forward sweep recomputes S_t for dq_t = scale S_t do_t; a reverse sweep carries
dS (starting at dS_T): dS += scale q_t^T do_t; dk_t = dS v_t; dv_t = k_t dS; dS <- diag(exp(g_t)) dS.
dq, dk are summed over the d_v slices on the host. The gradient of the log decay needs no state
history: with b_t = cumsum(g), o depends on q_t e^{b_t} and k_j e^{-b_j}, so
    dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) + [t = T] sum_v (dS_T * S_T)
(the last term from S_T = diag(e^{b_T}) (...)); a reverse cumsum in PyTorch.

fla (``fla.ops.gla``): ``fused_recurrent_gla`` for T <= 64 (fla's own choice for short inputs)
and ``chunk_gla`` otherwise, with fp32 initial/final states in the same [B, H, d_k, d_v] layout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._triton_util import next_pow2

__all__ = ["gla_recurrent", "gla_fla", "fla_available"]

_BLOCK_V_MAX = 32


@triton.jit
def _gla_fwd(
    Q,
    K,
    V,
    G,
    O,
    S0,
    ST,
    sqb,
    sqt,
    sqh,
    svb,
    svt,
    svh,
    sob,
    sot,
    soh,
    H,
    T,
    DK,
    DV,
    scale,
    BLOCK_K: tl.constexpr,
    BLOCK_V: tl.constexpr,
    HAS_S0: tl.constexpr,
):
    bh = tl.program_id(0)
    iv = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = iv * BLOCK_V + tl.arange(0, BLOCK_V)
    kd = offs_k < DK
    vd = offs_v < DV
    s_off = bh * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    if HAS_S0:
        S = tl.load(S0 + s_off, mask=kd[:, None] & vd[None, :], other=0.0)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
    qk_base = b * sqb + h * sqh
    v_base = b * svb + h * svh
    for t in range(0, T):
        q = tl.load(Q + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        k = tl.load(K + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        g = tl.load(G + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        v = tl.load(V + v_base + t * svt + offs_v, mask=vd, other=0.0).to(tl.float32)
        S = S * tl.exp(g)[:, None] + k[:, None] * v[None, :]
        o = tl.sum(q[:, None] * S, 0) * scale
        tl.store(O + b * sob + h * soh + t * sot + offs_v, o.to(O.dtype.element_ty), mask=vd)
    tl.store(ST + s_off, S, mask=kd[:, None] & vd[None, :])


@triton.jit
def _gla_bwd(
    Q,
    K,
    V,
    G,
    DO,
    S0,
    DST,
    DQp,
    DKp,
    DVo,
    DS0,
    sqb,
    sqt,
    sqh,
    svb,
    svt,
    svh,
    sdb,
    sdt,
    sdh,
    spn,
    H,
    T,
    DK,
    DV,
    scale,
    BLOCK_K: tl.constexpr,
    BLOCK_V: tl.constexpr,
    HAS_S0: tl.constexpr,
):
    bh = tl.program_id(0)
    iv = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = iv * BLOCK_V + tl.arange(0, BLOCK_V)
    kd = offs_k < DK
    vd = offs_v < DV
    s_off = bh * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    smask = kd[:, None] & vd[None, :]
    if HAS_S0:
        S = tl.load(S0 + s_off, mask=smask, other=0.0)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
    qk_base = b * sqb + h * sqh
    v_base = b * svb + h * svh
    do_base = b * sdb + h * sdh
    part = iv * spn + qk_base  # partial dq/dk buffers are [NV, B, T, H, DK] with q's strides inside
    for t in range(0, T):
        k = tl.load(K + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        g = tl.load(G + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        v = tl.load(V + v_base + t * svt + offs_v, mask=vd, other=0.0).to(tl.float32)
        do = tl.load(DO + do_base + t * sdt + offs_v, mask=vd, other=0.0).to(tl.float32)
        S = S * tl.exp(g)[:, None] + k[:, None] * v[None, :]
        tl.store(DQp + part + t * sqt + offs_k, tl.sum(S * do[None, :], 1) * scale, mask=kd)
    dS = tl.load(DST + s_off, mask=smask, other=0.0)
    for i in range(0, T):
        t = T - 1 - i
        q = tl.load(Q + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        k = tl.load(K + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        g = tl.load(G + qk_base + t * sqt + offs_k, mask=kd, other=0.0).to(tl.float32)
        v = tl.load(V + v_base + t * svt + offs_v, mask=vd, other=0.0).to(tl.float32)
        do = tl.load(DO + do_base + t * sdt + offs_v, mask=vd, other=0.0).to(tl.float32)
        dS += (q * scale)[:, None] * do[None, :]
        tl.store(DKp + part + t * sqt + offs_k, tl.sum(dS * v[None, :], 1), mask=kd)
        tl.store(
            DVo + v_base + t * svt + offs_v, tl.sum(dS * k[:, None], 0).to(DVo.dtype.element_ty), mask=vd
        )
        dS = dS * tl.exp(g)[:, None]
    tl.store(DS0 + s_off, dS, mask=smask)


class _GLARecurrent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, g: Tensor, S0: Tensor | None, scale: float):
        B, T, H, DK = q.shape
        DV = v.shape[-1]
        o = torch.empty(B, T, H, DV, device=q.device, dtype=v.dtype)
        ST = torch.empty(B, H, DK, DV, device=q.device, dtype=torch.float32)
        bv = min(next_pow2(DV), _BLOCK_V_MAX)
        grid = (B * H, triton.cdiv(DV, bv))
        _gla_fwd[grid](
            q,
            k,
            v,
            g,
            o,
            S0 if S0 is not None else ST,
            ST,
            *q.stride()[:3],
            *v.stride()[:3],
            *o.stride()[:3],
            H,
            T,
            DK,
            DV,
            scale,
            BLOCK_K=next_pow2(DK),
            BLOCK_V=bv,
            HAS_S0=S0 is not None,
        )
        ctx.save_for_backward(q, k, v, g, S0, ST)
        ctx.scale = scale
        return o, ST

    @staticmethod
    def backward(ctx, do: Tensor, dST: Tensor):
        q, k, v, g, S0, ST = ctx.saved_tensors
        B, T, H, DK = q.shape
        DV = v.shape[-1]
        bv = min(next_pow2(DV), _BLOCK_V_MAX)
        nv = triton.cdiv(DV, bv)
        do, dST = do.contiguous(), dST.float().contiguous()
        dq_p = torch.empty(nv, *q.shape, device=q.device, dtype=torch.float32)
        dk_p = torch.empty(nv, *q.shape, device=q.device, dtype=torch.float32)
        dv = torch.empty_like(v)
        dS0 = torch.empty(B, H, DK, DV, device=q.device, dtype=torch.float32)
        _gla_bwd[(B * H, nv)](
            q,
            k,
            v,
            g,
            do,
            S0 if S0 is not None else ST,
            dST,
            dq_p,
            dk_p,
            dv,
            dS0,
            *q.stride()[:3],
            *v.stride()[:3],
            *do.stride()[:3],
            dq_p.stride(0),
            H,
            T,
            DK,
            DV,
            ctx.scale,
            BLOCK_K=next_pow2(DK),
            BLOCK_V=bv,
            HAS_S0=S0 is not None,
        )
        dq, dk = dq_p.sum(0), dk_p.sum(0)
        db = q.float() * dq - k.float() * dk  # dL/db_t, b = cumsum(g)
        db[:, -1] += (dST * ST).sum(-1)
        dg = db.flip(1).cumsum(1).flip(1)
        return (dq.to(q.dtype), dk.to(k.dtype), dv, dg.to(g.dtype), dS0 if S0 is not None else None, None)


def gla_recurrent(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, scale: float, S0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Own fused recurrent GLA kernel: returns (o [B, T, H, d_v] in v's dtype, S_T [B, H, d_k, d_v] fp32)."""
    if not (q.shape == k.shape == log_decay.shape):
        raise ValueError(f"q, k, log_decay must share a shape, got {q.shape}, {k.shape}, {log_decay.shape}")
    q, k, g = q.contiguous(), k.contiguous(), log_decay.contiguous()
    v = v.contiguous()
    if S0 is not None:
        S0 = S0.float().contiguous()
    return _GLARecurrent.apply(q, k, v, g, S0, float(scale))


def fla_available() -> bool:
    try:
        import fla.ops.gla  # noqa: F401
    except Exception:  # ImportError, or fla failing to initialise without a driver
        return False
    return True


def gla_fla(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, scale: float, S0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """GLA through fla: fused_recurrent_gla for T <= 64, chunk_gla otherwise. CUDA only."""
    from fla.ops.gla import chunk_gla, fused_recurrent_gla

    S0 = S0.float() if S0 is not None else None
    if q.shape[1] <= 64:
        o, ST = fused_recurrent_gla(
            q, k, v, gk=log_decay, scale=scale, initial_state=S0, output_final_state=True
        )
    else:
        o, ST = chunk_gla(q, k, v, log_decay, scale=scale, initial_state=S0, output_final_state=True)
    return o, ST
