"""Small helpers shared by the Triton kernel modules (imported only when a Triton path runs).

Interpreter rules (Triton's documentation, and measured): TRITON_INTERPRET=1 must be set before the kernel
modules are imported (``triton.jit`` decides at decoration time); under the interpreter autotuning
runs with ONE config (several configs need a driver), and nothing here queries the driver at import.
"""

from __future__ import annotations

import os

import torch

__all__ = ["interpreting", "pick_configs", "next_pow2", "dot_precision", "triton_available"]


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def pick_configs(configs: list, interpreted_index: int = 0) -> list:
    """All autotune configs on a GPU; a single one under the interpreter."""
    return [configs[interpreted_index]] if interpreting() else configs


def next_pow2(n: int, minimum: int = 16) -> int:
    """Smallest power of two >= max(n, minimum) (tl.arange needs powers of two, tl.dot needs >= 16)."""
    p = minimum
    while p < n:
        p *= 2
    return p


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision for float32 operands: TF32 only where PyTorch allows TF32 matmuls."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not interpreting():
        return "tf32"
    return "ieee"
