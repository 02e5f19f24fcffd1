"""Triton kernels under TRITON_INTERPRET=1 (CPU, fp32/fp16, tiny shapes) against float64 references.

``triton.jit`` picks the interpreter when the kernel modules are decorated, and the interpreter reads the
variable again at launch, so this module sets TRITON_INTERPRET=1 while it (re)imports kernels.triton_*
and, through an autouse fixture, during each of its tests only; the autotuned kernels then carry a single
configuration (Triton's interpreter needs a driver for several). What the interpreter
cannot show (compilation, dtype rules, bf16, autotuning, speed) is covered by the CUDA-only test at the
end, which runs in a fresh process without the interpreter and is skipped on machines without a GPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)


def _triton_imported_compiled() -> bool:
    """True when triton was imported in this process without the interpreter (its own @jit helpers,
    such as tl.sigmoid, are then compiled-mode functions that the interpreter cannot call)."""
    if "triton" not in sys.modules:
        return False
    import triton.language.standard as std
    from triton.runtime.interpreter import InterpretedFunction

    return not isinstance(std.sigmoid, InterpretedFunction)


IN_PROCESS = not _triton_imported_compiled()
ts = tlin = tgla = tslide = None
if IN_PROCESS:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:  # (re)import so that the kernels are decorated while the variable is set
        ts, tlin, tgla, tslide = (
            importlib.reload(sys.modules[n]) if n in sys.modules else importlib.import_module(n)
            for n in ("kernels.triton_softmax", "kernels.triton_linear", "kernels.triton_gla", "kernels.triton_slide")
        )
    finally:
        if _previous is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = _previous
    if _triton_imported_compiled():
        IN_PROCESS = False

from rlkit.kernels import KINDS, attention  # noqa: E402
from rlkit.kernels import reference as ref  # noqa: E402
from tests.test_attention_reference import make_case, naive_gla, naive_softmax, sliced  # noqa: E402


@pytest.fixture(autouse=True)
def interpret(request, monkeypatch):
    """The interpreter reads TRITON_INTERPRET at launch too (and the dispatcher, to accept CPU tensors)."""
    if request.node.name not in _OWN_PROCESS_TESTS and not IN_PROCESS:
        pytest.skip("triton was imported without the interpreter; test_in_fresh_process runs these")
    monkeypatch.setenv("TRITON_INTERPRET", "1")


_OWN_PROCESS_TESTS = ("test_in_fresh_process", "test_compiled_kernels_on_gpu_fp16_bf16_fp32")


def test_in_fresh_process(monkeypatch):
    """Fallback when another test imported triton first: rerun this file, interpreted from the start."""
    if IN_PROCESS:
        pytest.skip("the interpreted kernels run in this process")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def _grads(out, inputs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    outs = out if isinstance(out, tuple) else (out,)
    ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outs]
    loss = sum((o.double() * w).sum() for o, w in zip(outs, ws))
    return torch.autograd.grad(loss, inputs)


def _close(a, b, tol, label=""):
    """max |a - b| <= tol * max |b| (relative to the output scale)."""
    scale = b.abs().max().clamp_min(1e-12)
    err = (a.double() - b.double()).abs().max()
    assert err <= tol * scale, f"{label} max abs error {err:.3g} > {tol} x scale {scale:.3g}"


def _leaves(*ts_):
    return [t.detach().clone().requires_grad_() for t in ts_]


# ----------------------------------------------------------------------------------------------- softmax


@pytest.mark.parametrize(
    "Tq,Tk,DK,DV,causal,gate",
    [
        (37, 37, 16, 16, True, "head"),  # ragged T, several 16x16 tiles, staged causal loop
        (20, 33, 12, 20, True, "elem"),  # queries after a 13-token cache (lower-right), padded head dims
        (19, 19, 32, 32, False, None),  # non-causal
        (1, 24, 16, 16, True, None),  # one query against a cache, through the tiled kernel
    ],
)
def test_flash_attention_fp32_forward_backward(Tq, Tk, DK, DV, causal, gate):
    gen = torch.Generator().manual_seed(Tq + Tk)
    q, k, v = (torch.randn(2, T, 2, D, generator=gen) for T, D in ((Tq, DK), (Tk, DK), (Tk, DV)))
    g = {
        "head": torch.randn(2, Tq, 2, generator=gen),
        "elem": torch.randn(2, Tq, 2, DV, generator=gen),
        None: None,
    }[gate]
    leaves = _leaves(q, k, v) + (_leaves(g) if g is not None else [])
    out = ts.flash_attention(*leaves[:3], causal=causal, gate=leaves[3] if g is not None else None)
    dl = _leaves(*(x.double() for x in leaves))
    expected = naive_softmax(*dl[:3], causal=causal)
    if g is not None:
        expected = expected * torch.sigmoid(dl[3] if dl[3].dim() == 4 else dl[3][..., None])
    _close(out, expected, 1e-5)
    for a, b in zip(_grads(out, leaves), _grads(expected, dl)):
        _close(a, b, 1e-5)


def test_flash_attention_fp16_matches_tutorial_tolerance():
    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(1, 32, 2, 16, generator=gen) * 0.5 for _ in range(3))
    leaves = _leaves(q.half(), k.half(), v.half())
    out = ts.flash_attention(*leaves)
    assert out.dtype == torch.float16
    dl = _leaves(q.double(), k.double(), v.double())
    expected = naive_softmax(*dl)
    assert (out.double() - expected).abs().max() < 1e-2
    for a, b in zip(_grads(out, leaves), _grads(expected, dl)):
        assert (a.double() - b).abs().max() < 1e-2


def test_decode_kernel_matches_sdpa_with_gate():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (
        torch.randn(2, 3, 20, generator=gen),
        torch.randn(2, 40, 3, 20, generator=gen),
        torch.randn(2, 40, 3, 24, generator=gen),
    )
    gate = torch.randn(2, 3, generator=gen)
    o = ts.decode_attention(q, k, v, gate=gate)
    expected = F.scaled_dot_product_attention(
        q[:, :, None].double(), k.transpose(1, 2).double(), v.transpose(1, 2).double()
    )[:, :, 0]
    _close(o, expected * torch.sigmoid(gate.double())[..., None], 1e-6)


# ---------------------------------------------------------------------------------------- linear / GLA


@pytest.mark.parametrize("T,with_state,chunk", [(37, True, 16), (16, False, 64), (5, True, 64)])
def test_causal_linear_kernel_matches_reference_core(T, with_state, chunk):
    gen = torch.Generator().manual_seed(T)
    qf, kf = torch.rand(2, T, 2, 8, generator=gen), torch.rand(2, T, 2, 8, generator=gen)
    v = torch.randn(2, T, 2, 12, generator=gen)
    S0 = torch.randn(2, 2, 8, 12, generator=gen) if with_state else None
    z0 = torch.rand(2, 2, 8, generator=gen) if with_state else None
    leaves = _leaves(*(x for x in (qf, kf, v, S0, z0) if x is not None))
    out = tlin.causal_linear(*leaves, chunk_size=chunk)
    dl = _leaves(*(x.double() for x in leaves))
    expected = ref.causal_linear_core(*dl, chunk_size=7)
    for a, b in zip(out, expected):
        _close(a, b, 1e-5)
    for a, b in zip(_grads(out, leaves), _grads(expected, dl)):
        _close(a, b, 1e-5)


@pytest.mark.parametrize("T,with_state,decay_norm,DV", [(29, True, 1.0, 40), (16, False, 0.1, 16)])
def test_gla_recurrent_kernel_matches_naive(T, with_state, decay_norm, DV):
    """d_v = 40 runs as two d_v slices (32 + 8); decay_norm 0.1 is fla's strong-decay stress case."""
    gen = torch.Generator().manual_seed(T)
    q, k = torch.randn(1, T, 2, 8, generator=gen), torch.randn(1, T, 2, 8, generator=gen)
    v = torch.randn(1, T, 2, DV, generator=gen)
    g = F.logsigmoid(torch.rand(1, T, 2, 8, generator=gen)) / decay_norm
    S0 = torch.randn(1, 2, 8, DV, generator=gen) if with_state else None
    leaves = _leaves(*(x for x in (q, k, v, g, S0) if x is not None))
    o, ST = tgla.gla_recurrent(*leaves[:4], 0.35, leaves[4] if with_state else None)
    dl = _leaves(*(x.double() for x in leaves))
    o_ref, ST_ref = ref.gla_chunked_core(*dl[:4], 0.35, dl[4] if with_state else None, chunk_size=8)
    _close(o, naive_gla(*dl[:4], scale=0.35, S0=dl[4] if with_state else None), 1e-5)
    _close(ST, ST_ref, 1e-5)
    for a, b in zip(_grads((o, ST), leaves), _grads((o_ref, ST_ref), dl)):
        _close(a, b, 1e-5)


# ------------------------------------------------------------------------------------ through dispatch


@pytest.mark.parametrize("kind", KINDS)
def test_dispatch_triton_matches_reference_forward_backward(kind):
    q, k, v, kw = make_case(
        kind, B=1, T=21, H=2, D=16, dtype=torch.float32, seed=5, gate="elem" if kind == "inline" else "head"
    )
    names = ["q", "k", "v"] + [n for n, t in kw.items() if torch.is_tensor(t)]
    base = [q, k, v] + [kw[n] for n in names[3:]]
    outs, grads = [], []
    for impl in ("triton", "reference"):
        leaves = _leaves(*base)
        d = dict(zip(names, leaves))
        static = {n: x for n, x in kw.items() if not torch.is_tensor(x)}  # slide's window
        o, _ = attention(d.pop("q"), d.pop("k"), d.pop("v"), kind=kind, impl=impl, **d, **static)
        outs.append(o)
        grads.append(_grads(o, leaves))
    _close(outs[0], outs[1], 1e-5)
    for name, a, b in zip(names, *grads):
        _close(a, b, 2e-5, name)


@pytest.mark.parametrize("kind", ["softmax", "focused_linear", "inline", "gla", "slide"])
def test_dispatch_triton_rollout_matches_parallel(kind):
    """Prefill (kernel, returning the state), a 3-token chunk (cache offset), then single-token steps."""
    T = 14
    q, k, v, kw = make_case(kind, B=2, T=T, H=2, D=16, dtype=torch.float32, seed=6)
    full, _ = attention(q, k, v, kind=kind, impl="reference", **kw)
    o, st = attention(
        q[:, :6], k[:, :6], v[:, :6], kind=kind, return_state=True, impl="triton", **sliced(kw, slice(0, 6))
    )
    outs = [o]
    o, st = attention(
        q[:, 6:9], k[:, 6:9], v[:, 6:9], kind=kind, state=st, impl="triton", **sliced(kw, slice(6, 9))
    )
    outs.append(o)
    with torch.no_grad():  # the softmax decode kernel is forward-only
        for t in range(9, T):
            o, st = attention(
                q[:, t : t + 1],
                k[:, t : t + 1],
                v[:, t : t + 1],
                kind=kind,
                state=st,
                impl="triton",
                **sliced(kw, slice(t, t + 1)),
            )
            outs.append(o)
    assert st.position == T
    _close(torch.cat(outs, 1), full, 1e-5)


@pytest.mark.parametrize("kind", ["softmax", "inline", "gla"])
def test_transformer_on_triton_kernels_matches_reference(kind):
    """The transformer with attention_impl='triton': forward, gradients and prefill + steps."""
    from rlkit.nets.transformer import CausalTransformer, TransformerConfig

    torch.manual_seed(8)
    cfg = dict(
        d_model=32,
        n_layers=1,
        n_heads=2,
        d_ff=32,
        max_len=16,
        attention=kind,
        gate="headwise",
        dropout=0.0,
        attn_dropout=0.0,
    )
    model_t = CausalTransformer(TransformerConfig(**cfg, attention_impl="triton"))
    model_r = CausalTransformer(TransformerConfig(**cfg, attention_impl="reference"))
    model_r.load_state_dict(model_t.state_dict())
    x = torch.randn(1, 10, 32)
    outs = [m(x) for m in (model_t, model_r)]
    _close(outs[0], outs[1], 1e-5)
    w = torch.randn(1, 10, 32)  # not sum(h^2): that is constant after the final LayerNorm
    grads = [
        torch.autograd.grad((o * w).sum(), list(m.parameters())) for o, m in zip(outs, (model_t, model_r))
    ]
    for a, b in zip(*grads):
        _close(a, b, 1e-4)
    with torch.no_grad():
        h, st = model_t.prefill(x[:, :6])
        steps = [h]
        for t in range(6, 10):
            h_t, st = model_t.step(x[:, t], st)
            steps.append(h_t[:, None])
    _close(torch.cat(steps, 1), outs[1].detach(), 1e-5)


# ------------------------------------------------------------------------------------------------- slide


@pytest.mark.parametrize(
    "T,window,deform,padding",
    [(37, 1, False, "mask"), (37, 4, False, "mask"), (20, 20, False, "mask"), (21, 5, True, "mask"),
     (19, 4, False, "zeros"), (19, 4, True, "zeros")],
)  # fmt: skip
def test_slide_fp32_forward_backward_against_float64_reference(T, window, deform, padding):
    gen = torch.Generator().manual_seed(T + window)
    q, k, v = (torch.randn(2, T, 2, 12, generator=gen) for _ in range(3))  # head dim 12: padded lanes
    extra = [torch.randn(2, window, generator=gen)]
    if deform:
        extra.append(torch.randn(12, window, window, generator=gen) * 0.3)
    leaves = _leaves(q, k, v, *extra)
    dl = _leaves(*(x.double() for x in leaves))

    def run(xs, impl):
        kw = dict(slide_bias=xs[3], deform_weight=xs[4] if deform else None, padding=padding)
        return attention(*xs[:3], kind="slide", window=window, impl=impl, **kw)[0]

    out, expected = run(leaves, "triton"), run(dl, "reference")
    _close(out, expected, 1e-5, "o")
    for name, a, b in zip(["q", "k", "v", "bias", "W"], _grads(out, leaves), _grads(expected, dl)):
        if window == 1 and name in ("q", "k", "bias"):  # p = 1: exact gradient 0, the kernel gives roundoff
            assert b.abs().max() == 0 and a.abs().max() < 1e-5
            continue
        _close(a, b, 2e-5, name)


def test_slide_kernel_with_a_state_and_fp16():
    """Prefill, one-token steps and a chunk through the ring buffer (kernel shift form with offset > 0)."""
    gen = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(1, 26, 2, 16, generator=gen) for _ in range(3))
    bias = torch.randn(2, 6, generator=gen)
    full, _ = attention(q.double(), k.double(), v.double(), kind="slide", window=6, slide_bias=bias.double())
    out, st = attention(q[:, :9], k[:, :9], v[:, :9], kind="slide", window=6, slide_bias=bias, return_state=True,
                        impl="triton")  # fmt: skip
    outs = [out]
    for t in range(9, 12):
        o, st = attention(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], kind="slide", state=st,
                          slide_bias=bias, impl="triton")  # fmt: skip
        outs.append(o)
    o, st = attention(q[:, 12:], k[:, 12:], v[:, 12:], kind="slide", state=st, slide_bias=bias, impl="triton")
    _close(torch.cat(outs + [o], 1), full, 1e-5)
    half, _ = attention(q.half(), k.half(), v.half(), kind="slide", window=6, slide_bias=bias.half(), impl="triton")
    _close(half, full, 2e-3)


# ------------------------------------------------------------------------------------------- GPU only

_GPU_SCRIPT = textwrap.dedent("""
    import torch, torch.nn.functional as F
    from rlkit.kernels import attention
    from rlkit.kernels import reference as ref
    torch.manual_seed(0)
    dev = "cuda"
    for dtype, tol in ((torch.float16, 1e-2), (torch.bfloat16, 3e-2), (torch.float32, 2e-3)):
        for B, T, H, D in ((2, 64, 8, 64), (1, 300, 4, 128), (3, 17, 2, 32)):
            q, k, v = (torch.randn(B, T, H, D, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
            g = torch.randn(B, T, H, device=dev, dtype=dtype, requires_grad=True)
            o, _ = attention(q, k, v, gate=g, impl="triton")
            qkv = (x.float().transpose(1, 2) for x in (q, k, v))
            o2 = F.scaled_dot_product_attention(*qkv, is_causal=True)
            o2 = o2.transpose(1, 2) * torch.sigmoid(g.float())[..., None]
            do = torch.randn_like(o)
            ga = torch.autograd.grad(o, (q, k, v, g), do)
            gb = torch.autograd.grad(o2, (q, k, v, g), do.float())
            for a, b in zip((o, *ga), (o2, *gb)):
                err = (a.float() - b).abs().max().item() / b.abs().max().item()
                assert err < tol, (dtype, B, T, H, D, err)
    for kind in ("focused_linear", "inline", "gla"):
        for dtype in (torch.float32, torch.bfloat16):
            q, k, v = (torch.randn(2, 100, 4, 32, device=dev, dtype=dtype) for _ in range(3))
            kw = {}
            if kind == "gla":
                kw["log_decay"] = F.logsigmoid(torch.randn(2, 100, 4, 32, device=dev)).to(dtype)
            a, _ = attention(q, k, v, kind=kind, impl="triton", **kw)
            b, _ = attention(q.double(), k.double(), v.double(), kind=kind, impl="reference",
                             **{n: t.double() for n, t in kw.items()})
            err = (a.double() - b).abs().max().item() / b.abs().max().item()
            assert err < (3e-2 if dtype == torch.bfloat16 else 2e-3), (kind, dtype, err)
    for dtype, tol in ((torch.float16, 1e-2), (torch.bfloat16, 3e-2), (torch.float32, 2e-3)):
        for T, W, deform in ((64, 16, False), (300, 16, True), (17, 4, False)):
            q, k, v = (torch.randn(2, T, 4, 64, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
            bias = torch.randn(4, W, device=dev, dtype=dtype, requires_grad=True)
            dw = (torch.randn(64, W, W, device=dev) * 0.1).to(dtype).requires_grad_() if deform else None
            leaves = (q, k, v, bias) + ((dw,) if deform else ())
            a, _ = attention(q, k, v, kind="slide", window=W, slide_bias=bias, deform_weight=dw, impl="triton")
            dl = [x.detach().double().requires_grad_() for x in leaves]
            b, _ = attention(*dl[:3], kind="slide", window=W, slide_bias=dl[3],
                             deform_weight=dl[4] if deform else None, impl="reference")
            do = torch.randn_like(a)
            ga = torch.autograd.grad(a, leaves, do)
            gb = torch.autograd.grad(b, dl, do.double())
            for x, y in zip((a, *ga), (b, *gb)):
                err = (x.double() - y).abs().max().item() / y.abs().max().item()
                assert err < tol, ("slide", dtype, T, W, deform, err)
    print("GPU OK")
""")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled Triton kernels need a CUDA GPU")
def test_compiled_kernels_on_gpu_fp16_bf16_fp32():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run(
        [sys.executable, "-c", _GPU_SCRIPT], env=env, cwd=root, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0 and "GPU OK" in res.stdout, res.stdout + res.stderr
