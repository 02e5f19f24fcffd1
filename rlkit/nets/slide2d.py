"""2-D Slide Attention block for pixel encoders (Pan et al., "Slide-Transformer", CVPR 2023, Sec. 3.2-3.3).

Published, non-causal form on a feature map x [N, C, H, W] with ``heads`` heads of width d = C / heads:

    q, k, v = 1x1 conv(x);  for each of the k x k neighbours j of a pixel:
    K'_j = Shift_j(k) + DConv_j(k),  V'_j = Shift_j(v) + DConv_j(v)      (depthwise, zero padding)
    s_j = scale * q . K'_j + b[h, j];  out = proj( sum_j softmax_j(s) V'_j )

Shift_j is a fixed one-hot depthwise kernel (1 at neighbour j); DConv is a learned depthwise conv with the
same k^2 outputs per channel, shared by heads and applied to K and V alike (as the reference code),
initialised to zero so the block starts as plain neighbourhood attention. Both are linear and depthwise,
so they run as ONE depthwise conv with weights Shift + DConv: the paper's re-parameterization (Sec. 3.3),
used here in training as well (same values, same gradients). Borders: zero keys (logit b[h, j]) and zero
values, as the published zero padding. b is a per-head, per-neighbour scalar logit bias [ours],
initialised to zero. :class:`SlideBlock2d` wraps it as a pre-norm residual block: x + Attn(LN_channels(x)).

``form="released"`` reproduces the authors' released block (LeapLabTHU/Slide-Transformer,
``slide_transformer/models/slide_swin.py``: ``SlideAttention`` inside a ``SwinTransformerBlock`` whose window
is the whole map, as its ``BasicLayer`` sets for slide stages), which differs from the form above in three ways:
* the bias table is added to the deformed *keys*, broadcast over the head's channels:
  s_j = scale * q . (K'_j + b[h, j]) = scale * q . K'_j + scale * b[h, j] * sum(q) (not V');
* both depthwise convs carry a learned bias per output channel (``dep_conv.bias``: the fixed shift's,
  ``dep_conv1.bias``: the deformed conv's), added to K' and V' alike, zero-padded border neighbours included;
  they are two parameters (each gets the same gradient, so an optimizer moves their sum twice as fast as one);
* the block has a second, feed-forward sublayer: x + MLP(LN_2(x)), MLP = Linear(C, 4C), GELU, Linear(4C, C).
Initialisation is rlkit's in both forms (zero deformed shift, conv biases and bias table; the released code draws
``dep_conv1`` and both conv biases from PyTorch's default init and the table from a 0.02 truncated normal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.errors import ConfigError

__all__ = ["SlideAttention2d", "SlideBlock2d", "SLIDE_FORMS"]

SLIDE_FORMS = ("ours", "released")


class SlideAttention2d(nn.Module):
    """Slide attention over the k x k neighbourhood of every pixel (module docstring); [N, C, H, W] -> same."""

    def __init__(self, channels: int, heads: int, kernel_size: int = 3, deform: bool = True,
                 form: str = "ours") -> None:
        super().__init__()
        if form not in SLIDE_FORMS:
            raise ConfigError(f"slide attention 2-D: form={form!r}; use one of {SLIDE_FORMS}")
        if heads < 1 or channels % heads or kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(
                f"slide attention 2-D: channels={channels} must be a multiple of heads={heads} and "
                f"kernel_size={kernel_size} a positive odd number"
            )
        self.heads, self.ks, self.form = heads, kernel_size, form
        self.head_dim = channels // heads
        n = kernel_size * kernel_size
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.bias = nn.Parameter(torch.zeros(heads, n))
        shift = torch.zeros(self.head_dim * n, 1, kernel_size, kernel_size)
        for j in range(n):  # output channel c * n + j of channel c: 1 at neighbour j
            shift[j::n, 0, j // kernel_size, j % kernel_size] = 1.0
        self.register_buffer("shift", shift, persistent=False)
        self.deform = nn.Parameter(torch.zeros_like(shift)) if deform else None
        self.shift_bias = self.deform_bias = None
        if form == "released":  # dep_conv.bias and dep_conv1.bias of the released SlideAttention
            self.shift_bias = nn.Parameter(torch.zeros(self.head_dim * n))
            self.deform_bias = nn.Parameter(torch.zeros(self.head_dim * n)) if deform else None

    def shift_weight(self) -> Tensor:
        """The merged depthwise kernels Shift + DConv [d * k^2, 1, k, k]."""
        return self.shift if self.deform is None else self.shift + self.deform

    def forward(self, x: Tensor) -> Tensor:
        N, C, H, W = x.shape
        h, d, n = self.heads, self.head_dim, self.ks * self.ks
        q, k, v = (t.reshape(N * h, d, H, W) for t in self.qkv(x).chunk(3, dim=1))
        w = self.shift_weight().to(x.dtype)
        conv_bias = None
        if self.shift_bias is not None:
            conv_bias = self.shift_bias if self.deform_bias is None else self.shift_bias + self.deform_bias
            conv_bias = conv_bias.to(x.dtype)
        kw = F.conv2d(k, w, conv_bias, padding=self.ks // 2, groups=d).view(N * h, d, n, H, W)
        vw = F.conv2d(v, w, conv_bias, padding=self.ks // 2, groups=d).view(N * h, d, n, H, W)
        s = torch.einsum("bdhw,bdjhw->bjhw", q, kw)
        bias = self.bias.to(x.dtype).repeat(N, 1)[:, :, None, None]  # [N * h, n, 1, 1]
        if self.form == "released":  # the table joins the keys: q . (K'_j + b_j) = q . K'_j + b_j sum(q)
            s = (s + bias * q.sum(1, keepdim=True)) * d**-0.5
        else:
            s = s * d**-0.5 + bias
        p = torch.softmax(s, dim=1)
        out = torch.einsum("bjhw,bdjhw->bdhw", p, vw).reshape(N, C, H, W)
        return self.proj(out)


class SlideBlock2d(nn.Module):
    """Pre-norm residual slide-attention block for a conv stage: x + Attn(LN over channels(x)); with
    ``form="released"`` also the released block's feed-forward sublayer x + MLP(LN_2(x)) (module docstring)."""

    def __init__(self, channels: int, heads: int, kernel_size: int = 3, form: str = "ours",
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = SlideAttention2d(channels, heads, kernel_size, form=form)
        self.norm2 = self.mlp = None
        if form == "released":
            hidden = int(channels * mlp_ratio)
            self.norm2 = nn.LayerNorm(channels)
            self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x + self.attn(y)
        if self.mlp is None:
            return x
        x = x.permute(0, 2, 3, 1)  # channels last for the per-pixel MLP
        return (x + self.mlp(self.norm2(x))).permute(0, 3, 1, 2)
