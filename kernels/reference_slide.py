"""Causal 1-D slide attention in plain PyTorch (Slide-Transformer, Pan et al., CVPR 2023, Sec. 3.2-3.3).

The published module is 2-D and non-causal (rlkit/nets/slide2d.py has it). Our causal 1-D form [derived]:
query t sees the window of raw keys/values k_{t-j}, v_{t-j}, j = 0..w-1 (the paper's fixed one-hot
depthwise "shift" kernels, one per offset j). The "deformed shift" adds a learned depthwise convolution per
offset (Sec. 3.3): the key of neighbour j becomes

    K'_{t,j,c} = k_{t-j,c} + sum_{i<w} W[c, j, i] k_{t-i,c}     (Shift(K) + DConv(K); the same W for V)

and re-parameterized for inference (Sec. 3.3, "merged into a single depthwise conv") K'_{t,j,c} =
sum_i M[c, j, i] k_{t-i,c} with M = I + W. Scores s_{t,j} = scale * q_t . K'_{t,j} + b[h, j] with a
per-head, per-offset scalar logit bias b (our choice; the reference code adds a bias vector to the key,
i.e. b * sum(q), see the docstring of :func:`slide_parallel`); softmax over the j of the window; output
sum_j p_{t,j} V'_{t,j}.

Borders: offsets before the sequence start are masked (padding='mask', the default [ours]); with
padding='zeros' they are zero keys and values with logit b[h, j] (the published zero padding). The
convolution always sees zeros before the start (causal left padding). Cost O(T w d) per head without
the deformed shift and O(T w^2 d) with it; the rollout state is the ring buffer of the last w - 1 raw
keys and values (:class:`~kernels.states.SlideState`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import apply_gate
from .states import SlideState
from .states import acc_dtype as _acc_dtype

__all__ = ["slide_windows", "deform_shift", "slide_core", "slide_band_sdpa", "slide_parallel", "slide_step", "PADDINGS"]

PADDINGS = ("mask", "zeros")


def slide_windows(x: Tensor, past: int, window: int) -> tuple[Tensor, Tensor]:
    """The fixed one-hot shifts: xw[:, i, j] = x[:, past + i - j] (zeros before the start), and exists[i, j].

    x [B, past + T, H, D] holds ``past`` earlier positions then the T queries' own; returns
    (xw [B, T, window, H, D], exists [T, window] bool).
    """
    B, L, H, D = x.shape
    T = L - past
    pad = torch.cat([x.new_zeros(B, window - 1, H, D), x], dim=1)
    rows = torch.arange(T, device=x.device)[:, None] + past
    idx = rows - torch.arange(window, device=x.device)[None, :]  # absolute index in x, may be < 0
    xw = pad[:, (idx + window - 1).reshape(-1)].view(B, T, window, H, D)
    return xw, idx >= 0


def deform_shift(xw: Tensor, deform_weight: Tensor | None = None, shift_weight: Tensor | None = None) -> Tensor:
    """Deformed shifting (Pan et al. 2023, Sec. 3.3) on windows xw [B, T, w, H, D].

    ``deform_weight`` W [D, w, w] (shared by heads, as the reference code) or [H, D, w, w], index
    [c, j (output neighbour), i (input offset)]: training form xw + DConv(xw). ``shift_weight`` M of the
    same shape: the re-parameterized (merged) form sum_i M[c, j, i] xw[:, :, i]. At most one of the two.
    """
    if deform_weight is not None and shift_weight is not None:
        raise ValueError("give deform_weight (training form) or shift_weight (merged form), not both")
    w = deform_weight if deform_weight is not None else shift_weight
    if w is None:
        return xw
    spec = "btihc,cji->btjhc" if w.dim() == 3 else "btihc,hcji->btjhc"
    mixed = torch.einsum(spec, xw, w.to(xw.dtype))
    return xw + mixed if deform_weight is not None else mixed


def slide_core(
    q: Tensor,
    kw: Tensor,
    vw: Tensor,
    exists: Tensor,
    *,
    scale: float,
    bias: Tensor | None = None,
    padding: str = "mask",
) -> Tensor:
    """o_t = sum_j softmax_j(scale q_t . kw[t, j] + bias[h, j]) vw[t, j] over the window (float32/64)."""
    acc = _acc_dtype(q.dtype)
    s = torch.einsum("bthc,btjhc->bthj", q.to(acc), kw.to(acc)) * scale
    if bias is not None:
        s = s + bias.to(acc)[None, None]
    if padding == "mask":
        s = s.masked_fill(~exists[None, :, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bthj,btjhc->bthc", p, vw.to(acc)).to(vw.dtype)


def slide_band_sdpa(
    q: Tensor, K: Tensor, V: Tensor, past: int, window: int, *, scale: float, bias: Tensor | None = None,
    padding: str = "mask", chunk: int = 64,
) -> Tensor:
    """The plain windowed form (no deformed shift) as chunked softmax attention: the queries of a chunk of
    C tokens see the C + w - 1 keys ending at the chunk's last token, through SDPA with a band mask that
    carries bias[h, distance]. O(T (C + w) d); same values as :func:`slide_core` on :func:`slide_windows`.

    K, V [B, past + T, H, D] with past <= window - 1 earlier positions first.
    """
    B, T, H, _ = q.shape
    w = window
    C = min(chunk, T)
    n = -(-T // C)
    lead, tail = w - 1 - past, n * C - T
    Kp = F.pad(K, (0, 0, 0, 0, lead, tail))  # [B, w - 1 + nC, H, D]
    Vp = F.pad(V, (0, 0, 0, 0, lead, tail))
    Kb = Kp.unfold(1, C + w - 1, C).permute(0, 1, 2, 4, 3)  # [B, n, H, C + w - 1, D]
    Vb = Vp.unfold(1, C + w - 1, C).permute(0, 1, 2, 4, 3)
    Qb = F.pad(q, (0, 0, 0, 0, 0, tail)).view(B, n, C, H, -1).transpose(2, 3)  # [B, n, H, C, D]
    i = torch.arange(C, device=q.device)[:, None]
    jj = torch.arange(C + w - 1, device=q.device)[None, :]
    dist = i + (w - 1) - jj
    ok = ((dist >= 0) & (dist < w))[None]  # [1, C, C + w - 1]
    if padding == "mask":  # keys in front of the sequence start (left padding) are masked
        ok = ok & (torch.arange(n, device=q.device)[:, None, None] * C + jj[None] >= lead)
    acc = _acc_dtype(q.dtype)
    mask = torch.zeros(ok.shape[0], H, C, C + w - 1, device=q.device, dtype=acc)
    if bias is not None:
        mask = mask + bias.to(acc)[:, dist.clamp(0, w - 1)][None]
    mask = mask.masked_fill(~ok[:, None], float("-inf")).to(q.dtype)
    o = F.scaled_dot_product_attention(Qb, Kb.to(q.dtype), Vb.to(q.dtype), attn_mask=mask, scale=scale)
    return o.transpose(2, 3).reshape(B, n * C, H, -1)[:, :T].to(V.dtype)


SlideKernel = Callable[..., Tensor]


def slide_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    scale: float | None = None,
    bias: Tensor | None = None,
    deform_weight: Tensor | None = None,
    shift_weight: Tensor | None = None,
    padding: str = "mask",
    gate: Tensor | None = None,
    state: SlideState | None = None,
    return_state: bool = False,
    kernel: SlideKernel | None = None,
) -> tuple[Tensor, SlideState | None]:
    """Causal slide attention of T new tokens after the ones in ``state`` (module docstring for the math).

    ``bias`` [H, window]: per-offset logit bias (offset j = distance to the query). ``kernel``: a fused
    implementation ``kernel(q, keys, values, window=, scale=, bias=, offset=, zero_pad=)`` taking either raw
    keys [B, offset + T, H, D] (no deformed shift) or per-offset keys [B, T, window, H, D]; None: PyTorch.
    """
    B, T, H, dk = q.shape
    c = dk**-0.5 if scale is None else float(scale)
    deformed = deform_weight is not None or shift_weight is not None
    if state is not None and T == 1 and not deformed:
        return _ring_step(q, k, v, state, c, bias, padding, gate)
    if state is not None:
        kc, vc = state.history()
        K, V = torch.cat([kc.to(k.dtype), k], dim=1), torch.cat([vc.to(v.dtype), v], dim=1)
    else:
        K, V = k, v
    past = K.shape[1] - T
    if kernel is not None and not deformed:
        o = kernel(q, K, V, window=window, scale=c, bias=bias, offset=past, zero_pad=padding == "zeros")
    elif not deformed:
        o = slide_band_sdpa(q, K, V, past, window, scale=c, bias=bias, padding=padding)
    else:
        kw, exists = slide_windows(K, past, window)
        vw, _ = slide_windows(V, past, window)
        kw, vw = deform_shift(kw, deform_weight, shift_weight), deform_shift(vw, deform_weight, shift_weight)
        if kernel is not None:
            o = kernel(q, kw, vw, window=window, scale=c, bias=bias, offset=past, zero_pad=padding == "zeros")
        else:
            o = slide_core(q, kw, vw, exists, scale=c, bias=bias, padding=padding)
    new_state = None
    if state is not None or return_state:
        if state is None:
            state = SlideState.zeros(B, H, dk, v.shape[-1], window, device=k.device, dtype=k.dtype)
        new_state = state.push(k, v)
    return apply_gate(o, gate), new_state


def _ring_step(q, k, v, state: SlideState, c: float, bias, padding: str, gate) -> tuple[Tensor, SlideState]:
    """One token attending to the ring buffer in slot order (no gather into time order): slot s holds the
    latest position p_s = n - 1 - ((n - 1 - s) mod (w - 1)) before n = state.count, at distance n - p_s.
    Unwritten slots (p_s < 0) are masked, or zero keys/values for padding='zeros' (they hold zeros)."""
    acc = _acc_dtype(q.dtype)
    n, size = state.count, state.k.shape[1]
    q0, k0, v0 = q[:, 0].to(acc), k[:, 0].to(acc), v[:, 0].to(acc)
    s_self = c * (q0 * k0).sum(-1)  # [B, H]
    if bias is not None:
        s_self = s_self + bias[:, 0].to(acc)
    parts_s, parts_v = [s_self[..., None]], None
    if size > 0:
        slots = torch.arange(size, device=q.device)
        dist = 1 + torch.remainder(n - 1 - slots, size)  # [size], in 1..w-1
        s_ring = c * torch.einsum("bhd,bshd->bhs", q0, state.k.to(acc))
        if bias is not None:
            s_ring = s_ring + bias.to(acc)[:, dist][None]
        if padding == "mask":
            s_ring = s_ring.masked_fill((dist > n)[None, None], float("-inf"))
        parts_s.append(s_ring)
        parts_v = state.v.to(acc)
    p = torch.softmax(torch.cat(parts_s, dim=-1), dim=-1)  # [B, H, 1 + size]
    o = p[..., :1] * v0
    if parts_v is not None:
        o = o + torch.einsum("bhs,bshd->bhd", p[..., 1:], parts_v)
    return apply_gate(o[:, None].to(v.dtype), gate), state.push(k, v)


def slide_step(q: Tensor, k: Tensor, v: Tensor, state: SlideState, **kw) -> tuple[Tensor, SlideState]:
    """One rollout token (q, k, v [B, H, D]): attends to the ring buffer plus itself; O(w d) per head."""
    o, st = slide_parallel(q[:, None], k[:, None], v[:, None], state=state, window=state.window, **kw)
    return o[:, 0], st
