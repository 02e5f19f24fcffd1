"""Triton causal slide attention (Pan et al., CVPR 2023, Sec. 3.2-3.3; our causal 1-D form): forward and backward.

One program per (batch * head, block of BLOCK_M queries) loops over the w offsets of the window with an
online softmax (running max, denominator, accumulator in float32): for query i the key of offset j is

* shift form (no deformed shift): row ``offset + i - j`` of the raw keys [B, offset + Tq, H, D]
  (``offset`` earlier positions from the rollout state come first), masked where that row is < 0;
* per-offset form (deformed keys computed outside, in PyTorch): element [i, j] of [B, Tq, w, H, D].

Scores scale * q . k + bias[h, j]; the log-sum-exp is stored for the backward pass. Backward
(FlashAttention-2 style recomputation of p from the LSE; Delta = rowsum(dO * O) precomputed):
a query kernel gives dq, the per-offset bias gradient (partial sums per program, reduced in PyTorch)
and, in the per-offset form, dK' and dV' directly (each [i, j] pair has its own key); in the shift form a
key kernel gives dk_r = sum_j ds_{r - offset + j, j} scale q_{r - offset + j} and dv_r likewise.
No tl.dot (the work per query is a w x d gather), so any head width and window run, also under
TRITON_INTERPRET=1; the sigmoid output gate is applied by the caller.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._triton_util import next_pow2

__all__ = ["slide_attention"]


@triton.jit
def _slide_fwd(
    Q, K, V, BIAS, O, LSE,
    sqb, sqt, sqh, skb, skt, skj, skh, svb, svt, svj, svh, sob, sot, soh,
    H, Tq, W, OFFSET, DK, DV, scale,
    SHIFT: tl.constexpr, HAS_BIAS: tl.constexpr, ZERO_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < Tq
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_dk[None, :],
        mask=row_ok[:, None] & (offs_dk[None, :] < DK),
        other=0.0,
    ).to(tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30  # finite "minus infinity": no inf - inf NaN
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    for j in range(0, W):
        exists = row_ok & (OFFSET + offs_m - j >= 0)
        if SHIFT:
            krow = OFFSET + offs_m - j
            ld = exists
        else:
            krow = offs_m
            ld = row_ok if ZERO_PAD else exists
        kk = tl.load(
            K + b * skb + h * skh + krow[:, None] * skt + j * skj + offs_dk[None, :],
            mask=ld[:, None] & (offs_dk[None, :] < DK),
            other=0.0,
        ).to(tl.float32)
        vv = tl.load(
            V + b * svb + h * svh + krow[:, None] * svt + j * svj + offs_dv[None, :],
            mask=ld[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        ).to(tl.float32)
        s = tl.sum(q * kk, axis=1) * scale
        if HAS_BIAS:
            s += tl.load(BIAS + h * W + j).to(tl.float32)
        ok = row_ok if ZERO_PAD else exists
        s = tl.where(ok, s, -1.0e30)
        m_new = tl.maximum(m_i, s)
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new)
        l_i = l_i * alpha + p
        acc = acc * alpha[:, None] + p[:, None] * vv
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(
        O + b * sob + h * soh + offs_m[:, None] * sot + offs_dv[None, :],
        o.to(O.dtype.element_ty),
        mask=row_ok[:, None] & (offs_dv[None, :] < DV),
    )
    tl.store(LSE + pid_bh * Tq + offs_m, m_i + tl.log(l_i), mask=row_ok)


@triton.jit
def _slide_bwd_q(
    Q, K, V, BIAS, DO, LSE, DELTA, DQ, DBIAS, DKW, DVW,
    sqb, sqt, sqh, skb, skt, skj, skh, svb, svt, svj, svh, sdob, sdot, sdoh,
    H, Tq, W, OFFSET, DK, DV, scale, N_M,
    SHIFT: tl.constexpr, HAS_BIAS: tl.constexpr, ZERO_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < Tq
    mk = row_ok[:, None] & (offs_dk[None, :] < DK)
    mv = row_ok[:, None] & (offs_dv[None, :] < DV)
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_dk[None, :], mask=mk, other=0.0).to(tl.float32)
    do = tl.load(DO + b * sdob + h * sdoh + offs_m[:, None] * sdot + offs_dv[None, :], mask=mv, other=0.0).to(
        tl.float32
    )
    lse = tl.load(LSE + pid_bh * Tq + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + pid_bh * Tq + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_DK], dtype=tl.float32)
    for j in range(0, W):
        exists = row_ok & (OFFSET + offs_m - j >= 0)
        if SHIFT:
            krow = OFFSET + offs_m - j
            ld = exists
        else:
            krow = offs_m
            ld = row_ok if ZERO_PAD else exists
        kk = tl.load(
            K + b * skb + h * skh + krow[:, None] * skt + j * skj + offs_dk[None, :],
            mask=ld[:, None] & (offs_dk[None, :] < DK),
            other=0.0,
        ).to(tl.float32)
        vv = tl.load(
            V + b * svb + h * svh + krow[:, None] * svt + j * svj + offs_dv[None, :],
            mask=ld[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        ).to(tl.float32)
        s = tl.sum(q * kk, axis=1) * scale
        if HAS_BIAS:
            s += tl.load(BIAS + h * W + j).to(tl.float32)
        ok = row_ok if ZERO_PAD else exists
        p = tl.where(ok, tl.exp(s - lse), 0.0)
        dp = tl.sum(do * vv, axis=1)
        ds = p * (dp - delta)
        dq += ds[:, None] * kk
        tl.store(DBIAS + (pid_bh * N_M + pid_m) * W + j, tl.sum(ds, axis=0))
        if not SHIFT:  # per-offset keys: this (i, j) pair owns its key and value
            base = b * skb + h * skh + offs_m[:, None] * skt + j * skj
            tl.store(DKW + base + offs_dk[None, :], ds[:, None] * q * scale, mask=mk)
            basev = b * svb + h * svh + offs_m[:, None] * svt + j * svj
            tl.store(DVW + basev + offs_dv[None, :], p[:, None] * do, mask=mv)
    tl.store(
        DQ + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_dk[None, :],
        dq * scale,
        mask=mk,
    )


@triton.jit
def _slide_bwd_kv(
    Q, K, V, BIAS, DO, LSE, DELTA, DK_, DV_,
    sqb, sqt, sqh, skb, skt, skh, svb, svt, svh, sdob, sdot, sdoh,
    H, Tq, Tk, W, OFFSET, DK, DV, scale,
    HAS_BIAS: tl.constexpr, ZERO_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_r = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    r_ok = offs_r < Tk
    mk = r_ok[:, None] & (offs_dk[None, :] < DK)
    mv = r_ok[:, None] & (offs_dv[None, :] < DV)
    kk = tl.load(K + b * skb + h * skh + offs_r[:, None] * skt + offs_dk[None, :], mask=mk, other=0.0).to(tl.float32)
    vv = tl.load(V + b * svb + h * svh + offs_r[:, None] * svt + offs_dv[None, :], mask=mv, other=0.0).to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_DK], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    for j in range(0, W):
        qi = offs_r - OFFSET + j  # the query that sees key row r at offset j
        q_ok = r_ok & (qi >= 0) & (qi < Tq)
        q = tl.load(
            Q + b * sqb + h * sqh + qi[:, None] * sqt + offs_dk[None, :],
            mask=q_ok[:, None] & (offs_dk[None, :] < DK),
            other=0.0,
        ).to(tl.float32)
        do = tl.load(
            DO + b * sdob + h * sdoh + qi[:, None] * sdot + offs_dv[None, :],
            mask=q_ok[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        ).to(tl.float32)
        lse = tl.load(LSE + pid_bh * Tq + qi, mask=q_ok, other=0.0)
        delta = tl.load(DELTA + pid_bh * Tq + qi, mask=q_ok, other=0.0)
        s = tl.sum(q * kk, axis=1) * scale
        if HAS_BIAS:
            s += tl.load(BIAS + h * W + j).to(tl.float32)
        p = tl.where(q_ok, tl.exp(s - lse), 0.0)
        dv += p[:, None] * do
        ds = p * (tl.sum(do * vv, axis=1) - delta)
        dk += ds[:, None] * q
    tl.store(DK_ + b * skb + h * skh + offs_r[:, None] * skt + offs_dk[None, :], dk * scale, mask=mk)
    tl.store(DV_ + b * svb + h * svh + offs_r[:, None] * svt + offs_dv[None, :], dv, mask=mv)


def _kv_strides(x: Tensor, per_offset: bool) -> tuple[int, int, int, int]:
    """(batch, time, offset, head) strides; offset stride 0 for raw keys."""
    if per_offset:
        return x.stride(0), x.stride(1), x.stride(2), x.stride(3)
    return x.stride(0), x.stride(1), 0, x.stride(2)


BLOCK_M = 16


class _SlideAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, window, scale, offset, zero_pad):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # dk, dv below share these strides
        per_offset = k.dim() == 5
        B, Tq, H, DK = q.shape
        DV = v.shape[-1]
        o = torch.empty(B, Tq, H, DV, device=q.device, dtype=v.dtype)
        lse = torch.empty(B * H, Tq, device=q.device, dtype=torch.float32)
        bias_arg = bias.contiguous() if bias is not None else q
        grid = (triton.cdiv(Tq, BLOCK_M), B * H)
        _slide_fwd[grid](
            q, k, v, bias_arg, o, lse,
            q.stride(0), q.stride(1), q.stride(2),
            *_kv_strides(k, per_offset), *_kv_strides(v, per_offset),
            o.stride(0), o.stride(1), o.stride(2),
            H, Tq, window, offset, DK, DV, scale,
            SHIFT=not per_offset, HAS_BIAS=bias is not None, ZERO_PAD=zero_pad,
            BLOCK_M=BLOCK_M, BLOCK_DK=next_pow2(DK), BLOCK_DV=next_pow2(DV),
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, bias, o, lse)
        ctx.cfg = (window, scale, offset, zero_pad)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, bias, o, lse = ctx.saved_tensors
        window, scale, offset, zero_pad = ctx.cfg
        do = do.contiguous()
        per_offset = k.dim() == 5
        B, Tq, H, DK = q.shape
        DV = v.shape[-1]
        delta = (o.float() * do.float()).sum(-1).permute(0, 2, 1).reshape(B * H, Tq).contiguous()
        n_m = triton.cdiv(Tq, BLOCK_M)
        dq = torch.empty(B, Tq, H, DK, device=q.device, dtype=torch.float32)
        dbias = torch.zeros(B * H, n_m, window, device=q.device, dtype=torch.float32)
        dk = torch.zeros(k.shape, device=k.device, dtype=torch.float32)
        dv = torch.zeros(v.shape, device=v.device, dtype=torch.float32)
        bias_arg = bias.contiguous() if bias is not None else q
        blocks = dict(BLOCK_DK=next_pow2(DK), BLOCK_DV=next_pow2(DV))
        flags = dict(HAS_BIAS=bias is not None, ZERO_PAD=zero_pad)
        _slide_bwd_q[(n_m, B * H)](
            q, k, v, bias_arg, do, lse, delta, dq, dbias, dk, dv,
            q.stride(0), q.stride(1), q.stride(2),
            *_kv_strides(k, per_offset), *_kv_strides(v, per_offset),
            do.stride(0), do.stride(1), do.stride(2),
            H, Tq, window, offset, DK, DV, scale, n_m,
            SHIFT=not per_offset, BLOCK_M=BLOCK_M, **flags, **blocks,
        )  # fmt: skip
        if not per_offset:
            Tk = k.shape[1]
            _slide_bwd_kv[(triton.cdiv(Tk, BLOCK_M), B * H)](
                q, k, v, bias_arg, do, lse, delta, dk, dv,
                q.stride(0), q.stride(1), q.stride(2),
                k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
                do.stride(0), do.stride(1), do.stride(2),
                H, Tq, Tk, window, offset, DK, DV, scale,
                BLOCK_N=BLOCK_M, **flags, **blocks,
            )  # fmt: skip
        dbias_out = None
        if bias is not None and ctx.needs_input_grad[3]:
            dbias_out = dbias.view(B, H, n_m, window).sum((0, 2)).to(bias.dtype)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbias_out, None, None, None, None


def slide_attention(
    q: Tensor,
    keys: Tensor,
    values: Tensor,
    *,
    window: int,
    scale: float,
    bias: Tensor | None = None,
    offset: int = 0,
    zero_pad: bool = False,
) -> Tensor:
    """Causal slide attention of queries q [B, Tq, H, d_k] (see the module docstring for the two key forms).

    Returns o [B, Tq, H, d_v] in the dtype of ``values``; differentiable in q, keys, values and bias.
    """
    return _SlideAttention.apply(q, keys, values, bias, int(window), float(scale), int(offset), bool(zero_pad))
