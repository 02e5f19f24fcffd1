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
