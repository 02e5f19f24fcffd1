"""Process-wide CPU settings of a run: torch thread count and flushing of subnormal floats.

Thread policy (measured with ``bench/threads.py``, numbers in the README's benchmark section):
``num_threads: null`` means ``min(2, cores)`` intra-op threads -- on 2x256 MLPs with batch 256 a second
thread gains 1.2-1.7x on an idle machine, while more threads than two mostly add synchronisation on matrices
this small.  ``num_threads: 1`` is the better choice when several runs share the cores (each run then
owns one core instead of contending for all of them).  Inter-op threads stay at PyTorch's default.

``flush_denormal`` (default on) makes the CPU treat subnormal floats (``|x| < 1.2e-38``) as zero, as XLA
does on CPU.  Adam's second-moment estimates, tiny gradients and exponentiated advantages (IQL, AWAC)
produce subnormals, and an x86 core computes with them tens of times slower: IQL's update is about 1.5x
faster with the flag on this project's 2-core machine.  Values that small carry no learning signal.
"""

from __future__ import annotations

import os

import torch

from rlkit.errors import ConfigError

DEFAULT_MAX_THREADS = 2


def default_threads() -> int:
    """``min(2, usable cores)``: the thread count used when ``num_threads`` is null."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(DEFAULT_MAX_THREADS, cores))


def configure_runtime(num_threads: int | None = None, flush_denormal: bool = True) -> dict[str, object]:
    """Apply the thread policy and the subnormal-float setting; returns what was set (for the run log)."""
    threads = default_threads() if num_threads is None else int(num_threads)
    if threads < 1:
        raise ConfigError(f"num_threads must be >= 1 or null, got {num_threads}; set num_threads=null or 1")
    torch.set_num_threads(threads)
    supported = torch.set_flush_denormal(bool(flush_denormal))  # False where the CPU lacks the mode (no-op)
    return {"num_threads": threads, "flush_denormal": bool(flush_denormal and supported)}
