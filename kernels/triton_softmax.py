"""Triton softmax attention: fused causal forward/backward (online softmax, tiled) and one-token decode.

Design: FlashAttention-2 (Dao 2023) as in the Triton fused-attention tutorial, adapted to short sequences:
* [B, T, H, D] layout read through strides (no transposes; last dim contiguous), any T (every load is
  masked), head dims padded to a power of two >= 16, d_k may differ from d_v.
* Queries are the LAST Tq positions of a key sequence of length Tk (offset = Tk - Tq): the causal mask is
  aligned lower-right, so one kernel serves training (Tq = Tk) and a chunk appended to a KV cache.
* Staged causal loop: key tiles left of the band run without the causal compare; tiles on the band are
  masked; tiles right of it are never visited. Masked scores are -1e6 (finite: no inf - inf NaN).
* Scale folded with log2(e), exp2 throughout; fp32 running max / denominator / accumulator; the
  log-sum-exp (base 2) is stored for the backward pass.
* Optional sigmoid output gate fused into the epilogue: o = (acc / l) * sigmoid(g). Backward: with
  O' = O * s and dO' the incoming gradient, Delta = rowsum(O dO) = rowsum(O' dO') (the gate cancels),
  dO = dO' * s and dg = dO' * O' * (1 - s): one small pre-pass kernel computes all three.
* Backward: a dK/dV kernel per key tile (looping over the query tiles that see it) and a dQ kernel per
  query tile, both recomputing P from the stored LSE (FlashAttention-2).

Attention-probability dropout is not implemented here; the dispatcher falls back to SDPA for it.
Under TRITON_INTERPRET=1 each kernel runs with one 16x16 tile configuration.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._triton_util import dot_precision, next_pow2, pick_configs

LOG2E = 1.4426950408889634

__all__ = ["flash_attention", "decode_attention"]


def _tile_configs() -> list:
    raw = [(16, 16, 2, 1), (64, 64, 4, 3), (128, 64, 8, 3), (64, 32, 4, 4), (32, 32, 4, 3), (128, 32, 8, 4)]
    return pick_configs(
        [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in raw]
    )


def _decode_configs() -> list:
    return pick_configs([triton.Config({"BLOCK_N": n}, num_warps=w) for n, w in [(16, 1), (64, 4), (128, 4)]])


# ----------------------------------------------------------------------------------------------- forward


@triton.jit
def _fwd_inner(
    acc,
    l_i,
    m_i,
    q,
    k_base,
    v_base,
    stride_kt,
    stride_vt,
    offs_m_abs,
    offs_dk,
    offs_dv,
    lo,
    hi,
    Tk,
    DK,
    DV,
    qk_scale,
    BLOCK_N: tl.constexpr,
    MASK_CAUSAL: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kmask = offs_n < Tk
        kT = tl.load(
            k_base + offs_n[None, :] * stride_kt + offs_dk[:, None],
            mask=kmask[None, :] & (offs_dk[:, None] < DK),
            other=0.0,
        )
        s = tl.dot(q, kT, input_precision=IN_PREC) * qk_scale
        valid = kmask[None, :]
        if MASK_CAUSAL:
            valid = valid & (offs_n[None, :] <= offs_m_abs[:, None])
        s = tl.where(valid, s, -1.0e6)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            v_base + offs_n[:, None] * stride_vt + offs_dv[None, :],
            mask=kmask[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        )
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=IN_PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.autotune(configs=_tile_configs(), key=["T_BUCKET", "BLOCK_DK", "BLOCK_DV", "CAUSAL"])
@triton.jit
def _attn_fwd(
    Q,
    K,
    V,
    G,
    O,
    LSE,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    svb,
    svt,
    svh,
    sgb,
    sgt,
    sgh,
    sgd,
    sob,
    sot,
    soh,
    H,
    Tq,
    Tk,
    q_offset,
    qk_scale,
    DK,
    DV,
    T_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_GATE: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    m0 = start_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    rmask = offs_m < Tq
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_dk[None, :],
        mask=rmask[:, None] & (offs_dk[None, :] < DK),
        other=0.0,
    )
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    offs_m_abs = offs_m + q_offset
    if CAUSAL:
        band = ((m0 + q_offset + 1) // BLOCK_N) * BLOCK_N  # key tiles below `band` are fully visible
        hi = tl.minimum(Tk, m0 + BLOCK_M + q_offset)
        acc, l_i, m_i = _fwd_inner(
            acc,
            l_i,
            m_i,
            q,
            k_base,
            v_base,
            skt,
            svt,
            offs_m_abs,
            offs_dk,
            offs_dv,
            0,
            band,
            Tk,
            DK,
            DV,
            qk_scale,
            BLOCK_N,
            False,
            IN_PREC,
        )
        acc, l_i, m_i = _fwd_inner(
            acc,
            l_i,
            m_i,
            q,
            k_base,
            v_base,
            skt,
            svt,
            offs_m_abs,
            offs_dk,
            offs_dv,
            band,
            hi,
            Tk,
            DK,
            DV,
            qk_scale,
            BLOCK_N,
            True,
            IN_PREC,
        )
    else:
        acc, l_i, m_i = _fwd_inner(
            acc,
            l_i,
            m_i,
            q,
            k_base,
            v_base,
            skt,
            svt,
            offs_m_abs,
            offs_dk,
            offs_dv,
            0,
            Tk,
            Tk,
            DK,
            DV,
            qk_scale,
            BLOCK_N,
            False,
            IN_PREC,
        )
    o = acc / l_i[:, None]
    omask = rmask[:, None] & (offs_dv[None, :] < DV)
    if HAS_GATE:
        g = tl.load(
            G + b * sgb + h * sgh + offs_m[:, None] * sgt + offs_dv[None, :] * sgd, mask=omask, other=0.0
        ).to(tl.float32)
        o = o * tl.sigmoid(g)
    tl.store(
        O + b * sob + h * soh + offs_m[:, None] * sot + offs_dv[None, :], o.to(O.dtype.element_ty), mask=omask
    )
    tl.store(LSE + bh * Tq + offs_m, m_i + tl.math.log2(l_i), mask=rmask)


# ---------------------------------------------------------------------------------------------- backward


@triton.jit
def _attn_bwd_pre(
    O,
    DO,
    G,
    DOG,
    DG,
    DELTA,
    sob,
    sot,
    soh,
    sdb,
    sdt,
    sdh,
    sgb,
    sgt,
    sgh,
    sgd,
    H,
    Tq,
    DV,
    BLOCK_M: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    HAS_GATE: tl.constexpr,
):
    """Delta = rowsum(O' dO'); with a gate also dO = dO' s and dg = dO' O' (1 - s) (s = sigmoid(g))."""
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask = (offs_m[:, None] < Tq) & (offs_dv[None, :] < DV)
    o = tl.load(O + b * sob + h * soh + offs_m[:, None] * sot + offs_dv[None, :], mask=mask, other=0.0)
    do_off = b * sdb + h * sdh + offs_m[:, None] * sdt + offs_dv[None, :]
    do = tl.load(DO + do_off, mask=mask, other=0.0).to(tl.float32)
    o = o.to(tl.float32)
    tl.store(DELTA + bh * Tq + offs_m, tl.sum(o * do, 1), mask=offs_m < Tq)
    if HAS_GATE:
        g = tl.load(
            G + b * sgb + h * sgh + offs_m[:, None] * sgt + offs_dv[None, :] * sgd, mask=mask, other=0.0
        ).to(tl.float32)
        s = tl.sigmoid(g)
        tl.store(DOG + do_off, (do * s).to(DOG.dtype.element_ty), mask=mask)
        tl.store(DG + do_off, do * o * (1.0 - s), mask=mask)


@triton.jit
def _bwd_dkdv_inner(
    dk,
    dv,
    k,
    v,
    q_base,
    do_base,
    LSE_row,
    DELTA_row,
    sqt,
    sdt,
    offs_n,
    offs_dk,
    offs_dv,
    lo,
    hi,
    Tq,
    Tk,
    q_offset,
    DK,
    DV,
    qk_scale,
    BLOCK_M: tl.constexpr,
    MASK_CAUSAL: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        rmask = offs_m < Tq
        q = tl.load(
            q_base + offs_m[:, None] * sqt + offs_dk[None, :],
            mask=rmask[:, None] & (offs_dk[None, :] < DK),
            other=0.0,
        )
        do = tl.load(
            do_base + offs_m[:, None] * sdt + offs_dv[None, :],
            mask=rmask[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        )
        lse = tl.load(LSE_row + offs_m, mask=rmask, other=0.0)
        delta = tl.load(DELTA_row + offs_m, mask=rmask, other=0.0)
        sT = tl.dot(k, tl.trans(q), input_precision=IN_PREC) * qk_scale  # [BLOCK_N, BLOCK_M]
        pT = tl.math.exp2(sT - lse[None, :])
        valid = rmask[None, :] & (offs_n[:, None] < Tk)
        if MASK_CAUSAL:
            valid = valid & (offs_n[:, None] <= offs_m[None, :] + q_offset)
        pT = tl.where(valid, pT, 0.0)
        dv += tl.dot(pT.to(do.dtype), do, input_precision=IN_PREC)
        dpT = tl.dot(v, tl.trans(do), input_precision=IN_PREC)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(q.dtype), q, input_precision=IN_PREC)
    return dk, dv


@triton.autotune(configs=_tile_configs(), key=["T_BUCKET", "BLOCK_DK", "BLOCK_DV", "CAUSAL"])
@triton.jit
def _attn_bwd_dkdv(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DKo,
    DVo,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    svb,
    svt,
    svh,
    sdb,
    sdt,
    sdh,
    H,
    Tq,
    Tk,
    q_offset,
    sm_scale,
    qk_scale,
    DK,
    DV,
    T_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    start_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    n0 = start_n * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    nmask = offs_n < Tk
    k = tl.load(
        K + b * skb + h * skh + offs_n[:, None] * skt + offs_dk[None, :],
        mask=nmask[:, None] & (offs_dk[None, :] < DK),
        other=0.0,
    )
    v = tl.load(
        V + b * svb + h * svh + offs_n[:, None] * svt + offs_dv[None, :],
        mask=nmask[:, None] & (offs_dv[None, :] < DV),
        other=0.0,
    )
    dk = tl.zeros([BLOCK_N, BLOCK_DK], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    q_base = Q + b * sqb + h * sqh
    do_base = DO + b * sdb + h * sdh
    LSE_row = LSE + bh * Tq
    DELTA_row = DELTA + bh * Tq
    end = tl.cdiv(Tq, BLOCK_M) * BLOCK_M
    if CAUSAL:
        # query i sees key j iff j <= i + q_offset; rows >= n0 + BLOCK_N - 1 - q_offset see the whole tile
        lo = (tl.maximum(n0 - q_offset, 0) // BLOCK_M) * BLOCK_M
        band_end = tl.cdiv(tl.maximum(n0 + BLOCK_N - 1 - q_offset, 0), BLOCK_M) * BLOCK_M
        mid = tl.minimum(tl.maximum(band_end, lo), end)
        dk, dv = _bwd_dkdv_inner(
            dk,
            dv,
            k,
            v,
            q_base,
            do_base,
            LSE_row,
            DELTA_row,
            sqt,
            sdt,
            offs_n,
            offs_dk,
            offs_dv,
            lo,
            mid,
            Tq,
            Tk,
            q_offset,
            DK,
            DV,
            qk_scale,
            BLOCK_M,
            True,
            IN_PREC,
        )
        dk, dv = _bwd_dkdv_inner(
            dk,
            dv,
            k,
            v,
            q_base,
            do_base,
            LSE_row,
            DELTA_row,
            sqt,
            sdt,
            offs_n,
            offs_dk,
            offs_dv,
            mid,
            end,
            Tq,
            Tk,
            q_offset,
            DK,
            DV,
            qk_scale,
            BLOCK_M,
            False,
            IN_PREC,
        )
    else:
        dk, dv = _bwd_dkdv_inner(
            dk,
            dv,
            k,
            v,
            q_base,
            do_base,
            LSE_row,
            DELTA_row,
            sqt,
            sdt,
            offs_n,
            offs_dk,
            offs_dv,
            0,
            end,
            Tq,
            Tk,
            q_offset,
            DK,
            DV,
            qk_scale,
            BLOCK_M,
            False,
            IN_PREC,
        )
    dk = dk * sm_scale
    tl.store(
        DKo + b * skb + h * skh + offs_n[:, None] * skt + offs_dk[None, :],
        dk.to(DKo.dtype.element_ty),
        mask=nmask[:, None] & (offs_dk[None, :] < DK),
    )
    tl.store(
        DVo + b * svb + h * svh + offs_n[:, None] * svt + offs_dv[None, :],
        dv.to(DVo.dtype.element_ty),
        mask=nmask[:, None] & (offs_dv[None, :] < DV),
    )


@triton.jit
def _bwd_dq_inner(
    dq,
    q,
    do,
    lse,
    delta,
    k_base,
    v_base,
    skt,
    svt,
    offs_m_abs,
    offs_dk,
    offs_dv,
    lo,
    hi,
    Tk,
    DK,
    DV,
    qk_scale,
    BLOCK_N: tl.constexpr,
    MASK_CAUSAL: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kmask = offs_n < Tk
        k = tl.load(
            k_base + offs_n[:, None] * skt + offs_dk[None, :],
            mask=kmask[:, None] & (offs_dk[None, :] < DK),
            other=0.0,
        )
        v = tl.load(
            v_base + offs_n[:, None] * svt + offs_dv[None, :],
            mask=kmask[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        )
        s = tl.dot(q, tl.trans(k), input_precision=IN_PREC) * qk_scale
        p = tl.math.exp2(s - lse[:, None])
        valid = kmask[None, :]
        if MASK_CAUSAL:
            valid = valid & (offs_n[None, :] <= offs_m_abs[:, None])
        p = tl.where(valid, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=IN_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=IN_PREC)
    return dq


@triton.autotune(configs=_tile_configs(), key=["T_BUCKET", "BLOCK_DK", "BLOCK_DV", "CAUSAL"])
@triton.jit
def _attn_bwd_dq(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQo,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    svb,
    svt,
    svh,
    sdb,
    sdt,
    sdh,
    H,
    Tq,
    Tk,
    q_offset,
    sm_scale,
    qk_scale,
    DK,
    DV,
    T_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    m0 = start_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    rmask = offs_m < Tq
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_dk[None, :],
        mask=rmask[:, None] & (offs_dk[None, :] < DK),
        other=0.0,
    )
    do = tl.load(
        DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_dv[None, :],
        mask=rmask[:, None] & (offs_dv[None, :] < DV),
        other=0.0,
    )
    lse = tl.load(LSE + bh * Tq + offs_m, mask=rmask, other=0.0)
    delta = tl.load(DELTA + bh * Tq + offs_m, mask=rmask, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_DK], dtype=tl.float32)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    offs_m_abs = offs_m + q_offset
    if CAUSAL:
        band = ((m0 + q_offset + 1) // BLOCK_N) * BLOCK_N
        hi = tl.minimum(Tk, m0 + BLOCK_M + q_offset)
        dq = _bwd_dq_inner(
            dq,
            q,
            do,
            lse,
            delta,
            k_base,
            v_base,
            skt,
            svt,
            offs_m_abs,
            offs_dk,
            offs_dv,
            0,
            band,
            Tk,
            DK,
            DV,
            qk_scale,
            BLOCK_N,
            False,
            IN_PREC,
        )
        dq = _bwd_dq_inner(
            dq,
            q,
            do,
            lse,
            delta,
            k_base,
            v_base,
            skt,
            svt,
            offs_m_abs,
            offs_dk,
            offs_dv,
            band,
            hi,
            Tk,
            DK,
            DV,
            qk_scale,
            BLOCK_N,
            True,
            IN_PREC,
        )
    else:
        dq = _bwd_dq_inner(
            dq,
            q,
            do,
            lse,
            delta,
            k_base,
            v_base,
            skt,
            svt,
            offs_m_abs,
            offs_dk,
            offs_dv,
            0,
            Tk,
            Tk,
            DK,
            DV,
            qk_scale,
            BLOCK_N,
            False,
            IN_PREC,
        )
    dq = dq * sm_scale
    tl.store(
        DQo + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_dk[None, :],
        dq.to(DQo.dtype.element_ty),
        mask=rmask[:, None] & (offs_dk[None, :] < DK),
    )


# ------------------------------------------------------------------------------------------------ decode


@triton.autotune(configs=_decode_configs(), key=["L_BUCKET", "BLOCK_DK", "BLOCK_DV"])
@triton.jit
def _attn_decode(
    Q,
    K,
    V,
    G,
    O,
    sqb,
    sqh,
    skb,
    skt,
    skh,
    svb,
    svt,
    svh,
    sgb,
    sgh,
    sgd,
    sob,
    soh,
    H,
    L,
    qk_scale,
    DK,
    DV,
    L_BUCKET,
    BLOCK_N: tl.constexpr,
    BLOCK_DK: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    HAS_GATE: tl.constexpr,
):
    """One query token per (batch, head) against L cached keys: online softmax over key tiles, no mask."""
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = tl.load(Q + b * sqb + h * sqh + offs_dk, mask=offs_dk < DK, other=0.0).to(tl.float32)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    m_i = tl.zeros([1], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([1], dtype=tl.float32)
    acc = tl.zeros([BLOCK_DV], dtype=tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kmask = offs_n < L
        k = tl.load(
            k_base + offs_n[:, None] * skt + offs_dk[None, :],
            mask=kmask[:, None] & (offs_dk[None, :] < DK),
            other=0.0,
        ).to(tl.float32)
        s = tl.sum(k * q[None, :], 1) * qk_scale
        s = tl.where(kmask, s, -1.0e6)
        m_new = tl.maximum(m_i, tl.max(s, 0))
        p = tl.math.exp2(s - m_new)
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        v = tl.load(
            v_base + offs_n[:, None] * svt + offs_dv[None, :],
            mask=kmask[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        ).to(tl.float32)
        acc = acc * alpha + tl.sum(p[:, None] * v, 0)
        m_i = m_new
    o = acc / l_i
    if HAS_GATE:
        g = tl.load(G + b * sgb + h * sgh + offs_dv * sgd, mask=offs_dv < DV, other=0.0).to(tl.float32)
        o = o * tl.sigmoid(g)
    tl.store(O + b * sob + h * soh + offs_dv, o.to(O.dtype.element_ty), mask=offs_dv < DV)


# -------------------------------------------------------------------------------------------- host side


def _last_contiguous(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _gate_strides(gate: Tensor | None, ndim: int) -> tuple[int, ...]:
    if gate is None:
        return (0,) * ndim
    return tuple(gate.stride())


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, gate: Tensor | None, causal: bool, sm_scale: float):
        B, Tq, H, DK = q.shape
        Tk, DV = k.shape[1], v.shape[-1]
        o = torch.empty(B, Tq, H, DV, device=q.device, dtype=q.dtype)
        lse = torch.empty(B, H, Tq, device=q.device, dtype=torch.float32)
        bdk, bdv = next_pow2(DK), next_pow2(DV)
        g = gate if gate is not None else o  # dummy pointer when there is no gate

        def grid(meta):
            return (triton.cdiv(Tq, meta["BLOCK_M"]), B * H)

        _attn_fwd[grid](
            q,
            k,
            v,
            g,
            o,
            lse,
            q.stride(0),
            q.stride(1),
            q.stride(2),
            k.stride(0),
            k.stride(1),
            k.stride(2),
            v.stride(0),
            v.stride(1),
            v.stride(2),
            *_gate_strides(gate, 4),
            o.stride(0),
            o.stride(1),
            o.stride(2),
            H,
            Tq,
            Tk,
            Tk - Tq,
            sm_scale * LOG2E,
            DK,
            DV,
            next_pow2(Tk),
            BLOCK_DK=bdk,
            BLOCK_DV=bdv,
            CAUSAL=causal,
            HAS_GATE=gate is not None,
            IN_PREC=dot_precision(q.dtype),
        )
        ctx.save_for_backward(q, k, v, o, lse, gate)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return o

    @staticmethod
    def backward(ctx, do: Tensor):
        q, k, v, o, lse, gate = ctx.saved_tensors
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # gradients share these strides
        B, Tq, H, DK = q.shape
        Tk, DV = k.shape[1], v.shape[-1]
        bdk, bdv = next_pow2(DK), next_pow2(DV)
        do = do.contiguous()  # DOG and DG below are written with do's strides
        delta = torch.empty(B, H, Tq, device=q.device, dtype=torch.float32)
        dgate = None
        if gate is not None:
            do_eff = torch.empty(B, Tq, H, DV, device=q.device, dtype=do.dtype)
            dg = torch.empty(B, Tq, H, DV, device=q.device, dtype=torch.float32)
        else:
            do_eff, dg = do, delta
        pre_block = 16
        _attn_bwd_pre[(triton.cdiv(Tq, pre_block), B * H)](
            o,
            do,
            gate if gate is not None else o,
            do_eff,
            dg,
            delta,
            o.stride(0),
            o.stride(1),
            o.stride(2),
            do.stride(0),
            do.stride(1),
            do.stride(2),
            *_gate_strides(gate, 4),
            H,
            Tq,
            DV,
            BLOCK_M=pre_block,
            BLOCK_DV=bdv,
            HAS_GATE=gate is not None,
        )
        if gate is not None:
            dgate = dg.to(gate.dtype)
        common = (H, Tq, Tk, Tk - Tq, ctx.sm_scale, ctx.sm_scale * LOG2E, DK, DV, next_pow2(Tk))
        strides = (
            q.stride(0),
            q.stride(1),
            q.stride(2),
            k.stride(0),
            k.stride(1),
            k.stride(2),
            v.stride(0),
            v.stride(1),
            v.stride(2),
            do_eff.stride(0),
            do_eff.stride(1),
            do_eff.stride(2),
        )
        meta = dict(BLOCK_DK=bdk, BLOCK_DV=bdv, CAUSAL=ctx.causal, IN_PREC=dot_precision(q.dtype))
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _attn_bwd_dkdv[lambda m: (triton.cdiv(Tk, m["BLOCK_N"]), B * H)](
            q, k, v, do_eff, lse, delta, dk, dv, *strides, *common, **meta
        )
        _attn_bwd_dq[lambda m: (triton.cdiv(Tq, m["BLOCK_M"]), B * H)](
            q, k, v, do_eff, lse, delta, dq, *strides, *common, **meta
        )
        return dq, dk, dv, dgate, None, None


def _expand_gate(gate: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    """Gate logits [B, T, H], [B, T, H, 1] or [B, T, H, d_v] -> a broadcast view of shape [B, T, H, d_v]."""
    if gate is None:
        return None
    if gate.dim() == len(shape) - 1:
        gate = gate.unsqueeze(-1)
    return gate.expand(shape)


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
    gate: Tensor | None = None,
) -> Tensor:
    """Fused (gated) softmax attention; q [B, Tq, H, d_k] are the last Tq of Tk >= Tq key positions.

    Differentiable in q, k, v and gate. k, v may be strided views (e.g. a KV-cache prefix).
    """
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if causal and k.shape[1] < q.shape[1]:
        raise ValueError("causal attention needs at least as many keys as queries")
    q, k, v = _last_contiguous(q), _last_contiguous(k), _last_contiguous(v)
    sm_scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    g = _expand_gate(gate, (*q.shape[:3], v.shape[-1]))
    return _FlashAttention.apply(q, k, v, g, causal, sm_scale)


def decode_attention(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None, gate: Tensor | None = None
) -> Tensor:
    """One new query per (batch, head) against all L cached keys (no mask; forward only).

    q [B, H, d_k] (or [B, 1, H, d_k]); k, v [B, L, H, d] (a cache prefix view). Returns [B, H, d_v].
    """
    if q.dim() == 4:
        q = q[:, 0]
    B, H, DK = q.shape
    L, DV = k.shape[1], v.shape[-1]
    q, k, v = _last_contiguous(q), _last_contiguous(k), _last_contiguous(v)
    o = torch.empty(B, H, DV, device=q.device, dtype=q.dtype)
    g = None
    if gate is not None:
        g = gate.reshape(B, H, -1)
        g = g.expand(B, H, DV)
    sm_scale = DK**-0.5 if scale is None else float(scale)
    gs = (0, 0, 0) if g is None else tuple(g.stride())
    _attn_decode[(B * H,)](
        q,
        k,
        v,
        g if g is not None else o,
        o,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        *gs,
        o.stride(0),
        o.stride(1),
        H,
        L,
        sm_scale * LOG2E,
        DK,
        DV,
        next_pow2(L),
        BLOCK_DK=next_pow2(DK),
        BLOCK_DV=next_pow2(DV),
        HAS_GATE=g is not None,
    )
    return o
