"""Triton chunked causal linear attention (forward + backward), the core of ``focused_linear`` and ``inline``.

Computes, per (batch, head), with feature-mapped queries/keys qf, kf and an initial state (S0, z0):
    num_t = qf_t (S0 + sum_{j<=t} kf_j^T v_j)      den_t = qf_t . (z0 + sum_{j<=t} kf_j)
plus the final state (S_T, z_T). FLatten divides num by den; InLine combines them with a running mean
of v (kernels/reference.py); those pointwise epilogues stay in PyTorch.

Algorithm (Lightning Attention-2, Qin et al. 2024, tiling without decay): one program per (b, h)
walks the chunks of BLOCK_T tokens in order with the state in registers (fp32):
    A = tril(Q K^T);  num = A V + Q S;  den = rowsum(A) + Q z;  S += K^T V;  z += colsum(K).
Backward, same program: a forward sweep recomputes S for dQ = dA K + dnum S^T + dden z^T with
dA = tril(dnum V^T + dden 1^T); a reverse sweep carries dS = dS_T + sum_later Q^T dnum and
dz = dz_T + sum_later Q^T dden, giving dK = dA^T Q + V dS^T + dz and dV = A^T dnum + K dS.
The chunk size follows fla's rule, min(64, max(16, next_pow2(T))), capped by ``chunk_size``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._triton_util import dot_precision, next_pow2

__all__ = ["causal_linear"]


@triton.jit
def _linear_fwd(
    Qf,
    Kf,
    V,
    S0,
    Z0,
    NUM,
    DEN,
    ST,
    ZT,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    svb,
    svt,
    svh,
    snb,
    snt,
    snh,
    sdb,
    sdt,
    sdh,
    H,
    T,
    DK,
    DV,
    BLOCK_T: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_V: tl.constexpr,
    HAS_S0: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    offs_t = tl.arange(0, BLOCK_T)
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = tl.arange(0, BLOCK_V)
    kd = offs_k < DK
    vd = offs_v < DV
    s_off = bh * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    if HAS_S0:
        S = tl.load(S0 + s_off, mask=kd[:, None] & vd[None, :], other=0.0)
        z = tl.load(Z0 + bh * DK + offs_k, mask=kd, other=0.0)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
        z = tl.zeros([BLOCK_K], dtype=tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    q_base = Qf + b * sqb + h * sqh
    k_base = Kf + b * skb + h * skh
    v_base = V + b * svb + h * svh
    for c0 in range(0, T, BLOCK_T):
        rows = c0 + offs_t
        rm = rows < T
        q = tl.load(q_base + rows[:, None] * sqt + offs_k[None, :], mask=rm[:, None] & kd[None, :], other=0.0)
        k = tl.load(k_base + rows[:, None] * skt + offs_k[None, :], mask=rm[:, None] & kd[None, :], other=0.0)
        v = tl.load(
            v_base + rows[:, None] * svt + offs_v[None, :], mask=rm[:, None] & vd[None, :], other=0.0
        ).to(tl.float32)
        A = tl.dot(q, tl.trans(k), input_precision=IN_PREC)
        A = tl.where(causal, A, 0.0)
        num = tl.dot(A, v, input_precision=IN_PREC) + tl.dot(q, S, input_precision=IN_PREC)
        den = tl.sum(A, 1) + tl.sum(q * z[None, :], 1)
        tl.store(
            NUM + b * snb + h * snh + rows[:, None] * snt + offs_v[None, :],
            num,
            mask=rm[:, None] & vd[None, :],
        )
        tl.store(DEN + b * sdb + h * sdh + rows * sdt, den, mask=rm)
        S += tl.dot(tl.trans(k), v, input_precision=IN_PREC)
        z += tl.sum(k, 0)
    tl.store(ST + s_off, S, mask=kd[:, None] & vd[None, :])
    tl.store(ZT + bh * DK + offs_k, z, mask=kd)


@triton.jit
def _linear_bwd(
    Qf,
    Kf,
    V,
    S0,
    Z0,
    DNUM,
    DDEN,
    DST,
    DZT,
    DQ,
    DKo,
    DVo,
    DS0,
    DZ0,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    svb,
    svt,
    svh,
    snb,
    snt,
    snh,
    sdb,
    sdt,
    sdh,
    H,
    T,
    DK,
    DV,
    BLOCK_T: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_V: tl.constexpr,
    HAS_S0: tl.constexpr,
    IN_PREC: tl.constexpr,
):
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    offs_t = tl.arange(0, BLOCK_T)
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = tl.arange(0, BLOCK_V)
    kd = offs_k < DK
    vd = offs_v < DV
    s_off = bh * DK * DV + offs_k[:, None] * DV + offs_v[None, :]
    smask = kd[:, None] & vd[None, :]
    if HAS_S0:
        S = tl.load(S0 + s_off, mask=smask, other=0.0)
        z = tl.load(Z0 + bh * DK + offs_k, mask=kd, other=0.0)
    else:
        S = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
        z = tl.zeros([BLOCK_K], dtype=tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    q_base = Qf + b * sqb + h * sqh
    k_base = Kf + b * skb + h * skh
    v_base = V + b * svb + h * svh
    dn_base = DNUM + b * snb + h * snh
    dd_base = DDEN + b * sdb + h * sdh
    # forward sweep: dQ
    for c0 in range(0, T, BLOCK_T):
        rows = c0 + offs_t
        rm = rows < T
        k = tl.load(k_base + rows[:, None] * skt + offs_k[None, :], mask=rm[:, None] & kd[None, :], other=0.0)
        v = tl.load(
            v_base + rows[:, None] * svt + offs_v[None, :], mask=rm[:, None] & vd[None, :], other=0.0
        ).to(tl.float32)
        dn = tl.load(
            dn_base + rows[:, None] * snt + offs_v[None, :], mask=rm[:, None] & vd[None, :], other=0.0
        )
        dd = tl.load(dd_base + rows * sdt, mask=rm, other=0.0)
        dA = tl.dot(dn, tl.trans(v), input_precision=IN_PREC) + dd[:, None]
        dA = tl.where(causal, dA, 0.0)
        dq = tl.dot(dA, k, input_precision=IN_PREC) + tl.dot(dn, tl.trans(S), input_precision=IN_PREC)
        dq += dd[:, None] * z[None, :]
        tl.store(
            DQ + b * sqb + h * sqh + rows[:, None] * sqt + offs_k[None, :], dq, mask=rm[:, None] & kd[None, :]
        )
        S += tl.dot(tl.trans(k), v, input_precision=IN_PREC)
        z += tl.sum(k, 0)
    # reverse sweep: dK, dV, dS0, dz0
    dS = tl.load(DST + s_off, mask=smask, other=0.0)
    dz = tl.load(DZT + bh * DK + offs_k, mask=kd, other=0.0)
    n_chunks = tl.cdiv(T, BLOCK_T)
    for i in range(0, n_chunks):
        rows = (n_chunks - 1 - i) * BLOCK_T + offs_t
        rm = rows < T
        q = tl.load(q_base + rows[:, None] * sqt + offs_k[None, :], mask=rm[:, None] & kd[None, :], other=0.0)
        k = tl.load(k_base + rows[:, None] * skt + offs_k[None, :], mask=rm[:, None] & kd[None, :], other=0.0)
        v = tl.load(
            v_base + rows[:, None] * svt + offs_v[None, :], mask=rm[:, None] & vd[None, :], other=0.0
        ).to(tl.float32)
        dn = tl.load(
            dn_base + rows[:, None] * snt + offs_v[None, :], mask=rm[:, None] & vd[None, :], other=0.0
        )
        dd = tl.load(dd_base + rows * sdt, mask=rm, other=0.0)
        A = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=IN_PREC), 0.0)
        dA = tl.where(causal, tl.dot(dn, tl.trans(v), input_precision=IN_PREC) + dd[:, None], 0.0)
        dk = tl.dot(tl.trans(dA), q, input_precision=IN_PREC) + tl.dot(
            v, tl.trans(dS), input_precision=IN_PREC
        )
        dk += dz[None, :]
        dv = tl.dot(tl.trans(A), dn, input_precision=IN_PREC) + tl.dot(k, dS, input_precision=IN_PREC)
        tl.store(
            DKo + b * skb + h * skh + rows[:, None] * skt + offs_k[None, :],
            dk,
            mask=rm[:, None] & kd[None, :],
        )
        tl.store(
            DVo + b * svb + h * svh + rows[:, None] * svt + offs_v[None, :],
            dv.to(DVo.dtype.element_ty),
            mask=rm[:, None] & vd[None, :],
        )
        dS += tl.dot(tl.trans(q), dn, input_precision=IN_PREC)
        dz += tl.sum(q * dd[:, None], 0)
    tl.store(DS0 + s_off, dS, mask=smask)
    tl.store(DZ0 + bh * DK + offs_k, dz, mask=kd)


def _block_t(T: int, chunk_size: int) -> int:
    return max(16, min(64, next_pow2(min(T, chunk_size))))


class _CausalLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qf: Tensor, kf: Tensor, v: Tensor, S0: Tensor | None, z0: Tensor | None, block_t: int):
        B, T, H, DK = qf.shape
        DV = v.shape[-1]
        num = torch.empty(B, T, H, DV, device=qf.device, dtype=torch.float32)
        den = torch.empty(B, T, H, device=qf.device, dtype=torch.float32)
        ST = torch.empty(B, H, DK, DV, device=qf.device, dtype=torch.float32)
        zT = torch.empty(B, H, DK, device=qf.device, dtype=torch.float32)
        has_s0 = S0 is not None
        _linear_fwd[(B * H,)](
            qf,
            kf,
            v,
            S0 if has_s0 else ST,
            z0 if has_s0 else zT,
            num,
            den,
            ST,
            zT,
            *qf.stride()[:3],
            *kf.stride()[:3],
            *v.stride()[:3],
            *num.stride()[:3],
            *den.stride(),
            H,
            T,
            DK,
            DV,
            BLOCK_T=block_t,
            BLOCK_K=next_pow2(DK),
            BLOCK_V=next_pow2(DV),
            HAS_S0=has_s0,
            IN_PREC=dot_precision(torch.float32),
        )
        ctx.save_for_backward(qf, kf, v, S0, z0)
        ctx.block_t = block_t
        return num, den, ST, zT

    @staticmethod
    def backward(ctx, dnum: Tensor, dden: Tensor, dST: Tensor, dzT: Tensor):
        qf, kf, v, S0, z0 = ctx.saved_tensors
        B, T, H, DK = qf.shape
        DV = v.shape[-1]
        dnum, dden = dnum.float().contiguous(), dden.float().contiguous()
        dST, dzT = dST.float().contiguous(), dzT.float().contiguous()
        dq = torch.empty(qf.shape, device=qf.device, dtype=torch.float32)
        dk = torch.empty(kf.shape, device=qf.device, dtype=torch.float32)
        dv = torch.empty(v.shape, device=qf.device, dtype=v.dtype)
        dS0 = torch.empty(B, H, DK, DV, device=qf.device, dtype=torch.float32)
        dz0 = torch.empty(B, H, DK, device=qf.device, dtype=torch.float32)
        has_s0 = S0 is not None
        _linear_bwd[(B * H,)](
            qf,
            kf,
            v,
            S0 if has_s0 else dS0,
            z0 if has_s0 else dz0,
            dnum,
            dden,
            dST,
            dzT,
            dq,
            dk,
            dv,
            dS0,
            dz0,
            *qf.stride()[:3],
            *kf.stride()[:3],
            *v.stride()[:3],
            *dnum.stride()[:3],
            *dden.stride(),
            H,
            T,
            DK,
            DV,
            BLOCK_T=ctx.block_t,
            BLOCK_K=next_pow2(DK),
            BLOCK_V=next_pow2(DV),
            HAS_S0=has_s0,
            IN_PREC=dot_precision(torch.float32),
        )
        return (dq.to(qf.dtype), dk.to(kf.dtype), dv, dS0 if has_s0 else None, dz0 if has_s0 else None, None)


def causal_linear(
    qf: Tensor,
    kf: Tensor,
    v: Tensor,
    S0: Tensor | None = None,
    z0: Tensor | None = None,
    *,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Drop-in Triton replacement of :func:`rlkit.kernels.reference.causal_linear_core` (same arguments/returns).

    qf, kf [B, T, H, d_k] (computed in float32), v [B, T, H, d_v]; S0 [B, H, d_k, d_v] and z0 [B, H, d_k]
    go together (both or neither). Returns num [B, T, H, d_v], den [B, T, H], S_T, z_T, all float32.
    """
    qf, kf = qf.float().contiguous(), kf.float().contiguous()
    v = v.contiguous()
    if (S0 is None) != (z0 is None):
        raise ValueError("causal_linear needs both S0 and z0, or neither")
    if S0 is not None:
        S0, z0 = S0.float().contiguous(), z0.float().contiguous()
    return _CausalLinear.apply(qf, kf, v, S0, z0, _block_t(qf.shape[1], chunk_size))
