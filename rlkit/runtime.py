"""Process-wide CPU settings of a run: torch thread count and flushing of subnormal floats.

Thread policy (measured with ``bench/threads.py``, numbers in the README's benchmark section).  On 2x256
MLPs with batch 256 a second intra-op thread gains 1.2-1.7x on an idle machine, and more than two mostly
add synchronisation on matrices this small.  But when the cores are oversubscribed, every parallel region
waits for its slowest thread and that thread waits for the scheduler: a TD3+BC/IQL update with 2 threads
then runs 10-40x *slower* than with 1 (measured at load average 4 on 2 cores: IQL 0.65 vs 27 updates/s).
So ``num_threads: null`` takes as many threads as the 1-minute load average leaves cores free, between 1
and 2 (2 on an idle 2-core machine, 1 as soon as another busy process is there), decided once at start and
recorded in ``summary.json``; ``num_threads: N`` forces ``N``.  Inter-op threads stay at PyTorch's default.

``flush_denormal`` (default on) makes the CPU treat subnormal floats (``|x| < 1.2e-38``) as zero, as XLA
does on CPU.  Adam's second-moment estimates, tiny gradients and exponentiated advantages (IQL, AWAC)
produce subnormals, and an x86 core computes with them tens of times slower: IQL's update is about 1.5x
faster with the flag on this project's 2-core machine.  Values that small carry no learning signal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from rlkit.errors import ConfigError

DEFAULT_MAX_THREADS = 2


def default_threads(load: float | None = None) -> int:
    """Threads when ``num_threads`` is null: ``round(cores - load)`` clipped to ``[1, 2]`` (``load``: the
    1-minute load average, read from the OS when None)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform: assume an idle machine
            load = 0.0
    return int(max(1, min(DEFAULT_MAX_THREADS, cores, round(cores - load))))


def configure_runtime(num_threads: int | None = None, flush_denormal: bool = True) -> dict[str, object]:
    """Apply the thread policy and the subnormal-float setting; returns what was set (for the run log)."""
    threads = default_threads() if num_threads is None else int(num_threads)
    if threads < 1:
        raise ConfigError(f"num_threads must be >= 1 or null, got {num_threads}; set num_threads=null or 1")
    torch.set_num_threads(threads)
    supported = torch.set_flush_denormal(bool(flush_denormal))  # False where the CPU lacks the mode (no-op)
    return {"num_threads": threads, "flush_denormal": bool(flush_denormal and supported)}


@contextlib.contextmanager
def restored_process_runtime() -> Iterator[None]:
    """Restore the process's torch thread count and turn subnormal flushing off after the block: a run sets both
    for itself (:func:`configure_runtime`), and code that runs after it in the same process (tests, notebooks)
    must not inherit them."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
