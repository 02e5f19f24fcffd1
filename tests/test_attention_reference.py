"""kernels.reference (through kernels.attention) against naive float64 masked-matrix forms.

The naive forms below are written independently from the papers' equations (softmax, GLA's parallel form, and our causal
FLatten / InLine / agent forms), as explicit T x T (or n x T x T) masked matrices: no recurrences, no chunking, no
cumsum tricks. Checked: parallel form == naive (float64, 1e-10), step-by-step rollout == parallel (float32),
split runs, gradcheck (float64), stress inputs, KV-cache growth, and the error messages.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from rlkit.errors import ConfigError
from rlkit.kernels import KINDS, KVCache, attention, empty_state

# ------------------------------------------------------------------------------------------ naive forms


def naive_conv(v, w):
    """y_t = sum_i w[..., i] v_{t-K+1+i}, zero before the start."""
    B, T, H, D = v.shape
    K = w.shape[-1]
    w = w.expand(H, D, K) if w.dim() == 2 else w
    y = torch.zeros_like(v)
    for t in range(T):
        for i in range(K):
            src = t - (K - 1) + i
            if src >= 0:
                y[:, t] = y[:, t] + w[..., i] * v[:, src]
    return y


def naive_gate(o, gate):
    if gate is None:
        return o
    g = gate[..., None] if gate.dim() == 3 else gate
    return o * torch.sigmoid(g)


def tril_mask(Tq, Tk):
    past = Tk - Tq
    return torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + past


def naive_softmax(q, k, v, scale=None, causal=True):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    if causal:
        s = s.masked_fill(~tril_mask(q.shape[1], k.shape[1]), float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", s.softmax(-1), v)


def naive_focus(x, p):
    x = F.relu(x) + 1e-6
    n = x.pow(2).sum((-2, -1), keepdim=True).sqrt()
    xp = x.pow(p)
    return xp / xp.pow(2).sum((-2, -1), keepdim=True).sqrt() * n


def naive_focused(q, k, v, p=3.0, eps=1e-6, causal=True):
    A = torch.einsum("bihd,bjhd->bhij", naive_focus(q, p), naive_focus(k, p))
    if causal:
        A = A * tril_mask(q.shape[1], k.shape[1])
    num = torch.einsum("bhij,bjhd->bihd", A, v)
    return num / (A.sum(-1).transpose(1, 2)[..., None] + eps)


def inline_weights(q, k, scale=None, feature=lambda x: x):
    """w_tj = a_tj - (1/t) sum_s a_ts + 1/t, a_tj = (c/t) phi(q_t).phi(k_j), j <= t (causal InLine, derived)."""
    T = q.shape[1]
    c = q.shape[-1] ** -0.5 if scale is None else scale
    t = torch.arange(1, T + 1, dtype=q.dtype)[:, None]
    mask = tril_mask(T, T)
    a = torch.einsum("bihd,bjhd->bhij", feature(q), feature(k)) * (c / t) * mask
    w = (a - a.sum(-1, keepdim=True) / t + 1 / t) * mask
    return w


def naive_inline(q, k, v, scale=None, feature=lambda x: x):
    return torch.einsum("bhij,bjhd->bihd", inline_weights(q, k, scale, feature), v)


def naive_agent(q, k, v, agents, bias_k=None, bias_q=None, scale=None, causal=True):
    T = q.shape[1]
    c = q.shape[-1] ** -0.5 if scale is None else scale
    s = c * torch.einsum("had,bjhd->bhaj", agents, k)
    if bias_k is not None:
        s = s + bias_k[:, :, :T]
    s = s[:, :, :, None, :].expand(-1, -1, -1, T, -1)  # [B, H, n, t, j]
    if causal:
        s = s.masked_fill(~tril_mask(T, T), float("-inf"))
    va = torch.einsum("bhatj,bjhd->bhatd", s.softmax(-1), v)
    lq = c * torch.einsum("bthd,had->bhta", q, agents)
    if bias_q is not None:
        lq = lq + bias_q[:, :T]
    return torch.einsum("bhta,bhatd->bthd", lq.softmax(-1), va)


def naive_gla(q, k, v, g, scale=None, S0=None):
    c = q.shape[-1] ** -0.5 if scale is None else scale
    T = q.shape[1]
    b = torch.cumsum(g, dim=1)
    diff = b[:, :, None] - b[:, None, :]  # [B, i, j, H, K]
    mask = tril_mask(T, T)[None, :, :, None, None]
    E = torch.exp(torch.where(mask, diff, torch.zeros_like(diff))) * mask
    A = torch.einsum("bihk,bjhk,bijhk->bhij", q, k, E)
    o = c * torch.einsum("bhij,bjhv->bihv", A, v)
    if S0 is not None:
        o = o + c * torch.einsum("bihk,bhkv->bihv", q * torch.exp(b), S0)
    return o


def naive_slide(q, k, v, window, bias=None, deform=None, scale=None, zero_pad=False):
    """Band-limited softmax written with loops: key of neighbour j = k_{t-j} + sum_i W[:, j, i] k_{t-i}."""
    B, T, H, D = q.shape
    c = D**-0.5 if scale is None else scale

    def at(x, s):
        return x[:, s] if s >= 0 else torch.zeros_like(x[:, 0])

    out = torch.zeros_like(v)
    for t in range(T):
        logits, vals = [], []
        for j in range(window):
            kj, vj = at(k, t - j), at(v, t - j)
            if deform is not None:
                for i in range(window):
                    kj = kj + deform[:, j, i] * at(k, t - i)
                    vj = vj + deform[:, j, i] * at(v, t - i)
            s_ = c * (q[:, t] * kj).sum(-1) + (0 if bias is None else bias[:, j])
            if t - j < 0 and not zero_pad:
                s_ = torch.full_like(s_, float("-inf"))
            logits.append(s_)
            vals.append(vj)
        p = torch.stack(logits, -1).softmax(-1)  # [B, H, w]
        out[:, t] = torch.einsum("bhj,jbhd->bhd", p, torch.stack(vals))
    return out


# ---------------------------------------------------------------------------------------- input cases


def make_case(
    kind, B=2, T=16, H=2, D=8, *, dtype=torch.float64, seed=0, gate="head", conv=True, decay_norm=1.0
):
    """Random q, k, v and the kind's keyword arguments; returns (q, k, v, kwargs)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=dtype) * std

    q, k, v = rnd(B, T, H, D), rnd(B, T, H, D), rnd(B, T, H, D)
    kw = {}
    if gate == "head":
        kw["gate"] = rnd(B, T, H)
    elif gate == "elem":
        kw["gate"] = rnd(B, T, H, D)
    if kind in ("focused_linear", "inline", "agent") and conv:
        kw["conv_weight"] = rnd(H, D, 3, std=0.5) if kind != "focused_linear" else rnd(D, 4, std=0.5)
    if kind == "agent":
        kw.update(
            agents=rnd(H, 5, D), agent_bias_k=rnd(H, 5, 64, std=0.3), agent_bias_q=rnd(H, 64, 5, std=0.3)
        )
    if kind == "gla":
        kw["log_decay"] = F.logsigmoid(rnd(B, T, H, D)) / decay_norm
    if kind == "slide":
        kw.update(window=5, slide_bias=rnd(H, 5, std=0.5), deform_weight=rnd(D, 5, 5, std=0.2))
    return q, k, v, kw


def naive(kind, q, k, v, kw, causal=True):
    if kind == "softmax":
        o = naive_softmax(q, k, v, causal=causal)
    elif kind == "focused_linear":
        o = naive_focused(q, k, v, causal=causal)
    elif kind == "inline":
        o = naive_inline(q, k, v)
    elif kind == "agent":
        o = naive_agent(q, k, v, kw["agents"], kw.get("agent_bias_k"), kw.get("agent_bias_q"), causal=causal)
    elif kind == "slide":
        o = naive_slide(q, k, v, kw["window"], kw.get("slide_bias"), kw.get("deform_weight"))
    else:
        o = naive_gla(q, k, v, kw["log_decay"])
    if "conv_weight" in kw:
        o = o + naive_conv(v, kw["conv_weight"])
    return naive_gate(o, kw.get("gate"))


def sliced(kw, sl):
    """The per-token keyword arguments restricted to time slice ``sl``."""
    out = dict(kw)
    for name in ("gate", "log_decay"):
        if name in kw:
            out[name] = kw[name][:, sl]
    return out


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 16, 37])
@pytest.mark.parametrize("chunk", [8, 64])
def test_parallel_form_matches_naive_float64(kind, T, chunk):
    q, k, v, kw = make_case(kind, T=T, gate="elem" if kind in ("inline", "gla") else "head")
    o, state = attention(q, k, v, kind=kind, chunk_size=chunk, impl="reference", **kw)
    assert state is None
    torch.testing.assert_close(o, naive(kind, q, k, v, kw), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["softmax", "focused_linear", "inline", "agent"])
def test_noncausal_published_forms_match_naive(kind):
    q, k, v, kw = make_case(kind, T=12, conv=False)
    o, _ = attention(q, k, v, kind=kind, causal=False, impl="reference", **kw)
    if kind == "inline":  # published InLine: t -> N in every row
        c, N = q.shape[-1] ** -0.5, q.shape[1]
        a = torch.einsum("bihd,bjhd->bhij", q, k) * c / N
        w = a - a.sum(-1, keepdim=True) / N + 1 / N
        expected = naive_gate(torch.einsum("bhij,bjhd->bihd", w, v), kw["gate"])
    else:
        expected = naive(kind, q, k, v, kw, causal=False)
    torch.testing.assert_close(o, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_rollout_steps_match_parallel_float32(kind):
    """Prefill 7 tokens (returning the state), then 13 single-token steps == one parallel pass."""
    T, t1 = 20, 7
    q, k, v, kw = make_case(kind, T=T, dtype=torch.float32, seed=1)
    full, _ = attention(q, k, v, kind=kind, impl="reference", **kw)
    out, state = attention(
        q[:, :t1],
        k[:, :t1],
        v[:, :t1],
        kind=kind,
        return_state=True,
        impl="reference",
        **sliced(kw, slice(0, t1)),
    )
    outs = [out]
    for t in range(t1, T):
        o_t, state = attention(
            q[:, t : t + 1],
            k[:, t : t + 1],
            v[:, t : t + 1],
            kind=kind,
            state=state,
            impl="reference",
            **sliced(kw, slice(t, t + 1)),
        )
        outs.append(o_t)
    assert state.position == T
    scale = full.abs().max()
    torch.testing.assert_close(torch.cat(outs, 1) / scale, full / scale, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_split_run_equals_single_run_float64(kind):
    """First 9 tokens, then the remaining 14 as one chunk with the carried state (lower-right causal)."""
    q, k, v, kw = make_case(kind, T=23, seed=2)
    full, _ = attention(q, k, v, kind=kind, chunk_size=8, impl="reference", **kw)
    a, st = attention(
        q[:, :9],
        k[:, :9],
        v[:, :9],
        kind=kind,
        return_state=True,
        chunk_size=8,
        impl="reference",
        **sliced(kw, slice(0, 9)),
    )
    b, st = attention(
        q[:, 9:],
        k[:, 9:],
        v[:, 9:],
        kind=kind,
        state=st,
        chunk_size=8,
        impl="reference",
        **sliced(kw, slice(9, None)),
    )
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_step_from_empty_state_matches_parallel(kind):
    """Rolling out from empty_state() token by token (no prefill) reproduces the parallel form."""
    q, k, v, kw = make_case(kind, B=1, T=6, seed=3)
    full, _ = attention(q, k, v, kind=kind, impl="reference", **kw)
    conv = kw["conv_weight"].shape[-1] if "conv_weight" in kw else 0
    state = empty_state(
        kind, 1, 2, 8, 8, capacity=2 if kind != "slide" else 8, n_agents=5, conv_kernel=conv,
        window=kw.get("window"), dtype=q.dtype,
    )
    outs = []
    for t in range(6):
        o, state = attention(
            q[:, t : t + 1],
            k[:, t : t + 1],
            v[:, t : t + 1],
            kind=kind,
            state=state,
            impl="reference",
            **sliced(kw, slice(t, t + 1)),
        )
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind):
    """gradcheck through a prefix (state) and a continuation chunk, so state gradients are covered too."""
    q, k, v, kw = make_case(kind, B=1, T=8, H=2, D=4, seed=4)
    tensors = {"q": q, "k": k, "v": v, **{n: t for n, t in kw.items() if torch.is_tensor(t)}}
    static = {n: x for n, x in kw.items() if not torch.is_tensor(x)}  # slide's window
    names = list(tensors)
    inputs = tuple(t.clone().requires_grad_() for t in tensors.values())

    def f(*xs):
        d = {**dict(zip(names, xs)), **static}
        q_, k_, v_ = d.pop("q"), d.pop("k"), d.pop("v")
        a, st = attention(
            q_[:, :5],
            k_[:, :5],
            v_[:, :5],
            kind=kind,
            return_state=True,
            chunk_size=4,
            impl="reference",
            **sliced(d, slice(0, 5)),
        )
        b, _ = attention(
            q_[:, 5:],
            k_[:, 5:],
            v_[:, 5:],
            kind=kind,
            state=st,
            chunk_size=4,
            impl="reference",
            **sliced(d, slice(5, None)),
        )
        return torch.cat([a, b], 1)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gate_zero_logits_halves_attention_and_large_logits_pass_it():
    q, k, v, _ = make_case("softmax", T=10, gate=None)
    plain, _ = attention(q, k, v, impl="reference")
    half, _ = attention(q, k, v, gate=torch.zeros(2, 10, 2), impl="reference")
    open_, _ = attention(q, k, v, gate=torch.full((2, 10, 2, 8), 50.0, dtype=q.dtype), impl="reference")
    torch.testing.assert_close(half, 0.5 * plain, atol=1e-14, rtol=0)
    torch.testing.assert_close(open_, plain, atol=1e-12, rtol=0)


def test_inline_rows_sum_to_one_and_can_be_negative():
    q, k, _, _ = make_case("inline", T=30, gate=None, conv=False)
    w = inline_weights(q, k)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-12, rtol=0)
    assert (w < 0).any()  # no positivity: that is what makes InLine injective
    # the kernel's closed form on a constant value row returns that constant (weights sum to 1)
    v = torch.ones(2, 30, 2, 8, dtype=q.dtype) * 3.0
    o, _ = attention(q, k, v, kind="inline", impl="reference")
    torch.testing.assert_close(o, v, atol=1e-12, rtol=0)


def test_stress_inputs_stay_finite_and_exact():
    # strong GLA decays (log alpha = logsigmoid(U)/0.1, as fla's tests): exponents would overflow if unmasked
    q, k, v, kw = make_case("gla", T=40, decay_norm=0.1, gate=None)
    o, _ = attention(q, k, v, kind="gla", chunk_size=16, impl="reference", **kw)
    torch.testing.assert_close(o, naive_gla(q, k, v, kw["log_decay"]), atol=1e-10, rtol=1e-10)
    # softmax with large q/k norms
    q, k, v, _ = make_case("softmax", T=20, gate=None)
    o, _ = attention(q * 30, k * 30, v, impl="reference")
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, naive_softmax(q * 30, k * 30, v), atol=1e-9, rtol=1e-9)
    # FLatten with all-negative pre-ReLU inputs: dead features, the 1e-6 floor keeps it finite
    q, k, v, _ = make_case("focused_linear", T=12, gate=None, conv=False)
    o, _ = attention(-q.abs(), -k.abs(), v, kind="focused_linear", impl="reference")
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, naive_focused(-q.abs(), -k.abs(), v), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("chunk", [None, 8])
def test_gla_factored_and_exact_chunk_forms_agree_with_naive(exact, chunk):
    from rlkit.kernels.reference import gla_chunked_core

    q, k, v, kw = make_case("gla", T=45, gate=None, seed=9)
    S0 = torch.randn(2, 2, 8, 8, dtype=q.dtype)
    o, S = gla_chunked_core(q, k, v, kw["log_decay"], 0.3, S0, chunk_size=chunk, exact=exact)
    torch.testing.assert_close(
        o, naive_gla(q, k, v, kw["log_decay"], scale=0.3, S0=S0), atol=1e-10, rtol=1e-10
    )
    o_ref, S_ref = gla_chunked_core(q, k, v, kw["log_decay"], 0.3, S0, chunk_size=5, exact=True)
    torch.testing.assert_close(S, S_ref, atol=1e-10, rtol=1e-10)


def test_gla_strong_decay_overflows_the_factored_form_so_auto_picks_exact():
    from rlkit.kernels.reference import gla_chunked_core

    q, k, v, kw = make_case("gla", T=64, gate=None, decay_norm=0.05, dtype=torch.float32)
    o_fact, _ = gla_chunked_core(q, k, v, kw["log_decay"], 0.3, exact=False)
    o_auto, _ = gla_chunked_core(q, k, v, kw["log_decay"], 0.3)
    assert not torch.isfinite(o_fact).all()  # exp(-b) overflows float32 within a 64-token chunk
    assert torch.isfinite(o_auto).all()
    expected = naive_gla(q.double(), k.double(), v.double(), kw["log_decay"].double(), scale=0.3)
    torch.testing.assert_close(o_auto.double(), expected, atol=1e-5, rtol=1e-5)


def test_kv_cache_appends_in_place_and_grows_by_doubling():
    cache = KVCache.empty(1, 2, 4, 4, capacity=3, dtype=torch.float64)
    buf = cache.k
    x = torch.randn(1, 2, 2, 4, dtype=torch.float64)
    c1 = cache.append(x, x)
    assert c1.k is buf and c1.length == 2  # spare capacity: written in place
    c2 = c1.append(x, x)
    assert c2.capacity == 6 and c2.length == 4 and c2.k is not buf  # full: capacity doubled
    torch.testing.assert_close(c2.keys(), torch.cat([x, x], 1))
    # while autograd records, appends are out of place (tensors saved for backward stay untouched)
    xr = x.clone().requires_grad_()
    c3 = c1.append(xr, xr)
    assert c3.k.requires_grad and c1.k is buf and c3.k is not buf


def test_prefill_capacity_and_long_rollout_with_cache_growth():
    q, k, v, _ = make_case("softmax", B=1, T=40, gate=None)
    full, _ = attention(q, k, v, impl="reference")
    out, st = attention(q[:, :5], k[:, :5], v[:, :5], return_state=True, capacity=6, impl="reference")
    outs = [out]
    for t in range(5, 40):
        o, st = attention(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], state=st, impl="reference")
        outs.append(o)
    assert st.capacity >= 40 and st.length == 40
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=1e-12)


def test_errors_are_one_line_and_name_the_fix(monkeypatch):
    q, k, v, _ = make_case("softmax", T=4, gate=None)
    with pytest.raises(ConfigError, match="unknown attention kind 'flash'"):
        attention(q, k, v, kind="flash")
    with pytest.raises(ConfigError, match="RLKIT_ATTENTION_IMPL"):
        attention(q, k, v, impl="cuda")
    monkeypatch.setenv("RLKIT_ATTENTION_IMPL", "fast")
    with pytest.raises(ConfigError, match="use 'reference' or 'triton'"):
        attention(q, k, v)
    monkeypatch.setenv("RLKIT_ATTENTION_IMPL", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
        attention(q, k, v)
    monkeypatch.delenv("RLKIT_ATTENTION_IMPL")
    with pytest.raises(ConfigError, match="non-causal inline attention has no rollout state"):
        attention(q, k, v, kind="inline", causal=False, return_state=True)
    with pytest.raises(ValueError, match="needs log_decay"):
        attention(q, k, v, kind="gla")
    with pytest.raises(ValueError, match="takes a KVCache state"):
        attention(q, k, v, state=empty_state("gla", 2, 2, 8, 8))
    _, _, _, kw = make_case("agent", T=4, conv=False)
    late = dataclasses.replace(empty_state("agent", 2, 2, 8, 8, n_agents=5, dtype=q.dtype), count=62)
    with pytest.raises(ConfigError, match="exceeds the bias table length"):
        attention(q, k, v, kind="agent", state=late, **kw)
