"""rlkit's 2-D slide attention encoder block (``algo.encoder_attention=slide``) against the authors' released
block (LeapLabTHU/Slide-Transformer, ``slide_transformer/models/slide_swin.py``: ``SwinTransformerBlock`` with
``is_slide=True`` and the window set to the whole map, as ``BasicLayer`` builds the slide stages), update for
update (:mod:`bench.fidelity.block_check`).

rlkit side: the block that ``rlkit train algo=storm algo.encoder_attention=slide`` puts after encoder stage 1
(64 channels, two heads of 32, 3x3 neighbourhood) on 8x8 feature maps, run on its own.  It differs from the
released block in its bias (a logit bias instead of a key bias), its convs (no biases) and its missing
feed-forward sublayer (see :mod:`rlkit.nets.slide2d`); ``algo.encoder_slide_form=released`` reproduces the
released block and is the case checked.  rlkit's zero-initialised bias table, deformed shift and conv biases
are set to N(0, 0.1^2) draws before the copy, so that every term is active from the first update.

Layouts: rlkit's 1x1 ``qkv`` conv orders its output channels (q | k | v) x head x channel, the released
``Linear`` head x (q | k | v) x channel; rlkit's ``bias`` [heads, k^2] is the released
``relative_position_bias_table`` [1, heads, 1, k^2, 1, 1]; rlkit's ``deform`` / ``shift_bias`` /
``deform_bias`` are ``dep_conv1.weight`` / ``dep_conv.bias`` / ``dep_conv1.bias`` (the fixed one-hot
``dep_conv.weight`` is rlkit's ``shift`` buffer; both are frozen).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from bench.fidelity.block_check import BlockAdapter
from bench.fidelity.core import Case, default_dtype, import_reference, rlkit_algorithm
from bench.fidelity.timm_layers import ensure_timm
from rlkit.nets.slide2d import SlideBlock2d

C, HEADS, KS, SIDE, BATCH = 64, 2, 3, 8, 3
OVERRIDES = ("algo=storm", "env=atari100k-pong", "algo.encoder_channels=[8,64]", "algo.encoder_attention=slide",
             "algo.encoder_attention_stage=1", "algo.transformer.d_model=32", "algo.transformer.n_heads=4")
SWITCH = "algo.encoder_slide_form=released"


class SlideAdapter(BlockAdapter):
    name = "slide"
    reference = "LeapLabTHU/Slide-Transformer"

    def cases(self) -> list[Case]:
        return [Case("slide", (*OVERRIDES, SWITCH), switch=SWITCH, note="one slide block, 8x8 maps, 2 heads")]

    def build(self, case: Case) -> None:
        ensure_timm()
        ref = import_reference(self.path / "slide_transformer", "models.slide_swin", isolate=["models"])
        with default_dtype(torch.float64):
            # 32x32 frames: stage 1 of encoder_channels [8, 64] gives 64 x 8 x 8 maps
            algo = rlkit_algorithm(case.overrides, gym.spaces.Box(0, 255, (4 * SIDE, 4 * SIDE, 3), np.uint8),
                                   gym.spaces.Discrete(4))
            self.theirs = ref.SwinTransformerBlock(dim=C, input_resolution=(SIDE, SIDE), num_heads=HEADS,
                                                   window_size=SIDE, shift_size=0, mlp_ratio=4.0, qkv_bias=True,
                                                   ka=KS, is_slide=True)
        (block,) = [m for m in algo.world_model.encoder.modules() if isinstance(m, SlideBlock2d)]
        self.ours = block
        with torch.no_grad():  # rlkit starts these at zero; random values exercise every term from update 1
            g = torch.Generator().manual_seed(0)
            for p in (block.attn.bias, block.attn.deform, block.attn.shift_bias, block.attn.deform_bias):
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        d = C // HEADS
        # rlkit qkv channel (part p, head h, channel c) = p*C + h*d + c; released row h*3d + p*d + c
        self.perm = torch.tensor([p * C + h * d + c for h in range(HEADS) for p in range(3) for c in range(d)])
        self.inverse = torch.argsort(self.perm)

    def _reference_views(self) -> dict[str, tuple[Tensor, object]]:
        """rlkit parameter name -> (released parameter, map from it to rlkit's layout)."""
        a, t = self.theirs.attn, self.theirs
        n = KS * KS
        return {
            "norm.weight": (t.norm1.weight, None), "norm.bias": (t.norm1.bias, None),
            "attn.qkv.weight": (a.qkv.weight, lambda w: w[self.inverse][:, :, None, None]),
            "attn.qkv.bias": (a.qkv.bias, lambda b: b[self.inverse]),
            "attn.proj.weight": (a.proj.weight, lambda w: w[:, :, None, None]), "attn.proj.bias": (a.proj.bias, None),
            "attn.bias": (a.relative_position_bias_table, lambda b: b.reshape(HEADS, n)),
            "attn.deform": (a.dep_conv1.weight, None),
            "attn.shift_bias": (a.dep_conv.bias, None), "attn.deform_bias": (a.dep_conv1.bias, None),
            "norm2.weight": (t.norm2.weight, None), "norm2.bias": (t.norm2.bias, None),
            "mlp.0.weight": (t.mlp.fc1.weight, None), "mlp.0.bias": (t.mlp.fc1.bias, None),
            "mlp.2.weight": (t.mlp.fc2.weight, None), "mlp.2.bias": (t.mlp.fc2.bias, None),
        }

    def copy_into_reference(self) -> None:
        ours = dict(self.ours.named_parameters())
        for name, (theirs, _) in self._reference_views().items():
            value = ours[name]
            if name == "attn.qkv.weight":
                value = value[:, :, 0, 0][self.perm]
            elif name == "attn.qkv.bias":
                value = value[self.perm]
            elif name == "attn.proj.weight":
                value = value[:, :, 0, 0]
            theirs.copy_(value.reshape(theirs.shape))
        # the fixed one-hot shift kernels are the same on both sides (frozen in both)
        torch.testing.assert_close(self.theirs.attn.dep_conv.weight, self.ours.attn.shift, rtol=0, atol=0)
        assert not self.theirs.attn.dep_conv.weight.requires_grad

    def reference_tensors(self, grad: bool) -> dict[str, Tensor]:
        out = {}
        for name, (theirs, to_ours) in self._reference_views().items():
            t = theirs.grad if grad else theirs
            out[name] = t if to_ours is None else to_ours(t)
        return out

    def input_shape(self) -> tuple[int, ...]:
        return (BATCH, C, SIDE, SIDE)

    def forward_ours(self, x: Tensor) -> Tensor:
        return self.ours(x)

    def forward_theirs(self, x: Tensor) -> Tensor:
        tokens = x.permute(0, 2, 3, 1).reshape(BATCH, SIDE * SIDE, C)
        return self.theirs(tokens).reshape(BATCH, SIDE, SIDE, C).permute(0, 3, 1, 2)
