"""Plain PyTorch attention: every kind in a parallel (training) form and a step-by-step (rollout) form.

All tensors are [B, T, H, D] (fla's layout); a ``*_step`` function takes one token as [B, H, D]. Every
function returns ``(output, state)``; ``state`` is None unless one was passed in or ``return_state=True``.
Feature maps, recurrent states and accumulations are float32 (fla keeps GLA states in fp32; FLatten's x^p
and InLine's correction overflow fp16), or float64 when the inputs are float64.

Kinds and equations (papers in brackets; "derived" marks causal adaptations of ours, not in the paper):

* ``softmax`` [Vaswani et al. 2017]: o_t = sum_{j<=t} softmax_j(q_t.k_j * scale) v_j, optionally times a
  query-dependent sigmoid output gate (Qiu et al. 2025, Qwen gated attention, position G1). Parallel
  form = SDPA; with a non-empty KV cache and several new tokens the causal mask is aligned lower-right.
* ``focused_linear`` (FLatten) [Han et al. ICCV 2023; causal forms derived]: phi_p(x) = f_p(ReLU(x) + 1e-6),
  f_p(x) = ||x|| / ||x^p|| * x^p with the norms over all heads' channels of a token (as the reference
  code); o_t = phi(q_t) S_t / (phi(q_t).z_t + eps) + CausalDWC(V)_t,
  S_t = sum_{j<=t} phi(k_j)^T v_j, z_t = sum_{j<=t} phi(k_j).
  The published DWC is a 2D conv over the image grid and sees the future; ours is a causal depthwise
  conv over time (left padding K_c - 1).
* ``inline`` (injective linear attention) [Han et al. 2024, arXiv 2412.06590; causal forms derived]:
  a_tj = (c/t) phi(q_t).phi(k_j), o_t = sum_{j<=t} a_tj v_j + (1 - sum_{j<=t} a_tj) u_t / t with
  u_t = sum_{j<=t} v_j, c = scale. The published local residual predicts its kernel from the mean over
  *all* tokens (future leak); we use a static causal depthwise conv on V (``conv_weight``).
* ``agent`` [Han et al. ECCV 2024; causal form derived]: learned agent tokens A [H, n, d] replace pooled
  queries (pooling sees the future); prefix softmax
  V_A(t)_a = sum_{j<=t} exp(s_aj) v_j / sum_{j<=t} exp(s_aj) with
  s_aj = scale a.k_j + B1[a, j]; o_t = softmax_a(scale q_t.a + B2[t, a]) V_A(t) + CausalDWC(V)_t.
  B1, B2 are optional learned tables [H, n, T_max] / [H, T_max, n] indexed by absolute position.
* ``gla`` [Yang et al. ICML 2024, recurrent and chunkwise forms]: S_t = diag(alpha_t) S_{t-1} + k_t^T v_t,
  o_t = scale q_t S_t, with ``log_decay`` = log alpha_t [B, T, H, d_k] (<= 0). Parallel form: chunkwise
  with the exact pairwise exponent inside a chunk (no overflow for strong decays).

``causal=False`` gives the published non-causal forms (softmax, focused_linear, inline, agent; no state).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .states import AgentState, GLAState, KVCache, LinearState
from .states import acc_dtype as _acc_dtype

__all__ = [
    "apply_gate",
    "causal_conv",
    "focus_feature",
    "inline_feature",
    "causal_linear_core",
    "softmax_parallel",
    "softmax_step",
    "focused_linear_parallel",
    "focused_linear_step",
    "inline_parallel",
    "inline_step",
    "agent_parallel",
    "agent_step",
    "gla_parallel",
    "gla_step",
    "gla_chunked_core",
]

FOCUS_EPS = 1e-6


def _acc(x: Tensor) -> Tensor:
    """Cast to the accumulation dtype: float32, or float64 for float64 inputs (tests, gradcheck)."""
    return x.to(_acc_dtype(x.dtype))


# ----------------------------------------------------------------------------------------------- helpers


def apply_gate(o: Tensor, gate: Tensor | None) -> Tensor:
    """Sigmoid output gate (Qiu et al. 2025, G1): o * sigmoid(gate), gate [..., H] (head-wise) or [..., H, 1|d_v]."""
    if gate is None:
        return o
    if gate.dim() == o.dim() - 1:
        gate = gate.unsqueeze(-1)
    return o * torch.sigmoid(_acc(gate)).to(o.dtype)


def causal_conv(v: Tensor, weight: Tensor, cache: Tensor | None) -> tuple[Tensor, Tensor]:
    """Causal depthwise convolution over time: y_t = sum_{i<K} w[..., i] v_{t-K+1+i} (causal DWC, derived).

    v [B, T, H, D]; weight [D, K] (shared by heads, as FLatten) or [H, D, K]; cache [B, K-1, H, D] holds
    the values before v (zeros = left padding). Returns (y [B, T, H, D], the new cache).
    """
    B, T, H, D = v.shape
    K = weight.shape[-1]
    if cache is None:
        cache = v.new_zeros(B, K - 1, H, D)
    x = torch.cat([cache.to(v.dtype), v], dim=1)  # [B, K-1+T, H, D]
    w = weight.expand(H, D, K) if weight.dim() == 2 else weight
    xc = x.permute(0, 2, 3, 1).reshape(B, H * D, K - 1 + T)
    y = F.conv1d(xc, w.reshape(H * D, 1, K).to(v.dtype), groups=H * D)
    y = y.reshape(B, H, D, T).permute(0, 3, 1, 2)
    return y, x[:, x.shape[1] - (K - 1) :]


def focus_feature(x: Tensor, p: float = 3.0) -> Tensor:
    """FLatten's focused feature map phi_p(x) = f_p(ReLU(x) + 1e-6), f_p(x) = ||x||/||x^p|| x^p (Han et al. ICCV 2023).

    Norms run over all heads' channels of one token ([..., H, D] jointly), as in the reference code.
    Computed in float32 (x^p underflows / overflows in fp16).
    """
    x = F.relu(_acc(x)) + FOCUS_EPS
    xp = x**p
    norm_x = x.flatten(-2).norm(dim=-1)[..., None, None]
    norm_xp = xp.flatten(-2).norm(dim=-1)[..., None, None]
    return xp * (norm_x / norm_xp)


_INLINE_FEATURES: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda x: x,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "exp": lambda x: torch.exp(0.2 * x),
}


def inline_feature(x: Tensor, name: str = "identity") -> Tensor:
    """InLine's feature map (Han et al. 2024): identity by default; relu, leaky_relu, exp(0.2 x). Float32."""
    try:
        fn = _INLINE_FEATURES[name]
    except KeyError:
        from rlkit.errors import ConfigError

        raise ConfigError(
            f"unknown inline feature_map {name!r}; choose one of {sorted(_INLINE_FEATURES)}"
        ) from None
    return fn(_acc(x))


def _hf(x: Tensor) -> Tensor:
    """[B, T, H, D] -> [B, H, T, D] (a view)."""
    return x.transpose(1, 2)


def _sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    o = F.scaled_dot_product_attention(
        _hf(q), _hf(k), _hf(v), attn_mask=mask, is_causal=causal, dropout_p=dropout_p, scale=scale
    )
    return o.transpose(1, 2)


def _new_position(state, T: int) -> int:
    return (state.position if state is not None else 0) + T


# ----------------------------------------------------------------------------------------------- softmax


def softmax_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
    gate: Tensor | None = None,
    state: KVCache | None = None,
    return_state: bool = False,
    capacity: int | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, KVCache | None]:
    """Causal softmax attention over a KV cache plus T new tokens (SDPA; gate after)."""
    if state is None and not return_state:
        return apply_gate(_sdpa(q, k, v, causal=causal, scale=scale, dropout_p=dropout_p), gate), None
    B, T, H, _ = q.shape
    if state is None:
        state = KVCache.empty(
            B, H, k.shape[-1], v.shape[-1], max(capacity or 0, T), device=k.device, dtype=k.dtype
        )
    past = state.length
    state = state.append(k, v)
    mask, is_causal = None, False
    if causal and T > 1:
        if past == 0:
            is_causal = True
        else:  # lower-right aligned triangle: query i (absolute past + i) sees keys j <= past + i
            rows = torch.arange(T, device=q.device)[:, None] + past
            mask = torch.arange(past + T, device=q.device)[None, :] <= rows
    o = _sdpa(
        q,
        state.keys().to(q.dtype),
        state.values().to(q.dtype),
        mask=mask,
        causal=is_causal,
        scale=scale,
        dropout_p=dropout_p,
    )
    return apply_gate(o, gate), state


def softmax_step(
    q: Tensor, k: Tensor, v: Tensor, state: KVCache, *, scale: float | None = None, gate: Tensor | None = None
) -> tuple[Tensor, KVCache]:
    """One decode step: append (k, v) to the cache, attend with the new query to every cached key."""
    state = state.append(k[:, None], v[:, None])
    o = F.scaled_dot_product_attention(
        q[:, :, None], _hf(state.keys().to(q.dtype)), _hf(state.values().to(q.dtype)), scale=scale
    )
    o = o[:, :, 0]
    return apply_gate(o, gate), state


# ------------------------------------------------------------------------------- linear attention core


def causal_linear_core(
    qf: Tensor,
    kf: Tensor,
    v: Tensor,
    S0: Tensor | None = None,
    z0: Tensor | None = None,
    *,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Un-normalised causal linear attention, chunkwise, in float32.

    num_t = qf_t (S0 + sum_{j<=t} kf_j^T v_j), den_t = qf_t . (z0 + sum_{j<=t} kf_j).
    qf, kf [B, T, H, K]; v [B, T, H, V]. Returns num [B, T, H, V], den [B, T, H], S [B, H, K, V], z [B, H, K].
    """
    B, T, H, K = qf.shape
    qh, kh, vh = _hf(_acc(qf)), _hf(_acc(kf)), _hf(_acc(v))
    S = qf.new_zeros(B, H, K, v.shape[-1], dtype=_acc_dtype(qf.dtype)) if S0 is None else _acc(S0)
    z = qf.new_zeros(B, H, K, dtype=_acc_dtype(qf.dtype)) if z0 is None else _acc(z0)
    nums, dens = [], []
    for c0 in range(0, T, chunk_size):
        qc, kc, vc = (
            qh[:, :, c0 : c0 + chunk_size],
            kh[:, :, c0 : c0 + chunk_size],
            vh[:, :, c0 : c0 + chunk_size],
        )
        A = torch.tril(qc @ kc.transpose(-1, -2))
        nums.append(A @ vc + qc @ S)
        dens.append(A.sum(-1) + (qc @ z.unsqueeze(-1)).squeeze(-1))
        S = S + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(-2)
    num = torch.cat(nums, dim=2).transpose(1, 2)
    den = torch.cat(dens, dim=2).transpose(1, 2)
    return num, den, S, z


LinearCore = Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]]


def _noncausal_linear(qf: Tensor, kf: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    S = torch.einsum("bthk,bthv->bhkv", _acc(kf), _acc(v))
    z = _acc(kf).sum(1)
    return torch.einsum("bthk,bhkv->bthv", _acc(qf), S), torch.einsum("bthk,bhk->bth", _acc(qf), z)


def _local_term(
    o: Tensor, v: Tensor, conv_weight: Tensor | None, conv_cache: Tensor | None, causal: bool = True
) -> tuple[Tensor, Tensor | None]:
    if conv_weight is None:
        return o, None
    if not causal:  # centred window ('same' padding): the published, non-causal local term
        K, T = conv_weight.shape[-1], v.shape[1]
        right = v.new_zeros(v.shape[0], K // 2, *v.shape[2:])
        left = v.new_zeros(v.shape[0], K - 1 - K // 2, *v.shape[2:])
        y, _ = causal_conv(torch.cat([v, right], 1), conv_weight, left)
        return o + y[:, :T], None
    y, cache = causal_conv(v, conv_weight, conv_cache)
    return o + y, cache


def _conv_state_kernel(conv_weight: Tensor | None) -> int:
    return 0 if conv_weight is None else conv_weight.shape[-1]


# ---------------------------------------------------------------------------------------- focused linear


def focused_linear_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    gate: Tensor | None = None,
    state: LinearState | None = None,
    return_state: bool = False,
    focusing_factor: float = 3.0,
    eps: float = 1e-6,
    conv_weight: Tensor | None = None,
    chunk_size: int = 64,
    core: LinearCore = causal_linear_core,
) -> tuple[Tensor, LinearState | None]:
    """Causal FLatten (derived): phi(q_t) S_t / (phi(q_t).z_t + eps) + CausalDWC(V)_t, gated."""
    qf, kf = focus_feature(q, focusing_factor), focus_feature(k, focusing_factor)
    if not causal:
        num, den = _noncausal_linear(qf, kf, v)
        o, _ = _local_term((num / (den[..., None] + eps)).to(v.dtype), v, conv_weight, None, causal=False)
        return apply_gate(o, gate), None
    S0, z0 = (state.S, state.z) if state is not None else (None, None)
    num, den, S, z = core(qf, kf, v, S0, z0, chunk_size=chunk_size)
    o = (num / (den[..., None] + eps)).to(v.dtype)
    o, conv = _local_term(o, v, conv_weight, state.conv if state is not None else None)
    new_state = None
    if state is not None or return_state:
        new_state = LinearState(S, z, None, _new_position(state, q.shape[1]), conv)
    return apply_gate(o, gate), new_state


def focused_linear_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: LinearState,
    *,
    gate: Tensor | None = None,
    focusing_factor: float = 3.0,
    eps: float = 1e-6,
    conv_weight: Tensor | None = None,
) -> tuple[Tensor, LinearState]:
    """Recurrent FLatten (derived): S += phi(k)^T v, z += phi(k); o = phi(q) S / (phi(q).z + eps) + conv."""
    qf = focus_feature(q[:, None], focusing_factor)[:, 0]
    kf = focus_feature(k[:, None], focusing_factor)[:, 0]
    S = state.S + kf.unsqueeze(-1) * _acc(v).unsqueeze(-2)
    z = state.z + kf
    num = (qf.unsqueeze(-2) @ S).squeeze(-2)
    den = (qf * z).sum(-1, keepdim=True)
    o = (num / (den + eps)).to(v.dtype)
    o, conv = _local_term(o[:, None], v[:, None], conv_weight, state.conv)
    return apply_gate(o[:, 0], gate), LinearState(S, z, None, state.count + 1, conv)


# ------------------------------------------------------------------------------------------------ InLine


def inline_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
    gate: Tensor | None = None,
    state: LinearState | None = None,
    return_state: bool = False,
    feature_map: str = "identity",
    conv_weight: Tensor | None = None,
    chunk_size: int = 64,
    core: LinearCore = causal_linear_core,
) -> tuple[Tensor, LinearState | None]:
    """Causal InLine (derived): o_t = (c/t) phi(q_t) S_t + (1 - (c/t) phi(q_t).z_t) u_t / t (+ conv), gated."""
    B, T, H, D = q.shape
    c = D**-0.5 if scale is None else scale
    qf, kf = inline_feature(q, feature_map), inline_feature(k, feature_map)
    if not causal:  # published form (Han et al. 2024): t -> N, u_t / t -> mean(V)
        num, den = _noncausal_linear(qf, kf, v)
        a = c / T
        o = a * num + (1 - a * den)[..., None] * _acc(v).mean(1, keepdim=True)
        o, _ = _local_term(o.to(v.dtype), v, conv_weight, None, causal=False)
        return apply_gate(o, gate), None
    S0, z0 = (state.S, state.z) if state is not None else (None, None)
    num, den, S, z = core(qf, kf, v, S0, z0, chunk_size=chunk_size)
    past = state.count if state is not None else 0
    u = torch.cumsum(_acc(v), dim=1)
    if state is not None:
        u = u + state.u[:, None]
    t = torch.arange(past + 1, past + T + 1, device=q.device, dtype=_acc_dtype(q.dtype))[None, :, None]
    a = c / t  # [1, T, 1]
    o = a[..., None] * num + (1 - a * den)[..., None] * (u / t[..., None])
    o, conv = _local_term(o.to(v.dtype), v, conv_weight, state.conv if state is not None else None)
    new_state = None
    if state is not None or return_state:
        new_state = LinearState(S, z, u[:, -1], past + T, conv)
    return apply_gate(o, gate), new_state


def inline_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: LinearState,
    *,
    scale: float | None = None,
    gate: Tensor | None = None,
    feature_map: str = "identity",
    conv_weight: Tensor | None = None,
) -> tuple[Tensor, LinearState]:
    """Recurrent InLine (derived): S += phi(k)^T v, z += phi(k), u += v, t += 1; o as in the parallel form."""
    c = q.shape[-1] ** -0.5 if scale is None else scale
    qf, kf = inline_feature(q, feature_map), inline_feature(k, feature_map)
    S = state.S + kf.unsqueeze(-1) * _acc(v).unsqueeze(-2)
    z = state.z + kf
    u = state.u + _acc(v)
    t = state.count + 1
    a = c / t
    num = (qf.unsqueeze(-2) @ S).squeeze(-2)
    den = (qf * z).sum(-1, keepdim=True)
    o = (a * num + (1 - a * den) * (u / t)).to(v.dtype)
    o, conv = _local_term(o[:, None], v[:, None], conv_weight, state.conv)
    return apply_gate(o[:, 0], gate), LinearState(S, z, u, t, conv)


# ------------------------------------------------------------------------------------------------- agent


def _agent_bias(table: Tensor | None, positions: Tensor, axis: int) -> Tensor | None:
    if table is None:
        return None
    if int(positions[-1]) >= table.shape[axis]:
        from rlkit.errors import ConfigError

        raise ConfigError(
            f"agent attention position {int(positions[-1])} exceeds the bias table length "
            f"{table.shape[axis]}; enlarge max_len or drop the position biases"
        )
    return _acc(table.index_select(axis, positions))


def agent_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    agents: Tensor,
    causal: bool = True,
    scale: float | None = None,
    gate: Tensor | None = None,
    state: AgentState | None = None,
    return_state: bool = False,
    bias_k: Tensor | None = None,
    bias_q: Tensor | None = None,
    conv_weight: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, AgentState | None]:
    """Causal agent attention (derived), chunkwise-exact: per chunk the masked [n, C, C] prefix softmax,
    between chunks the online-softmax carry (m, l, acc) of FlashAttention-2 (Dao 2023).

    agents [H, n, d_k]; bias_k [H, n, T_max] (B1, by key position); bias_q [H, T_max, n] (B2, by query
    position).
    """
    B, T, H, D = q.shape
    c = D**-0.5 if scale is None else scale
    past = state.count if state is not None else 0
    pos = torch.arange(past, past + T, device=q.device)
    A = _acc(agents)
    qh, kh, vh = _hf(_acc(q)), _hf(_acc(k)), _hf(_acc(v))
    # query side: w_ta = softmax_a(c q_t.a + B2[t, a])  [B, H, T, n]
    logits_q = c * torch.einsum("bhtd,had->bhta", qh, A)
    b2 = _agent_bias(bias_q, pos, 1)
    if b2 is not None:
        logits_q = logits_q + b2
    w = torch.softmax(logits_q, dim=-1)
    s = c * torch.einsum("had,bhtd->bhat", A, kh)  # [B, H, n, T]
    b1 = _agent_bias(bias_k, pos, 2)
    if b1 is not None:
        s = s + b1
    if not causal:
        va = torch.softmax(s, dim=-1) @ vh  # [B, H, n, V]
        o = (w @ va).transpose(1, 2)
        o, _ = _local_term(o.to(v.dtype), v, conv_weight, None, causal=False)
        return apply_gate(o, gate), None
    n = A.shape[1]
    if state is None:
        state0 = AgentState.zeros(B, H, n, v.shape[-1], device=q.device, dtype=q.dtype)
        m, l, acc = state0.m, state0.l, state0.acc
    else:
        m, l, acc = state.m, state.l, state.acc
    outs = []
    for c0 in range(0, T, chunk_size):
        sc, vc, wc = (
            s[..., c0 : c0 + chunk_size],
            vh[:, :, c0 : c0 + chunk_size],
            w[:, :, c0 : c0 + chunk_size],
        )
        C = sc.shape[-1]
        m_t = torch.maximum(m.unsqueeze(-1), torch.cummax(sc, dim=-1).values)  # [B, H, n, C] per query t
        tri = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        diff = torch.where(tri, sc.unsqueeze(-2) - m_t.unsqueeze(-1), float("-inf"))  # [B,H,n,C(t),C(j)]
        P = torch.exp(diff)
        carry = torch.exp(m.unsqueeze(-1) - m_t)  # [B, H, n, C]
        l_t = l.unsqueeze(-1) * carry + P.sum(-1)
        wl = wc.transpose(-1, -2) / l_t  # [B, H, n, C]: w_ta / l_ta
        M = torch.einsum("bhat,bhatj->bhtj", wl, P)
        o_c = M @ vc + torch.einsum("bhat,bhad->bhtd", wl * carry, acc)
        outs.append(o_c)
        m_new = m_t[..., -1]
        acc = acc * torch.exp(m - m_new).unsqueeze(-1) + torch.exp(sc - m_new.unsqueeze(-1)) @ vc
        l, m = l_t[..., -1], m_new
    o = torch.cat(outs, dim=2).transpose(1, 2).to(v.dtype)
    o, conv = _local_term(o, v, conv_weight, state.conv if state is not None else None)
    new_state = AgentState(m, l, acc, past + T, conv) if (state is not None or return_state) else None
    return apply_gate(o, gate), new_state


def agent_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: AgentState,
    *,
    agents: Tensor,
    scale: float | None = None,
    gate: Tensor | None = None,
    bias_k: Tensor | None = None,
    bias_q: Tensor | None = None,
    conv_weight: Tensor | None = None,
) -> tuple[Tensor, AgentState]:
    """Recurrent agent attention (derived): online-softmax update of (m, l, acc) per agent, then the readout."""
    c = q.shape[-1] ** -0.5 if scale is None else scale
    A = _acc(agents)
    pos = torch.tensor([state.count], device=q.device)
    s = c * torch.einsum("had,bhd->bha", A, _acc(k))
    b1 = _agent_bias(bias_k, pos, 2)
    if b1 is not None:
        s = s + b1[..., 0]
    m_new = torch.maximum(state.m, s)
    alpha, beta = torch.exp(state.m - m_new), torch.exp(s - m_new)
    l = state.l * alpha + beta
    acc = state.acc * alpha.unsqueeze(-1) + beta.unsqueeze(-1) * _acc(v).unsqueeze(-2)
    logits_q = c * torch.einsum("bhd,had->bha", _acc(q), A)
    b2 = _agent_bias(bias_q, pos, 1)
    if b2 is not None:
        logits_q = logits_q + b2[:, 0]
    w = torch.softmax(logits_q, dim=-1)
    o = ((w / l).unsqueeze(-2) @ acc).squeeze(-2).to(v.dtype)
    o, conv = _local_term(o[:, None], v[:, None], conv_weight, state.conv)
    return apply_gate(o[:, 0], gate), AgentState(m_new, l, acc, state.count + 1, conv)


# --------------------------------------------------------------------------------------------------- GLA


GLA_FACTORED_MAX_DECAY = 30.0  # |sum of log alpha| over a chunk below which exp(+-b) is safe in fp32


def gla_chunked_core(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    scale: float,
    S0: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    exact: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunkwise GLA (Yang et al. ICML 2024). Within a chunk, b = inclusive cumsum of log alpha from the chunk start:
    O = (Q*exp(b)) S + A V,  S <- diag(exp(b_C)) S + (K*exp(b_C - b))^T V,
    A_ij = sum_m Q_im K_jm exp(b_im - b_jm) for j <= i.

    Two evaluations of A, both exact in real arithmetic:
    * factored (fast, matmuls): A = tril((Q*exp(b)) (K*exp(-b))^T), used when every chunk's total decay
      |b_C| <= 30, so exp(+-b) stays well inside float32 (the usual case: fla's gate logsigmoid(.)/16
      decays about 3 per 64 tokens); default chunk 64;
    * exact pairwise exponent ([B, H, C, C, K] tensor, no overflow for any decay, as fla's diagonal sub-chunk); default
      chunk 16. ``exact=None`` picks per call (one host sync), True/False forces one.
    Returns (o [B, T, H, V] float32, S [B, H, K, V]).
    """
    B, T, H, K = q.shape
    qh, kh, vh, gh = _hf(_acc(q) * scale), _hf(_acc(k)), _hf(_acc(v)), _hf(_acc(log_decay))
    if exact is None:
        c = chunk_size or 64
        pad = (-T) % c
        g_pad = F.pad(gh, (0, 0, 0, pad)) if pad else gh
        chunk_decay = g_pad.reshape(B, H, -1, c, K).sum(3)  # [B, H, n_chunks, K]
        exact = bool(chunk_decay.min() < -GLA_FACTORED_MAX_DECAY) if T else False
    chunk = chunk_size or (16 if exact else 64)
    S = q.new_zeros(B, H, K, v.shape[-1], dtype=_acc_dtype(q.dtype)) if S0 is None else _acc(S0)
    outs = []
    for c0 in range(0, T, chunk):
        sl = slice(c0, c0 + chunk)
        qc, kc, vc, gc = qh[:, :, sl], kh[:, :, sl], vh[:, :, sl], gh[:, :, sl]
        C = qc.shape[2]
        b = torch.cumsum(gc, dim=2)  # [B, H, C, K]
        q_b = qc * torch.exp(b)
        if exact:
            tri = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()[..., None]
            diff = torch.where(tri, b.unsqueeze(3) - b.unsqueeze(2), float("-inf"))  # [B, H, C(i), C(j), K]
            A = torch.einsum("bhik,bhjk,bhijk->bhij", qc, kc, torch.exp(diff))
        else:
            A = torch.tril(q_b @ (kc * torch.exp(-b)).transpose(-1, -2))
        outs.append(q_b @ S + A @ vc)
        bC = b[:, :, -1:]
        S = torch.exp(bC).transpose(-1, -2) * S + (kc * torch.exp(bC - b)).transpose(-1, -2) @ vc
    return torch.cat(outs, dim=2).transpose(1, 2), S


def gla_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    log_decay: Tensor,
    scale: float | None = None,
    gate: Tensor | None = None,
    state: GLAState | None = None,
    return_state: bool = False,
    chunk_size: int | None = None,
) -> tuple[Tensor, GLAState | None]:
    """Gated linear attention, chunkwise parallel form (Yang et al. ICML 2024); scale defaults to d_k^-1/2."""
    c = q.shape[-1] ** -0.5 if scale is None else scale
    o, S = gla_chunked_core(
        q, k, v, log_decay, c, state.S if state is not None else None, chunk_size=chunk_size
    )
    new_state = GLAState(S, _new_position(state, q.shape[1])) if (state is not None or return_state) else None
    return apply_gate(o.to(v.dtype), gate), new_state


def gla_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: GLAState,
    *,
    log_decay: Tensor,
    scale: float | None = None,
    gate: Tensor | None = None,
) -> tuple[Tensor, GLAState]:
    """Recurrent GLA (Yang et al. ICML 2024): S = diag(exp(log_decay)) S + k^T v; o = scale q S."""
    c = q.shape[-1] ** -0.5 if scale is None else scale
    S = torch.exp(_acc(log_decay)).unsqueeze(-1) * state.S + _acc(k).unsqueeze(-1) * _acc(v).unsqueeze(-2)
    o = (c * (_acc(q).unsqueeze(-2) @ S).squeeze(-2)).to(v.dtype)
    return apply_gate(o, gate), GLAState(S, state.count + 1)


def default_scale(dim: int) -> float:
    return 1.0 / math.sqrt(dim)
