"""rlkit's ``transformer.norm=siamese`` stack against SiameseNorm's released DeiT blocks (Qwen-Applications/
SiameseNorm, ``deit-model-siamesenorm.py``: ``Block`` and the stream merge of
``VisionTransformer.forward_features``), update for update (:mod:`bench.fidelity.block_check`).

rlkit side: the transformer of ``rlkit train algo=storm algo.transformer.norm=siamese`` with the DeiT block's
layer choices (GELU FFN of width 4 d, biased Q/K/V and output projections, LayerNorm eps 1e-6, dropout off),
no position table and no input LayerNorm, so that the stack's input is the token embedding itself, as the
reference's ``x = pos_drop(x + pos_embed); y = x.clone()``.  Two blocks, so that the per-block scale
c_i = sqrt(2 (i + 1)) is checked at i = 0 and 1, then LN_final(LN_a(x) + LN_b(y)).

The reference's blocks and merge norms are built as its ``VisionTransformer.__init__`` builds them (the
patch embedding, class token and head around them are not part of the check).

Causality: the reference's ``Attention`` is bidirectional (a ViT) and rlkit's is causal.  The reference code
runs unmodified: layer by layer, its causal output at position t is the last output of the block run on the
prefix 0..t of that layer's (causal) inputs, which is exact (a softmax over the prefix is the masked softmax).
Layouts: rlkit's q/k/v projections are the row blocks of the reference's fused ``qkv``; the reference's
``pre_norm`` (applied to x) is rlkit's ``out_norm_x`` and its ``post_norm`` (applied to y) ``out_norm_y``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from bench.fidelity.block_check import BlockAdapter, import_file
from bench.fidelity.core import Case, default_dtype, rlkit_algorithm
from bench.fidelity.timm_layers import ensure_timm

D, HEADS, LAYERS, BATCH, T = 32, 4, 2, 3, 6
OVERRIDES = (
    "algo=storm", "env=atari100k-pong", "algo.encoder_channels=[8,16]",
    f"algo.transformer.d_model={D}", f"algo.transformer.n_heads={HEADS}", f"algo.transformer.n_layers={LAYERS}",
    f"algo.transformer.d_ff={4 * D}", "algo.transformer.dropout=0.0", "algo.transformer.attn_dropout=0.0",
    "algo.transformer.norm=siamese", "+algo.transformer.activation=gelu", "+algo.transformer.qkv_bias=true",
    "+algo.transformer.out_bias=true", "+algo.transformer.positions=none", "+algo.transformer.input_norm=false",
)
#: rlkit block parameter -> the reference Block's
_BLOCK = {"norm1": "post_norm1", "norm2": "post_norm2", "pre1": "pre_norm1", "in1": "input_norm1",
          "pre2": "pre_norm2", "in2": "input_norm2", "attn.out_proj": "attn.proj", "ffn.0": "mlp.fc1",
          "ffn.2": "mlp.fc2"}
_STACK = {"out_norm_x": "pre_norm", "out_norm_y": "post_norm", "final_norm": "final_norm"}


class SiameseAdapter(BlockAdapter):
    name = "siamese"
    reference = "Qwen-Applications/SiameseNorm"
    zero_grads = tuple(f"blocks.{i}.attn.k_proj.bias" for i in range(LAYERS))

    def cases(self) -> list[Case]:
        return [Case("siamese", OVERRIDES, note="two DeiT SiameseNorm blocks + merge; causal by prefixes")]

    def build(self, case: Case) -> None:
        ensure_timm()
        ref = import_file(self.path / "deit-model-siamesenorm.py", "fidelity_siamesenorm_deit")
        with default_dtype(torch.float64):
            algo = rlkit_algorithm(case.overrides, gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
                                   gym.spaces.Discrete(4))
            # VisionTransformer.__init__'s choices: LayerNorm eps 1e-6, GELU, qkv_bias=True, block index i
            norm = partial(nn.LayerNorm, eps=1e-6)
            blocks = nn.ModuleList(ref.Block(dim=D, num_heads=HEADS, mlp_ratio=4.0, qkv_bias=True, index=i,
                                             norm_layer=norm, act_layer=nn.GELU) for i in range(LAYERS))
            self.theirs = nn.ModuleDict({"blocks": blocks, "pre_norm": norm(D), "post_norm": norm(D),
                                         "final_norm": norm(D)})
        self.ours = algo.world_model.transformer

    def _pairs(self) -> dict[str, tuple[str, Any]]:
        """rlkit parameter name -> (reference parameter name, row slice of a fused tensor or None)."""
        out: dict[str, tuple[str, Any]] = {}
        for i in range(LAYERS):
            for ours, theirs in _BLOCK.items():
                for leaf in ("weight", "bias"):
                    out[f"blocks.{i}.{ours}.{leaf}"] = (f"blocks.{i}.{theirs}.{leaf}", None)
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                for leaf in ("weight", "bias"):
                    out[f"blocks.{i}.attn.{proj}.{leaf}"] = (f"blocks.{i}.attn.qkv.{leaf}", slice(j * D, (j + 1) * D))
        for ours, theirs in _STACK.items():
            for leaf in ("weight", "bias"):
                out[f"{ours}.{leaf}"] = (f"{theirs}.{leaf}", None)
        return out

    def copy_into_reference(self) -> None:
        ours, theirs = dict(self.ours.named_parameters()), dict(self.theirs.named_parameters())
        for name, (ref_name, rows) in self._pairs().items():
            target = theirs[ref_name] if rows is None else theirs[ref_name][rows]
            target.copy_(ours[name])

    def reference_tensors(self, grad: bool) -> dict[str, Tensor]:
        theirs = dict(self.theirs.named_parameters())
        out = {}
        for name, (ref_name, rows) in self._pairs().items():
            t = theirs[ref_name].grad if grad else theirs[ref_name]
            out[name] = t if rows is None else t[rows]
        return out

    def input_shape(self) -> tuple[int, ...]:
        return (BATCH, T, D)

    def forward_ours(self, x: Tensor) -> Tensor:
        return self.ours(x)

    def forward_theirs(self, x: Tensor) -> Tensor:
        y = x.clone()
        for blk in self.theirs["blocks"]:
            outs = [blk(x[:, : t + 1], y[:, : t + 1]) for t in range(x.shape[1])]
            x = torch.stack([o[0][:, -1] for o in outs], dim=1)
            y = torch.stack([o[1][:, -1] for o in outs], dim=1)
        return self.theirs["final_norm"](self.theirs["pre_norm"](x) + self.theirs["post_norm"](y))
