"""rlkit.nets.slide2d: the published 2-D Slide Attention against explicit neighbourhood loops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rlkit.errors import ConfigError
from rlkit.nets.slide2d import SlideAttention2d, SlideBlock2d


def neighbourhood_attention(m: SlideAttention2d, x, deform=None):
    """Loops over pixels and the k x k neighbours: zero keys/values outside the map (logit = bias), and the
    deformed key of neighbour j = shifted key + sum over the window of deform[c, j, a, b] * k[c, a, b]."""
    N, C, H, W = x.shape
    h, d, ks = m.heads, m.head_dim, m.ks
    r = ks // 2
    q, k, v = (t.reshape(N, h, d, H, W) for t in m.qkv(x).chunk(3, dim=1))
    kp, vp = F.pad(k, (r, r, r, r)), F.pad(v, (r, r, r, r))
    out = torch.zeros(N, h, d, H, W, dtype=x.dtype)
    for i in range(H):
        for j in range(W):
            kwin = kp[..., i : i + ks, j : j + ks].reshape(N, h, d, ks * ks)  # neighbour n = a * ks + b
            vwin = vp[..., i : i + ks, j : j + ks].reshape(N, h, d, ks * ks)
            if deform is not None:  # deform [d, n, ks * ks]
                kwin = kwin + torch.einsum("nhca,cja->nhcj", kwin, deform)
                vwin = vwin + torch.einsum("nhca,cja->nhcj", vwin, deform)
            s = torch.einsum("nhc,nhcj->nhj", q[..., i, j], kwin) * d**-0.5 + m.bias[None]
            out[..., i, j] = torch.einsum("nhj,nhcj->nhc", s.softmax(-1), vwin)
    return m.proj(out.reshape(N, C, H, W))


@pytest.mark.parametrize("deformed", [False, True])
def test_matches_explicit_neighbourhood_loops(deformed):
    torch.manual_seed(0)
    m = SlideAttention2d(8, heads=2, kernel_size=3).double()
    with torch.no_grad():
        m.bias.normal_()
        if deformed:
            m.deform.normal_(0, 0.3)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    deform = m.deform.detach().view(4, 9, 3, 3).reshape(4, 9, 9) if deformed else None
    torch.testing.assert_close(m(x), neighbourhood_attention(m, x, deform), atol=1e-12, rtol=1e-12)


def test_not_causal_sees_both_sides_and_only_its_neighbourhood():
    torch.manual_seed(1)
    m = SlideAttention2d(4, heads=1).double()
    x = torch.randn(1, 4, 7, 7, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 3, 5] += 1.0  # two columns right of the centre pixel (3, 3)
    a, b = m(x), m(x2)
    assert not torch.allclose(a[..., 3, 4], b[..., 3, 4])  # a right-hand neighbour: non-causal
    torch.testing.assert_close(a[..., 3, 3], b[..., 3, 3])  # outside the 3x3 window: no effect


def test_block_gradients_and_bad_sizes():
    blk = SlideBlock2d(16, heads=2)
    x = torch.randn(3, 16, 8, 8, requires_grad=True)
    blk(x).square().mean().backward()
    assert x.grad is not None and blk.attn.deform.grad is not None and blk.attn.deform.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="multiple of heads"):
        SlideAttention2d(10, heads=3)


def released_neighbourhood_attention(m: SlideAttention2d, x):
    """The released SlideAttention (slide_swin.py) as explicit loops: the deformed neighbour j of every
    channel plus both conv biases (border neighbours included), and the bias table added to the keys."""
    N, C, H, W = x.shape
    h, d, ks = m.heads, m.head_dim, m.ks
    n, r = ks * ks, ks // 2
    q, k, v = (t.reshape(N, h, d, H, W) for t in m.qkv(x).chunk(3, dim=1))
    kp, vp = F.pad(k, (r, r, r, r)), F.pad(v, (r, r, r, r))
    deform = m.deform.view(d, n, ks, ks).reshape(d, n, n)
    conv_bias = (m.shift_bias + m.deform_bias).view(d, n)
    out = torch.zeros(N, h, d, H, W, dtype=x.dtype)
    for i in range(H):
        for j in range(W):
            kwin = kp[..., i : i + ks, j : j + ks].reshape(N, h, d, n)
            vwin = vp[..., i : i + ks, j : j + ks].reshape(N, h, d, n)
            kwin = kwin + torch.einsum("nhca,cja->nhcj", kwin, deform) + conv_bias
            vwin = vwin + torch.einsum("nhca,cja->nhcj", vwin, deform) + conv_bias
            s = torch.einsum("nhc,nhcj->nhj", q[..., i, j] * d**-0.5, kwin + m.bias[None, :, None, :])
            out[..., i, j] = torch.einsum("nhj,nhcj->nhc", s.softmax(-1), vwin)
    return m.proj(out.reshape(N, C, H, W))


def test_released_form_matches_its_loops_and_adds_the_mlp_sublayer():
    torch.manual_seed(2)
    m = SlideAttention2d(8, heads=2, form="released").double()
    with torch.no_grad():
        for p in (m.bias, m.deform, m.shift_bias, m.deform_bias):
            p.normal_(0, 0.3)
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), released_neighbourhood_attention(m, x), atol=1e-12, rtol=1e-12)
    m(x).square().sum().backward()  # two conv biases that always add: the same gradient each
    torch.testing.assert_close(m.shift_bias.grad, m.deform_bias.grad)
    ours, released = SlideBlock2d(8, heads=2), SlideBlock2d(8, heads=2, form="released")
    assert ours.mlp is None and released.mlp[0].out_features == 32
    with pytest.raises(ConfigError, match="form='swin'"):
        SlideAttention2d(8, heads=2, form="swin")
