"""Efficient attention for the transformer core: PyTorch reference for every kind, Triton kernels for CUDA.

``attention(q, k, v, *, kind, causal=True, gate=None, state=None, ...) -> (output, state)`` on
[B, T, H, D] tensors; kinds: softmax (+ sigmoid output gate), focused_linear (FLatten), inline,
agent, gla, slide (papers cited in kernels/reference.py and kernels/reference_slide.py). The Triton
modules are imported lazily, only when a Triton path runs, so TRITON_INTERPRET can still be set after
``import kernels``.
"""

from .dispatch import IMPL_ENV, KINDS, attention, empty_state, resolve_impl
from .states import AgentState, AttentionState, GLAState, KVCache, LinearState, SlideState

__all__ = [
    "attention",
    "empty_state",
    "resolve_impl",
    "KINDS",
    "IMPL_ENV",
    "KVCache",
    "LinearState",
    "AgentState",
    "GLAState",
    "SlideState",
    "AttentionState",
]
