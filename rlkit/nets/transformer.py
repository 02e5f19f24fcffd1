"""Causal transformer block stack with an attention kind from config and O(1)-per-step rollout.

``CausalTransformer(cfg)`` maps fused tokens [B, T, d_model] to hidden states h [B, T, d_model]:
    x = tokens + pos(position); x = LayerNorm(x) (``input_norm``); x = dropout(x) (``embed_dropout``)
    post-norm block (STORM):  x = LN(x + drop(Attn(x)));  x = LN(x + drop(FFN(x)))
    pre-norm block:           x = x + drop(Attn(LN(x)));  x = x + drop(FFN(LN(x)));  final LN
    siamese (SiameseNorm, Li et al. ICML 2026, Sec. 3): two streams x = y = embedding; block i, per
        sublayer F: x = LN_post(x); z = drop(F(LN_in(x + LN_pre(y)))); x = x + z / c_i; y = y + z,
        c_i = sqrt(2 (i + 1)); output LN_final(LN_a(x) + LN_b(y)). Attention sees one input per token,
        so every kind and every rollout state work unchanged (all other ops are per token).
    Attn = out_proj(kernels.attention(q_proj x, k_proj x, v_proj x, kind=cfg.attention, gate=...))
    FFN = Linear(d_model, d_ff) -> activation -> Linear(d_ff, d_model)
There is no output projection: h_t has seen tokens <= t only.

Three ways to run it (all give the same h up to float error, dropout off):
* ``forward(tokens)``: training, all positions in parallel.
* ``prefill(tokens)`` = ``forward(tokens, return_state=True)``: also returns a :class:`TransformerState`
  (per layer a KV cache for softmax, preallocated to ``max_len`` positions, or the recurrent state of a
  linear kind, plus the position counter).
* ``step(token, state)``: one new token [B, d_model] per call, attending through the state, so imagining
  H steps costs O(1) attention work per step and layer for linear kinds and O(t) (one query against the
  cache, no re-projection of the history) for softmax; ``forward(tokens, state=state)`` appends a chunk.

STORM defaults (Zhang et al. 2023, the authors' released code; the defaults of :class:`TransformerConfig`):
2 layers, d_model 512, 8 heads (head dim 64), FFN 1024 with ReLU and biases, post-norm, LayerNorm eps
1e-6, learned absolute positions with 64 entries followed by a LayerNorm, Q/K/V/output projections
without bias, dropout 0.1 on the attention probabilities, on the projected attention output and after
the FFN, causal softmax attention. That stack has 4,235,264 parameters; STORM's token stem (Linear
1024+A -> 512, LN, ReLU, Linear 512 -> 512, LN: 797,696 + 512 A parameters) belongs to the STORM module
and brings the total to 5,032,960 for A = 18 (counted from the released layer layout). STORM's reference code caches
layer *inputs* and re-projects the whole history at each step; we cache projected K/V,
which gives the same outputs in eval mode.

Kind-specific parameters (papers cited in :mod:`rlkit.kernels.reference`; choices marked [ours] are not
from a paper):
* gate ('headwise' | 'elementwise'): sigmoid output gate from the attention input (Qiu et al. 2025, G1);
  a Linear d_model -> H (or d_model) with bias iff ``qkv_bias``, default init (as the reference code).
* focused_linear: learnable per-channel scale s (init 0), q, k <- q, k / softplus(s) before the focused
  map (as FLatten); causal depthwise conv on V with ``conv_kernel`` taps per channel [ours: per head
  channel rather than shared across heads]; FLatten's extra key position embedding is left out (the
  stack already adds positions).
* inline: feature map ``inline_feature``; the local term is the static causal conv [ours: the published one sees
  the future].
* agent: ``n_agents`` learned agent tokens per head (init N(0, 1/head_dim)) [ours: the paper pools
  queries, which sees the future]; optional learned position biases [H, n, max_len] / [H, max_len, n] (trunc-normal
  0.02).
* slide (Slide-Transformer, Pan et al. CVPR 2023, Sec. 3.2-3.3; causal 1-D form [ours]): softmax over
  the last ``window`` tokens with a per-head, per-offset logit bias (``slide_bias``, init 0) and the
  learned deformed shift (``slide_deform``): a depthwise conv W [head_dim, w, w] shared by heads (as the
  reference code), the same for K and V, initialised to zero so that a new layer is exact windowed
  softmax. :meth:`CausalTransformer.merge_slide_shifts` re-parameterizes it for inference (Sec. 3.3:
  one conv with weights I + W; exact zero W runs the plain windowed kernel); the merge is dropped as soon
  as W changes. Rollout state: ring buffers of the last w - 1 keys and values.
* gla: q, k widths d_model * ``gla_expand_k``; low-rank forget gate log alpha =
  logsigmoid(W2 W1 x + b) / ``gla_gate_normalizer`` with rank ``gla_gate_rank`` (fla defaults 0.5, 16,
  16; fla's output RMSNorm and swish gate are not reproduced: use ``gate`` for output gating).
Attention-probability dropout applies to softmax only (the linear kinds have no probabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit import kernels
from rlkit.errors import ConfigError
from rlkit.kernels import AttentionState

__all__ = [
    "TransformerConfig",
    "TransformerState",
    "CausalSelfAttention",
    "TransformerBlock",
    "SiameseBlock",
    "CausalTransformer",
]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


@dataclass
class TransformerConfig:
    """Hyperparameters of :class:`CausalTransformer`; defaults reproduce STORM's sequence model."""

    d_model: int = 512
    n_layers: int = 2
    n_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.1
    embed_dropout: float = 0.0
    norm: str = "post"
    norm_eps: float = 1e-6
    final_norm: bool | None = None  # None: True for pre-norm, False for post-norm
    positions: str = "learned"
    max_len: int = 64
    input_norm: bool = True
    qkv_bias: bool = False
    out_bias: bool = False
    ffn_bias: bool = True
    activation: str = "relu"
    attention: str = "softmax"
    gate: str = "none"
    conv_kernel: int = 3
    focusing_factor: float = 3.0
    inline_feature: str = "identity"
    n_agents: int = 16
    agent_position_bias: bool = False
    gla_expand_k: float = 0.5
    gla_gate_rank: int = 16
    gla_gate_normalizer: float = 16.0
    window: int = 16  # slide: tokens each query sees (itself and window - 1 before it)
    slide_bias: bool = True  # slide: per-head, per-offset logit bias
    slide_deform: bool = True  # slide: learned deformed shift (zero-initialised)
    slide_padding: str = "mask"  # slide: 'mask' offsets before the start, or 'zeros' (published)
    cache_capacity: int | None = None  # KV-cache preallocation of prefill(); None: max_len
    attention_impl: str | None = None  # 'reference' | 'triton' | None (device default)

    def __post_init__(self) -> None:
        def bad(name: str, value, fix: str) -> ConfigError:
            return ConfigError(f"transformer {name}={value!r} is invalid; {fix}")

        if self.d_model <= 0 or self.n_heads <= 0 or self.d_model % self.n_heads:
            raise bad("d_model", self.d_model, f"it must be a positive multiple of n_heads={self.n_heads}")
        if self.n_layers < 1 or self.d_ff < 1 or self.max_len < 1:
            raise bad("n_layers/d_ff/max_len", (self.n_layers, self.d_ff, self.max_len), "all must be >= 1")
        if self.norm not in ("post", "pre", "siamese"):
            raise bad("norm", self.norm, "use 'post', 'pre' or 'siamese'")
        if self.norm == "siamese" and self.final_norm is not None:
            raise bad("final_norm", self.final_norm, "norm=siamese has its own merged output norm; leave it unset")
        if self.positions not in ("learned", "sinusoidal", "none"):
            raise bad("positions", self.positions, "use 'learned', 'sinusoidal' or 'none'")
        if self.attention not in kernels.KINDS:
            raise bad("attention", self.attention, f"use one of {', '.join(kernels.KINDS)}")
        if self.gate not in ("none", "headwise", "elementwise"):
            raise bad("gate", self.gate, "use 'none', 'headwise' or 'elementwise'")
        if self.activation not in _ACTIVATIONS:
            raise bad("activation", self.activation, f"use one of {', '.join(_ACTIVATIONS)}")
        for name in ("dropout", "attn_dropout", "embed_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, getattr(self, name), "it must lie in [0, 1)")
        if self.conv_kernel < 0 or self.n_agents < 1:
            raise bad(
                "conv_kernel/n_agents",
                (self.conv_kernel, self.n_agents),
                "need conv_kernel >= 0, n_agents >= 1",
            )
        if self.attention == "slide":
            if self.window < 1:
                raise bad("window", self.window, "slide attention needs a positive window")
            capacity = self.cache_capacity or self.max_len
            if self.window > capacity:
                raise bad(
                    "window", self.window, f"it exceeds the cache capacity {capacity} (cache_capacity or max_len)"
                )
            if self.slide_padding not in ("mask", "zeros"):
                raise bad("slide_padding", self.slide_padding, "use 'mask' or 'zeros'")
        if self.attention == "gla" and int(self.head_dim * self.gla_expand_k) < 1:
            raise bad("gla_expand_k", self.gla_expand_k, "head_dim * gla_expand_k must be >= 1")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def qk_dim(self) -> int:
        """Per-head query/key width (smaller for gla with expand_k < 1)."""
        return int(self.head_dim * self.gla_expand_k) if self.attention == "gla" else self.head_dim

    @property
    def uses_final_norm(self) -> bool:
        return self.norm in ("pre", "siamese") if self.final_norm is None else self.final_norm


@dataclass
class TransformerState:
    """Rollout state of the whole stack: one attention state per layer and the next token's position."""

    layers: list[AttentionState] = field(default_factory=list)
    position: int = 0

    def detach(self) -> TransformerState:
        return TransformerState([s.detach() for s in self.layers], self.position)

    def clone(self) -> TransformerState:
        """An independent copy (KV caches are written in place: clone before branching a rollout)."""
        return TransformerState([s.clone() for s in self.layers], self.position)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention of kind ``cfg.attention`` ([B, T, H, D] inside; see module doc)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H, hd, dk = cfg.n_heads, cfg.head_dim, cfg.qk_dim
        self.q_proj = nn.Linear(cfg.d_model, H * dk, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, H * dk, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.out_bias)
        self.gate_proj = None
        if cfg.gate != "none":
            self.gate_proj = nn.Linear(
                cfg.d_model, H if cfg.gate == "headwise" else cfg.d_model, bias=cfg.qkv_bias
            )
        kind = cfg.attention
        self.conv_weight = None
        if kind in ("focused_linear", "inline", "agent") and cfg.conv_kernel > 0:
            bound = 1.0 / math.sqrt(cfg.conv_kernel)
            self.conv_weight = nn.Parameter(torch.empty(H, hd, cfg.conv_kernel).uniform_(-bound, bound))
        if kind == "focused_linear":
            self.focus_scale = nn.Parameter(torch.zeros(H, dk))
        if kind == "agent":
            self.agents = nn.Parameter(torch.randn(H, cfg.n_agents, dk) * dk**-0.5)
            self.agent_bias_k = self.agent_bias_q = None
            if cfg.agent_position_bias:
                self.agent_bias_k = nn.Parameter(
                    nn.init.trunc_normal_(torch.empty(H, cfg.n_agents, cfg.max_len), std=0.02)
                )
                self.agent_bias_q = nn.Parameter(
                    nn.init.trunc_normal_(torch.empty(H, cfg.max_len, cfg.n_agents), std=0.02)
                )
        if kind == "gla":
            self.decay_down = nn.Linear(cfg.d_model, cfg.gla_gate_rank, bias=False)
            self.decay_up = nn.Linear(cfg.gla_gate_rank, H * dk, bias=True)
        if kind == "slide":
            w = cfg.window
            self.slide_bias = nn.Parameter(torch.zeros(H, w)) if cfg.slide_bias else None
            self.slide_deform = nn.Parameter(torch.zeros(hd, w, w)) if cfg.slide_deform else None
            self._merged: tuple[int, Tensor | None] | None = None  # (version of slide_deform, I + W or None)

    def merge_slide_shift(self) -> None:
        """Re-parameterize the deformed shift for inference (Pan et al. 2023, Sec. 3.3): one set of shift
        weights M = I + W (None when W is exactly zero: the plain windowed kernel). Valid until W changes."""
        if self.slide_deform is None:
            return
        W = self.slide_deform.detach()
        merged = None if not W.any() else torch.eye(W.shape[-1], device=W.device, dtype=W.dtype) + W
        self._merged = (self.slide_deform._version, merged)

    def _slide_kwargs(self) -> dict:
        cfg = self.cfg
        kw: dict = dict(window=cfg.window, slide_bias=self.slide_bias, padding=cfg.slide_padding)
        if self.slide_deform is None:
            return kw
        if self._merged is not None and not self.training and self._merged[0] == self.slide_deform._version:
            kw["shift_weight"] = self._merged[1]
        else:
            kw["deform_weight"] = self.slide_deform
        return kw

    def forward(
        self,
        x: Tensor,
        state: AttentionState | None = None,
        return_state: bool = False,
        capacity: int | None = None,
    ) -> tuple[Tensor, AttentionState | None]:
        cfg = self.cfg
        B, T, _ = x.shape
        H, hd, dk = cfg.n_heads, cfg.head_dim, cfg.qk_dim
        q = self.q_proj(x).view(B, T, H, dk)
        k = self.k_proj(x).view(B, T, H, dk)
        v = self.v_proj(x).view(B, T, H, hd)
        kw: dict = {}
        if self.gate_proj is not None:
            g = self.gate_proj(x)
            kw["gate"] = g if cfg.gate == "headwise" else g.view(B, T, H, hd)
        kind = cfg.attention
        if kind == "softmax":
            kw.update(dropout_p=cfg.attn_dropout if self.training else 0.0, capacity=capacity)
        elif kind == "focused_linear":
            s = F.softplus(self.focus_scale)
            q, k = q / s, k / s
            kw.update(focusing_factor=cfg.focusing_factor, conv_weight=self.conv_weight)
        elif kind == "inline":
            kw.update(feature_map=cfg.inline_feature, conv_weight=self.conv_weight)
        elif kind == "agent":
            kw.update(
                agents=self.agents,
                agent_bias_k=self.agent_bias_k,
                agent_bias_q=self.agent_bias_q,
                conv_weight=self.conv_weight,
            )
        elif kind == "gla":
            logits = self.decay_up(self.decay_down(x)).view(B, T, H, dk)
            kw["log_decay"] = F.logsigmoid(logits.float()) / cfg.gla_gate_normalizer
        elif kind == "slide":
            kw.update(self._slide_kwargs())
        o, new_state = kernels.attention(
            q, k, v, kind=kind, state=state, return_state=return_state, impl=cfg.attention_impl, **kw
        )
        return self.out_proj(o.reshape(B, T, cfg.d_model)), new_state


class TransformerBlock(nn.Module):
    """Attention + feed-forward with residuals, post-norm (STORM) or pre-norm."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attn = CausalSelfAttention(cfg)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.ffn_bias),
            _ACTIVATIONS[cfg.activation](),
            nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.ffn_bias),
        )
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop_attn = nn.Dropout(cfg.dropout)
        self.drop_ffn = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        state: AttentionState | None = None,
        return_state: bool = False,
        capacity: int | None = None,
    ) -> tuple[Tensor, AttentionState | None]:
        if self.cfg.norm == "post":
            a, state = self.attn(x, state, return_state, capacity)
            x = self.norm1(x + self.drop_attn(a))
            return self.norm2(x + self.drop_ffn(self.ffn(x))), state
        a, state = self.attn(self.norm1(x), state, return_state, capacity)
        x = x + self.drop_attn(a)
        return x + self.drop_ffn(self.ffn(self.norm2(x))), state


class SiameseBlock(TransformerBlock):
    """SiameseNorm block i (Li et al., ICML 2026, Sec. 3; the authors' DeiT block): streams (x, y), and for
    each sublayer F (attention, then FFN) with c_i = sqrt(2 (i + 1)):
        x = LN_post(x);  z = drop(F(LN_in(x + LN_pre(y))));  x = x + z / c_i;  y = y + z.
    Three LayerNorms per sublayer; ``norm1``/``norm2`` of the parent serve as the two LN_post."""

    def __init__(self, cfg: TransformerConfig, index: int) -> None:
        super().__init__(cfg)
        self.c = math.sqrt(2.0 * (index + 1))
        self.pre1, self.in1, self.pre2, self.in2 = (nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) for _ in range(4))

    def forward(  # type: ignore[override]
        self,
        xy: tuple[Tensor, Tensor],
        state: AttentionState | None = None,
        return_state: bool = False,
        capacity: int | None = None,
    ) -> tuple[tuple[Tensor, Tensor], AttentionState | None]:
        x, y = xy
        x = self.norm1(x)
        z, state = self.attn(self.in1(x + self.pre1(y)), state, return_state, capacity)
        z = self.drop_attn(z)
        x, y = x + z / self.c, y + z
        x = self.norm2(x)
        z = self.drop_ffn(self.ffn(self.in2(x + self.pre2(y))))
        return (x + z / self.c, y + z), state


def sinusoidal_positions(positions: Tensor, dim: int) -> Tensor:
    """Vaswani et al. (2017): PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(same)."""
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    angles = positions.float()[:, None] / torch.pow(10000.0, half / dim)[None, :]
    pe = torch.zeros(positions.shape[0], dim, device=positions.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return pe


class CausalTransformer(nn.Module):
    """Stack of :class:`TransformerBlock` over fused tokens; ``forward`` (parallel), ``prefill``, ``step``."""

    def __init__(self, cfg: TransformerConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = cfg or TransformerConfig(**overrides)
        self.cfg = cfg
        self.pos_embedding = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        self.input_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.input_norm else nn.Identity()
        self.embed_drop = nn.Dropout(cfg.embed_dropout)
        siamese = cfg.norm == "siamese"
        self.blocks = nn.ModuleList(
            SiameseBlock(cfg, i) if siamese else TransformerBlock(cfg) for i in range(cfg.n_layers)
        )
        self.final_norm = (
            nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.uses_final_norm else nn.Identity()
        )
        if siamese:  # SiameseNorm output: LN_final(LN_a(x) + LN_b(y))
            self.out_norm_x = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
            self.out_norm_y = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)

    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        cfg = self.cfg
        if tokens.dim() != 3 or tokens.shape[-1] != cfg.d_model:
            raise ValueError(f"transformer tokens must be [B, T, {cfg.d_model}], got {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if cfg.positions != "none":
            pos = torch.arange(start, start + T, device=tokens.device)
            if cfg.positions == "learned":
                if start + T > cfg.max_len:
                    raise ConfigError(
                        f"transformer position {start + T - 1} exceeds the learned table "
                        f"(max_len={cfg.max_len}); raise max_len or shorten the context + horizon"
                    )
                pe = self.pos_embedding(pos)
            else:
                pe = sinusoidal_positions(pos, cfg.d_model)
            tokens = tokens + pe.to(tokens.dtype)
        return self.embed_drop(self.input_norm(tokens))

    def forward(
        self,
        tokens: Tensor,
        state: TransformerState | None = None,
        return_state: bool = False,
        capacity: int | None = None,
    ) -> Tensor | tuple[Tensor, TransformerState]:
        """h [B, T, d_model] for tokens [B, T, d_model]; with ``state`` (continuation) or
        ``return_state`` (prefill) returns ``(h, new_state)``."""
        start = state.position if state is not None else 0
        x = self._embed(tokens, start)
        want_state = state is not None or return_state
        capacity = capacity or self.cfg.cache_capacity or self.cfg.max_len
        new_layers = []
        if self.cfg.norm == "siamese":
            x = (x, x)  # both streams start at the embedding
        for i, block in enumerate(self.blocks):
            x, st = block(x, state.layers[i] if state is not None else None, want_state, capacity)
            new_layers.append(st)
        if self.cfg.norm == "siamese":
            x = self.out_norm_x(x[0]) + self.out_norm_y(x[1])
        x = self.final_norm(x)
        if not want_state:
            return x
        return x, TransformerState(new_layers, start + tokens.shape[1])

    def prefill(self, tokens: Tensor, capacity: int | None = None) -> tuple[Tensor, TransformerState]:
        """Process a context in parallel and return (h [B, T, d_model], state for :meth:`step`)."""
        return self.forward(tokens, return_state=True, capacity=capacity)

    def step(self, token: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """One new token [B, d_model] (or [B, 1, d_model]) -> (h [B, d_model], updated state)."""
        squeeze = token.dim() == 2
        h, state = self.forward(token[:, None] if squeeze else token, state=state)
        return (h[:, 0] if squeeze else h), state

    def merge_slide_shifts(self) -> None:
        """Re-parameterize every slide layer's deformed shift for inference (see the module docstring)."""
        for block in self.blocks:
            block.attn.merge_slide_shift()

    def init_state(
        self, batch: int, *, device=None, dtype: torch.dtype = torch.float32, capacity: int | None = None
    ) -> TransformerState:
        """An empty state (nothing seen), for rolling out from the first token with :meth:`step`."""
        cfg = self.cfg
        conv = cfg.conv_kernel if cfg.attention in ("focused_linear", "inline", "agent") else 0
        layers = [
            kernels.empty_state(
                cfg.attention,
                batch,
                cfg.n_heads,
                cfg.qk_dim,
                cfg.head_dim,
                capacity=capacity or cfg.cache_capacity or cfg.max_len,
                n_agents=cfg.n_agents,
                conv_kernel=conv,
                window=cfg.window if cfg.attention == "slide" else None,
                device=device,
                dtype=dtype,
            )
            for _ in self.blocks
        ]
        return TransformerState(layers, 0)
