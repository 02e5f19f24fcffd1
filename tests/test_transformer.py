"""rlkit.nets.transformer: parallel forward == prefill + incremental steps, for every attention kind."""

from __future__ import annotations

import pytest
import torch

from rlkit import kernels
from rlkit.errors import ConfigError
from rlkit.nets.transformer import CausalTransformer, TransformerConfig


def small_cfg(**kw) -> TransformerConfig:
    base = dict(
        d_model=32, n_layers=2, n_heads=4, d_ff=48, max_len=40, n_agents=3, window=3, attention_impl="reference"
    )
    base.update(kw)
    return TransformerConfig(**base)


def test_storm_defaults_and_parameter_count():
    """STORM's released transformer: 2 x 512 x 8 heads, FFN 1024, post-norm, 64 learned positions.

    Stack = positions 64*512 + input LN 1024 + 2 blocks x (4*512^2 attention + 1024 LN
    + 512*1024+1024 + 1024*512+512 FFN + 1024 LN) = 4,235,264; plus STORM's token stem for A = 18
    (1042*512 + 1024 + 512*512 + 1024 = 797,696) this is 5,032,960.
    """
    cfg = TransformerConfig()
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.d_ff, cfg.max_len, cfg.norm) == (
        512,
        2,
        8,
        64,
        1024,
        64,
        "post",
    )
    assert cfg.dropout == cfg.attn_dropout == 0.1 and cfg.norm_eps == 1e-6
    model = CausalTransformer(cfg)
    assert sum(p.numel() for p in model.parameters()) == 4_235_264
    assert 4_235_264 + 1042 * 512 + 1024 + 512 * 512 + 1024 == 5_032_960
    attn = model.blocks[0].attn
    assert attn.q_proj.bias is None and attn.out_proj.bias is None and model.blocks[0].ffn[0].bias is not None


CASES = [
    dict(attention="softmax"),
    dict(attention="softmax", gate="headwise", norm="pre", positions="sinusoidal"),
    dict(attention="softmax", gate="elementwise", positions="none", input_norm=False),
    dict(attention="focused_linear"),
    dict(attention="inline", gate="headwise"),
    dict(attention="agent", agent_position_bias=True),
    dict(attention="gla", norm="pre"),
    dict(attention="slide", window=5),
    dict(attention="slide", norm="siamese", slide_padding="zeros"),
    dict(attention="softmax", norm="siamese", gate="headwise"),
]


def _randomize_slide(model: CausalTransformer, std: float = 0.2) -> None:
    """Non-zero deformed shifts and biases (a fresh layer has them at zero); no-op for other kinds."""
    if model.cfg.attention != "slide":
        return
    with torch.no_grad():
        for block in model.blocks:
            for p in (block.attn.slide_deform, block.attn.slide_bias):
                if p is not None:
                    p.normal_(0.0, std)


@pytest.mark.parametrize("overrides", CASES, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_forward_equals_prefill_then_steps(overrides):
    torch.manual_seed(0)
    model = CausalTransformer(small_cfg(**overrides)).eval()
    _randomize_slide(model)
    tokens = torch.randn(3, 20, 32)
    with torch.no_grad():
        full = model(tokens)
        h_ctx, state = model.prefill(tokens[:, :8])
        outs = [h_ctx]
        for t in range(8, 20):
            h_t, state = model.step(tokens[:, t], state)
            assert h_t.shape == (3, 32)
            outs.append(h_t[:, None])
    assert state.position == 20
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["post", "siamese"])
@pytest.mark.parametrize("kind", kernels.KINDS)
def test_steps_from_empty_state_and_chunk_continuation(kind, norm):
    torch.manual_seed(1)
    model = CausalTransformer(small_cfg(attention=kind, gate="headwise", norm=norm)).eval()
    _randomize_slide(model)
    tokens = torch.randn(2, 11, 32)
    with torch.no_grad():
        full = model(tokens)
        state = model.init_state(2, capacity=3)  # small capacity: the KV cache grows on the way
        stepped = []
        for t in range(11):
            h, state = model.step(tokens[:, t], state)
            stepped.append(h)
        _, st = model.prefill(tokens[:, :4])
        chunk, st = model(tokens[:, 4:], state=st)  # a 7-token chunk after a 4-token prefix
    torch.testing.assert_close(torch.stack(stepped, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunk, full[:, 4:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind,norm", [("softmax", "post"), ("gla", "post"), ("slide", "siamese")])
def test_gradients_through_prefill_and_steps_match_parallel(kind, norm):
    """Training through a rollout (grad mode: the KV cache grows out of place) gives forward's gradients."""
    torch.manual_seed(2)
    model = CausalTransformer(small_cfg(attention=kind, norm=norm, dropout=0.0, attn_dropout=0.0))
    _randomize_slide(model)
    tokens = torch.randn(2, 9, 32)
    w = torch.randn(2, 9, 32)
    (model(tokens) * w).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    h, state = model.prefill(tokens[:, :5])
    outs = [h]
    for t in range(5, 9):
        h_t, state = model.step(tokens[:, t], state)
        outs.append(h_t[:, None])
    (torch.cat(outs, 1) * w).sum().backward()
    for a, b in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_storm_imagination_shape_and_branch_clone():
    """STORM imagination: 8 context tokens, then 16 steps (24 <= 64 positions); clone() before branching."""
    torch.manual_seed(3)
    model = CausalTransformer(small_cfg(max_len=64)).eval()
    x, y = torch.randn(5, 32), torch.randn(5, 32)
    with torch.no_grad():
        _, state = model.prefill(torch.randn(5, 8, 32))
        branch_a, branch_b = state.clone(), state.clone()
        h_x, _ = model.step(x, branch_a)
        model.step(y, state)  # writes position 8 of the original cache only
        h_x_again, _ = model.step(x, branch_b)
        for _ in range(16):
            h, state = model.step(torch.randn(5, 32), state)
    torch.testing.assert_close(h_x_again, h_x)
    assert h.shape == (5, 32) and state.position == 24


def test_learned_positions_overflow_and_bad_config_raise_config_error():
    model = CausalTransformer(small_cfg(max_len=6)).eval()
    _, state = model.prefill(torch.randn(1, 6, 32))
    with pytest.raises(ConfigError, match="exceeds the learned table"):
        model.step(torch.randn(1, 32), state)
    with pytest.raises(ConfigError, match="multiple of n_heads"):
        TransformerConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="attention='flash'"):
        TransformerConfig(attention="flash")
    with pytest.raises(ConfigError, match="norm='sandwich'"):
        TransformerConfig(norm="sandwich")


def test_dropout_active_in_training_only():
    torch.manual_seed(4)
    model = CausalTransformer(small_cfg(dropout=0.5, attn_dropout=0.5))
    x = torch.randn(2, 6, 32)
    assert not torch.allclose(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_siamese_norm_two_blocks_by_hand():
    """SiameseNorm (Li et al. 2026) with every LayerNorm set to identity: x = y = e, then per block i and
    sublayer F, z = F(x + y), x += z / sqrt(2 (i + 1)), y += z; output x + y."""
    torch.manual_seed(5)
    cfg = small_cfg(norm="siamese", dropout=0.0, attn_dropout=0.0, positions="none", input_norm=False)
    model = CausalTransformer(cfg).eval()
    for block in model.blocks:
        for name in ("norm1", "norm2", "pre1", "pre2", "in1", "in2"):
            setattr(block, name, torch.nn.Identity())
    model.out_norm_x = model.out_norm_y = model.final_norm = torch.nn.Identity()
    e = torch.randn(2, 7, 32)
    with torch.no_grad():
        x, y = e.clone(), e.clone()
        for i, block in enumerate(model.blocks):
            c = (2.0 * (i + 1)) ** 0.5
            z = block.attn(x + y)[0]
            x, y = x + z / c, y + z
            z = block.ffn(x + y)
            x, y = x + z / c, y + z
        torch.testing.assert_close(model(e), x + y, atol=1e-6, rtol=1e-6)
    c0, c1 = (b.c for b in model.blocks)
    assert c0 == pytest.approx(2**0.5) and c1 == pytest.approx(2.0)
    # with the LayerNorms in place: three per sublayer and the merged output norm
    full = CausalTransformer(cfg)
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in full.blocks[0].modules()) == 6
    assert all(isinstance(m, torch.nn.LayerNorm) for m in (full.out_norm_x, full.out_norm_y, full.final_norm))


@pytest.mark.parametrize("overrides", [dict(attention="slide", norm="siamese"), dict(norm="siamese")])
def test_causality_a_perturbed_future_leaves_the_past_unchanged(overrides):
    torch.manual_seed(6)
    model = CausalTransformer(small_cfg(**overrides)).eval()
    _randomize_slide(model)
    x = torch.randn(2, 12, 32)
    x2 = x.clone()
    x2[:, 8:] += 3 * torch.randn(2, 4, 32)
    with torch.no_grad():
        a, b = model(x), model(x2)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=0, rtol=0)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_merged_slide_shifts_equal_the_training_layer_and_expire_when_weights_change():
    """Re-parameterization (Pan et al. 2023, Sec. 3.3): inference with I + W == the training-time layer."""
    torch.manual_seed(7)
    model = CausalTransformer(small_cfg(attention="slide", window=4, dropout=0.0, attn_dropout=0.0))
    _randomize_slide(model)
    x = torch.randn(2, 15, 32)
    model.eval()
    with torch.no_grad():
        train_form = model(x)
        model.merge_slide_shifts()
        attn = model.blocks[0].attn
        assert "shift_weight" in attn._slide_kwargs() and "deform_weight" not in attn._slide_kwargs()
        merged = model(x)
        h, st = model.prefill(x[:, :6])
        steps = [h] + [model.step(x[:, t : t + 1], st)[0] for t in range(6, 7)]
    torch.testing.assert_close(merged, train_form, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.cat(steps, 1), train_form[:, :7], atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        attn.slide_deform.add_(0.1)  # an optimizer step: the merged weights are stale
    assert "deform_weight" in attn._slide_kwargs()
    model.train()
    assert "deform_weight" in model.blocks[1].attn._slide_kwargs()  # training always runs Shift + DConv
    # a fresh layer (W = 0) merges to the plain windowed kernel
    fresh = CausalTransformer(small_cfg(attention="slide")).eval()
    fresh.merge_slide_shifts()
    kw = fresh.blocks[0].attn._slide_kwargs()
    assert kw["shift_weight"] is None and kw["window"] == 3


def test_slide_and_siamese_refusals_name_the_option():
    with pytest.raises(ConfigError, match="window=0 is invalid"):
        TransformerConfig(attention="slide", window=0)
    with pytest.raises(ConfigError, match="window=80 is invalid; it exceeds the cache capacity 64"):
        TransformerConfig(attention="slide", window=80, max_len=64)
    with pytest.raises(ConfigError, match="final_norm=False is invalid; norm=siamese"):
        TransformerConfig(norm="siamese", final_norm=False)
    with pytest.raises(ConfigError, match="slide_padding='reflect'"):
        TransformerConfig(attention="slide", slide_padding="reflect")
