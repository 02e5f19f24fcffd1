"""Causal slide attention (kernels reference): band-masked softmax, causality, ring-buffer rollout, merged
shifts, gradcheck and the refusals. The Triton kernel is checked in tests/test_attention_triton.py."""

from __future__ import annotations

import pytest
import torch

from rlkit.errors import ConfigError
from rlkit.kernels import SlideState, attention, empty_state
from tests.test_attention_reference import naive_slide


def _qkv(B=2, T=12, H=2, D=6, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, T, H, D, generator=gen, dtype=dtype) for _ in range(3))


def band_softmax(q, k, v, window, bias=None):
    """Quadratic causal softmax with a band mask 0 <= t - s < window and bias[h, t - s] on the logits."""
    T = q.shape[1]
    s = torch.einsum("bthd,bshd->bhts", q, k) * q.shape[-1] ** -0.5
    dist = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    band = (dist >= 0) & (dist < window)
    if bias is not None:
        s = s + torch.where(band, bias[:, dist.clamp(0, window - 1)], torch.zeros((), dtype=q.dtype))[None]
    s = s.masked_fill(~band, float("-inf"))
    return torch.einsum("bhts,bshd->bthd", s.softmax(-1), v)


@pytest.mark.parametrize("window", [1, 4, 12])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("deform", ["zero", "none"])  # zero: the deformed-shift path; none: chunked SDPA path
def test_zero_deformed_shift_is_band_masked_softmax(window, with_bias, deform):
    q, k, v = _qkv(T=12)
    bias = torch.randn(2, window, dtype=q.dtype) if with_bias else None
    zero = torch.zeros(6, window, window, dtype=q.dtype) if deform == "zero" else None
    o, _ = attention(q, k, v, kind="slide", window=window, slide_bias=bias, deform_weight=zero, impl="reference")
    torch.testing.assert_close(o, band_softmax(q, k, v, window, bias), atol=1e-12, rtol=1e-12)
    if window == 12 and bias is None:  # the window spans the sequence: plain causal softmax
        full, _ = attention(q, k, v, kind="softmax", impl="reference")
        torch.testing.assert_close(o, full, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("padding", ["mask", "zeros"])
def test_deformed_and_zero_padded_forms_match_loops(padding):
    q, k, v = _qkv(T=9, seed=1)
    bias, W = torch.randn(2, 4, dtype=q.dtype), torch.randn(2, 6, 4, 4, dtype=q.dtype) * 0.3  # per-head W
    o, _ = attention(q, k, v, kind="slide", window=4, slide_bias=bias, deform_weight=W, padding=padding)
    expected = torch.stack(
        [naive_slide(q[:, :, h : h + 1], k[:, :, h : h + 1], v[:, :, h : h + 1], 4, bias[h : h + 1], W[h],
                     zero_pad=padding == "zeros")[:, :, 0] for h in range(2)],
        dim=2,
    )  # fmt: skip
    torch.testing.assert_close(o, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("padding", ["mask", "zeros"])
def test_causal_a_perturbed_future_leaves_the_past_unchanged(padding):
    q, k, v = _qkv(T=16, seed=2)
    kw = dict(kind="slide", window=5, deform_weight=torch.randn(6, 5, 5, dtype=q.dtype) * 0.3, padding=padding)
    o, _ = attention(q, k, v, **kw)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, 10:] += torch.randn_like(x[:, 10:]) * 5
    o2, _ = attention(q2, k2, v2, **kw)
    torch.testing.assert_close(o2[:, :10], o[:, :10], atol=0, rtol=0)
    assert not torch.allclose(o2[:, 10:], o[:, 10:])


@pytest.mark.parametrize("deformed", [False, True])  # False: the one-token fast path over ring slots
@pytest.mark.parametrize("padding", ["mask", "zeros"])
def test_long_rollout_through_the_ring_buffer_equals_parallel_and_state_is_constant(deformed, padding):
    q, k, v = _qkv(T=30, seed=3)
    kw = dict(slide_bias=torch.randn(2, 4, dtype=q.dtype), padding=padding,
              deform_weight=torch.randn(6, 4, 4, dtype=q.dtype) * 0.3 if deformed else None)
    full, _ = attention(q, k, v, kind="slide", window=4, **kw)
    state = empty_state("slide", 2, 2, 6, 6, window=4, capacity=64, dtype=q.dtype)
    buf, outs = state.k, []
    for t in range(30):
        o, state = attention(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], kind="slide", state=state, **kw)
        outs.append(o)
        assert state.k.shape == (2, 3, 2, 6) and state.k is buf  # window - 1 slots, written in place
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(state.history()[0], k[:, -3:])
    # chunks of several tokens wrap the ring too
    a, st = attention(q[:, :7], k[:, :7], v[:, :7], kind="slide", window=4, return_state=True, **kw)
    b, st = attention(q[:, 7:9], k[:, 7:9], v[:, 7:9], kind="slide", state=st, **kw)
    c, st = attention(q[:, 9:], k[:, 9:], v[:, 9:], kind="slide", state=st, **kw)
    torch.testing.assert_close(torch.cat([a, b, c], 1), full, atol=1e-12, rtol=1e-12)
    assert isinstance(st, SlideState) and st.position == 30


def test_merged_shift_weights_equal_the_training_form():
    """Re-parameterization (Pan et al. 2023, Sec. 3.3): one conv with weights I + W == Shift + DConv(W)."""
    q, k, v = _qkv(T=14, seed=4)
    W = torch.randn(6, 5, 5, dtype=q.dtype) * 0.3
    train, _ = attention(q, k, v, kind="slide", window=5, deform_weight=W)
    merged, _ = attention(q, k, v, kind="slide", window=5, shift_weight=torch.eye(5, dtype=q.dtype) + W)
    torch.testing.assert_close(merged, train, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("T,padding", [(70, "mask"), (70, "zeros"), (5, "mask")])
def test_chunked_band_form_equals_the_window_form(T, padding):
    """Chunks of 64 queries (ragged last chunk) with a state in front give the loop form's values."""
    from rlkit.kernels.reference_slide import slide_band_sdpa, slide_core, slide_windows

    q, k, v = _qkv(T=T + 3, seed=6)
    bias = torch.randn(2, 5, dtype=q.dtype)
    for past in (0, 3):
        K, V, Q = k[:, 3 - past :], v[:, 3 - past :], q[:, 3:]
        kw_, exists = slide_windows(K, past, 5)
        vw_, _ = slide_windows(V, past, 5)
        expected = slide_core(Q, kw_, vw_, exists, scale=0.4, bias=bias, padding=padding)
        got = slide_band_sdpa(Q, K, V, past, 5, scale=0.4, bias=bias, padding=padding)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)


def test_gradcheck_plain_slide_with_bias_through_a_state():
    q, k, v = (x.requires_grad_() for x in _qkv(B=1, T=9, H=2, D=3, seed=7))
    bias = torch.randn(2, 4, dtype=q.dtype, requires_grad=True)

    def f(q, k, v, bias):
        a, st = attention(q[:, :5], k[:, :5], v[:, :5], kind="slide", window=4, slide_bias=bias, return_state=True)
        b, _ = attention(q[:, 5:], k[:, 5:], v[:, 5:], kind="slide", state=st, slide_bias=bias)
        return torch.cat([a, b], 1)

    assert torch.autograd.gradcheck(f, (q, k, v, bias), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gradcheck_slide_with_bias_and_deformed_shift():
    q, k, v = (x.requires_grad_() for x in _qkv(B=1, T=7, H=2, D=3, seed=5))
    bias = torch.randn(2, 3, dtype=q.dtype, requires_grad=True)
    W = (torch.randn(3, 3, 3, dtype=q.dtype) * 0.3).requires_grad_()

    def f(q, k, v, bias, W):
        return attention(q, k, v, kind="slide", window=3, slide_bias=bias, deform_weight=W, padding="zeros")[0]

    assert torch.autograd.gradcheck(f, (q, k, v, bias, W), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_refusals_name_the_option():
    q, k, v = _qkv(T=4)
    for bad in (None, 0, -2):
        with pytest.raises(ConfigError, match="slide attention needs a positive integer window"):
            attention(q, k, v, kind="slide", window=bad)
    with pytest.raises(ConfigError, match="window=80 is larger than the cache capacity=64"):
        empty_state("slide", 1, 2, 6, 6, window=80, capacity=64)
    with pytest.raises(ConfigError, match="causal 1-D form; use causal=True"):
        attention(q, k, v, kind="slide", window=2, causal=False)
    with pytest.raises(ConfigError, match="slide padding='reflect'"):
        attention(q, k, v, kind="slide", window=2, padding="reflect")
    st = empty_state("slide", 2, 2, 6, 6, window=3, dtype=q.dtype)
    with pytest.raises(ConfigError, match="differs from the state's window=3"):
        attention(q, k, v, kind="slide", window=4, state=st)
