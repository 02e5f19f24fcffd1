"""``attention(q, k, v, *, kind, ...)``: one entry point, dispatched to Triton on CUDA and PyTorch elsewhere.

Implementation choice, in order: the ``impl`` argument, the environment variable
``RLKIT_ATTENTION_IMPL=reference|triton``, else Triton for CUDA tensors (when triton imports) and the
reference for everything else. Forcing ``triton`` on CPU tensors works only under TRITON_INTERPRET=1
(set before triton is first imported), which is how the CPU tests run the kernels.

What runs where on the Triton path (everything else, and every CPU call, uses kernels/reference.py):

* softmax: fused flash kernel with the gate in its epilogue for training, prefill and chunks (SDPA when
  ``dropout_p > 0``); one-token steps use the decode kernel (forward only; reference while autograd records).
* focused_linear, inline: feature map, local conv and epilogue in PyTorch around the chunked linear
  kernel; one-token steps use the PyTorch recurrence.
* gla: fla (``fused_recurrent_gla`` / ``chunk_gla``) when importable, else our recurrent kernel (T = 1 too).
* agent: PyTorch everywhere (no Triton kernel: with T <= 64 and n agents near T, agent attention saves nothing).
* slide: the windowed kernel of kernels/triton_slide.py for training, prefill and chunks; the deformed
  shift (per-offset keys) is formed in PyTorch and fed to the same kernel. One-token steps without the
  deformed shift attend over the ring-buffer slots in PyTorch (one small softmax). Float64: reference.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from . import reference as ref
from . import reference_slide as ref_slide
from ._triton_util import interpreting, triton_available
from .states import AgentState, AttentionState, GLAState, KVCache, LinearState, SlideState

__all__ = ["attention", "empty_state", "resolve_impl", "KINDS", "IMPL_ENV"]

KINDS = ("softmax", "focused_linear", "inline", "agent", "gla", "slide")
IMPL_ENV = "RLKIT_ATTENTION_IMPL"
_STATE_TYPES = {
    "softmax": KVCache,
    "focused_linear": LinearState,
    "inline": LinearState,
    "agent": AgentState,
    "gla": GLAState,
    "slide": SlideState,
}
_DEFAULT_CHUNK = {"focused_linear": 64, "inline": 64, "agent": 64, "gla": None}


def _config_error(msg: str) -> Exception:
    from rlkit.errors import ConfigError

    return ConfigError(msg)


def resolve_impl(impl: str | None, device: torch.device) -> str:
    """'reference' or 'triton' for tensors on ``device`` (see the module docstring)."""
    choice = impl or os.environ.get(IMPL_ENV) or "auto"
    if choice not in ("auto", "reference", "triton"):
        raise _config_error(
            f"unknown attention implementation {choice!r} (argument or ${IMPL_ENV}); "
            "use 'reference' or 'triton'"
        )
    if choice == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "reference"
    if choice == "triton":
        if not triton_available():
            raise _config_error(
                "attention impl 'triton' requested but triton is not installed; "
                f"pip install triton or set {IMPL_ENV}=reference"
            )
        if device.type != "cuda" and not interpreting():
            raise _config_error(
                "attention impl 'triton' on CPU tensors needs TRITON_INTERPRET=1 set before "
                f"triton is imported; or set {IMPL_ENV}=reference"
            )
    return choice


def empty_state(
    kind: str,
    batch: int,
    heads: int,
    dim_k: int,
    dim_v: int,
    *,
    capacity: int = 64,
    n_agents: int | None = None,
    conv_kernel: int = 0,
    window: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> AttentionState:
    """A fresh rollout state (nothing seen yet) for one layer of the given kind.

    slide: a ring buffer of ``window - 1`` keys and values; ``window`` must be positive and at most
    ``capacity`` (the longest context the caller keeps).
    """
    if kind == "softmax":
        return KVCache.empty(batch, heads, dim_k, dim_v, capacity, device=device, dtype=dtype)
    if kind in ("focused_linear", "inline"):
        return LinearState.zeros(
            batch,
            heads,
            dim_k,
            dim_v,
            with_sum_v=kind == "inline",
            conv_kernel=conv_kernel,
            device=device,
            dtype=dtype,
        )
    if kind == "agent":
        if n_agents is None:
            raise ValueError("empty_state('agent', ...) needs n_agents")
        return AgentState.zeros(
            batch, heads, n_agents, dim_v, conv_kernel=conv_kernel, device=device, dtype=dtype
        )
    if kind == "gla":
        return GLAState.zeros(batch, heads, dim_k, dim_v, device=device, dtype=dtype)
    if kind == "slide":
        _check_window(window)
        if window > capacity:
            raise _config_error(
                f"slide window={window} is larger than the cache capacity={capacity}; lower window or raise capacity"
            )
        return SlideState.zeros(batch, heads, dim_k, dim_v, window, device=device, dtype=dtype)
    raise _config_error(f"unknown attention kind {kind!r}; choose one of {', '.join(KINDS)}")


def _check_window(window) -> None:
    if window is None or int(window) != window or window < 1:
        raise _config_error(f"slide attention needs a positive integer window, got window={window!r}")


def _check_inputs(
    q: Tensor, k: Tensor, v: Tensor, kind: str, state, causal: bool, return_state: bool
) -> None:
    if kind not in KINDS:
        raise _config_error(f"unknown attention kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not (q.dim() == k.dim() == v.dim() == 4):
        raise ValueError(
            f"attention expects [B, T, H, D] tensors, got q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2] or k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"batch/head/length mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k need the same head dim, got {q.shape[-1]} and {k.shape[-1]}")
    if kind != "softmax" and q.shape[1] != k.shape[1]:
        raise ValueError(f"{kind} attention needs as many queries as keys, got {q.shape[1]} and {k.shape[1]}")
    if state is not None and not isinstance(state, _STATE_TYPES[kind]):
        raise ValueError(
            f"{kind} attention takes a {_STATE_TYPES[kind].__name__} state, got {type(state).__name__}"
        )
    if not causal and kind != "softmax" and (state is not None or return_state):
        raise _config_error(f"non-causal {kind} attention has no rollout state; use causal=True")
    if not causal and kind == "slide":
        raise _config_error(
            "slide attention here is the causal 1-D form; use causal=True (the non-causal 2-D block is "
            "rlkit.nets.slide2d.SlideAttention2d)"
        )
    if not causal and kind == "gla":
        raise _config_error("gla attention is causal by construction; use causal=True")


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    kind: str = "softmax",
    causal: bool = True,
    gate: Tensor | None = None,
    state: AttentionState | None = None,
    return_state: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    capacity: int | None = None,
    log_decay: Tensor | None = None,
    agents: Tensor | None = None,
    agent_bias_k: Tensor | None = None,
    agent_bias_q: Tensor | None = None,
    conv_weight: Tensor | None = None,
    focusing_factor: float = 3.0,
    feature_map: str = "identity",
    chunk_size: int | None = None,
    window: int | None = None,
    slide_bias: Tensor | None = None,
    deform_weight: Tensor | None = None,
    shift_weight: Tensor | None = None,
    padding: str = "mask",
    impl: str | None = None,
) -> tuple[Tensor, AttentionState | None]:
    """Attention of kind ``kind`` over [B, T, H, D] tensors; returns ``(output [B, T, H, d_v], state)``.

    ``state`` (from :func:`empty_state` or an earlier call) continues a sequence: the T new tokens are
    the positions after the ones the state has seen; the updated state comes back. With ``state=None``
    the state is None unless ``return_state=True`` (prefill). Arguments by kind (kernels/reference.py
    has the equations):

    * all: ``gate`` = sigmoid output-gate logits [B, T, H] (head-wise) or [B, T, H, d_v] (element-wise);
      ``scale`` (default d_k^-1/2; unused by focused_linear).
    * softmax: ``dropout_p`` on the attention probabilities (training only; runs SDPA); ``capacity`` of a
      new KV cache (grows by doubling). Several queries over a longer cache are aligned lower-right.
    * focused_linear: ``focusing_factor`` p (3); ``conv_weight`` [d_v, K] or [H, d_v, K] causal local conv.
    * inline: ``feature_map`` ('identity', 'relu', 'leaky_relu', 'exp'); ``conv_weight`` as above.
    * agent: ``agents`` [H, n, d_k] (required); ``agent_bias_k`` [H, n, T_max]; ``agent_bias_q``
      [H, T_max, n]; ``conv_weight`` as above.
    * gla: ``log_decay`` = log forget gate [B, T, H, d_k], <= 0 (required).
    * slide: ``window`` w (required; query t sees t-w+1..t); ``slide_bias`` [H, w] per-offset logit bias;
      ``deform_weight`` [d, w, w] or [H, d, w, w] learned deformed shift added to the one-hot shifts
      (training form), or ``shift_weight`` of the same shape, the merged (re-parameterized) shifts;
      ``padding`` 'mask' (offsets before the start are masked) or 'zeros' (zero keys, as published).
    * ``chunk_size``: chunk length of the chunkwise parallel forms (default 64; gla: 64 for its factored
      form, 16 for its exact form under strong decay).
    * ``impl``: 'reference' or 'triton', overriding $RLKIT_ATTENTION_IMPL and the device default.
    """
    _check_inputs(q, k, v, kind, state, causal, return_state)
    use_triton = resolve_impl(impl, q.device) == "triton"
    T = q.shape[1]
    single_step = state is not None and T == 1 and causal
    chunk = chunk_size or _DEFAULT_CHUNK.get(kind, 64)  # None for gla: its reference picks (16 or 64)
    if kind == "slide":
        return _slide(q, k, v, window, scale, slide_bias, deform_weight, shift_weight, padding, gate, state,
                      return_state, use_triton)
    if kind == "softmax":
        if use_triton and dropout_p == 0.0 and q.dtype in (torch.float16, torch.bfloat16, torch.float32):
            return _softmax_triton(q, k, v, causal, scale, gate, state, return_state, capacity)
        if single_step:
            o, st = ref.softmax_step(
                q[:, 0], k[:, 0], v[:, 0], state, scale=scale, gate=None if gate is None else gate[:, 0]
            )
            return o[:, None], st
        return ref.softmax_parallel(
            q,
            k,
            v,
            causal=causal,
            scale=scale,
            gate=gate,
            state=state,
            return_state=return_state,
            capacity=capacity,
            dropout_p=dropout_p,
        )
    if kind == "gla":
        if log_decay is None or log_decay.shape != k.shape:
            raise ValueError(f"gla attention needs log_decay of k's shape {tuple(k.shape)}")
        if use_triton:
            return _gla_triton(q, k, v, log_decay, scale, gate, state, return_state)
        if single_step:
            o, st = ref.gla_step(
                q[:, 0],
                k[:, 0],
                v[:, 0],
                state,
                log_decay=log_decay[:, 0],
                scale=scale,
                gate=None if gate is None else gate[:, 0],
            )
            return o[:, None], st
        return ref.gla_parallel(
            q,
            k,
            v,
            log_decay=log_decay,
            scale=scale,
            gate=gate,
            state=state,
            return_state=return_state,
            chunk_size=chunk,
        )
    step_gate = None if gate is None or not single_step else gate[:, 0]
    if kind == "agent":
        if (
            agents is None
            or agents.dim() != 3
            or agents.shape[0] != q.shape[2]
            or agents.shape[2] != q.shape[3]
        ):
            raise ValueError(f"agent attention needs agents of shape [H={q.shape[2]}, n, d_k={q.shape[3]}]")
        kw = dict(
            agents=agents, scale=scale, bias_k=agent_bias_k, bias_q=agent_bias_q, conv_weight=conv_weight
        )
        if single_step:
            o, st = ref.agent_step(q[:, 0], k[:, 0], v[:, 0], state, gate=step_gate, **kw)
            return o[:, None], st
        return ref.agent_parallel(
            q, k, v, causal=causal, gate=gate, state=state, return_state=return_state, chunk_size=chunk, **kw
        )
    core = ref.causal_linear_core
    if use_triton and causal:
        from .triton_linear import causal_linear as core
    if kind == "focused_linear":
        kw = dict(focusing_factor=focusing_factor, conv_weight=conv_weight)
        if single_step:
            o, st = ref.focused_linear_step(q[:, 0], k[:, 0], v[:, 0], state, gate=step_gate, **kw)
            return o[:, None], st
        return ref.focused_linear_parallel(
            q,
            k,
            v,
            causal=causal,
            gate=gate,
            state=state,
            return_state=return_state,
            chunk_size=chunk,
            core=core,
            **kw,
        )
    kw = dict(scale=scale, feature_map=feature_map, conv_weight=conv_weight)  # inline
    if single_step:
        o, st = ref.inline_step(q[:, 0], k[:, 0], v[:, 0], state, gate=step_gate, **kw)
        return o[:, None], st
    return ref.inline_parallel(
        q,
        k,
        v,
        causal=causal,
        gate=gate,
        state=state,
        return_state=return_state,
        chunk_size=chunk,
        core=core,
        **kw,
    )


def _slide(q, k, v, window, scale, bias, deform_weight, shift_weight, padding, gate, state, return_state,
           use_triton):
    if state is not None:
        if window is not None and window != state.window:
            raise _config_error(f"slide window={window} differs from the state's window={state.window}")
        window = state.window
    _check_window(window)
    if padding not in ref_slide.PADDINGS:
        raise _config_error(f"slide padding={padding!r} is invalid; use one of {', '.join(ref_slide.PADDINGS)}")
    H = q.shape[2]
    if bias is not None and tuple(bias.shape) != (H, window):
        raise ValueError(f"slide_bias must be [H={H}, window={window}], got {tuple(bias.shape)}")
    for name, w in (("deform_weight", deform_weight), ("shift_weight", shift_weight)):
        if w is not None and tuple(w.shape[-3:]) != (k.shape[-1], window, window):
            raise ValueError(f"{name} must be [(H,) d, window, window] with d={k.shape[-1]}, got {tuple(w.shape)}")
        if w is not None and k.shape[-1] != v.shape[-1]:
            raise ValueError(f"the deformed shift is shared by K and V: it needs d_k == d_v, got {k.shape[-1]}, "
                             f"{v.shape[-1]}")
    kernel = None
    if use_triton and q.dtype in (torch.float16, torch.bfloat16, torch.float32):
        from .triton_slide import slide_attention as kernel
    return ref_slide.slide_parallel(
        q, k, v, window=window, scale=scale, bias=bias, deform_weight=deform_weight, shift_weight=shift_weight,
        padding=padding, gate=gate, state=state, return_state=return_state, kernel=kernel,
    )


def _softmax_triton(q, k, v, causal, scale, gate, state, return_state, capacity):
    from .triton_softmax import decode_attention, flash_attention

    if state is None and not return_state:
        return flash_attention(q, k, v, causal=causal, scale=scale, gate=gate), None
    B, T, H, _ = q.shape
    if state is None:
        state = KVCache.empty(
            B, H, k.shape[-1], v.shape[-1], max(capacity or 0, T), device=k.device, dtype=k.dtype
        )
    state = state.append(k, v)
    keys, values = state.keys().to(q.dtype), state.values().to(q.dtype)  # no copy when dtypes agree
    records = torch.is_grad_enabled() and any(
        t.requires_grad for t in (q, keys, values) + ((gate,) if gate is not None else ())
    )
    if T == 1 and not records:
        o = decode_attention(q, keys, values, scale=scale, gate=None if gate is None else gate[:, 0])
        return o[:, None], state
    return flash_attention(q, keys, values, causal=causal, scale=scale, gate=gate), state


def _gla_triton(q, k, v, log_decay, scale, gate, state, return_state):
    from .triton_gla import fla_available, gla_fla, gla_recurrent

    c = q.shape[-1] ** -0.5 if scale is None else float(scale)
    S0 = state.S if state is not None else None
    fn = gla_fla if (q.is_cuda and fla_available()) else gla_recurrent
    o, ST = fn(q, k, v, log_decay, c, S0)
    new_state = None
    if state is not None or return_state:
        new_state = GLAState(ST, (state.count if state is not None else 0) + q.shape[1])
    return ref.apply_gate(o.to(v.dtype), gate), new_state
