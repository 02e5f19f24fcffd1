"""Stopping a run cleanly: SIGTERM (Ctrl-C's sibling, sent by schedulers and ``kill``) becomes a
``KeyboardInterrupt`` so the loop checkpoints; a cluster's preemption signal is caught at a step boundary
and handed on after the checkpoint (:class:`PreemptionSignal`). :func:`stop_signals` installs both for
the length of a run, and only from the main thread, the one place Python lets handlers be set (a run
started from another thread trains without them)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Preempted(Exception):
    """Raised at a step boundary after the preemption signal arrived."""


class PreemptionSignal:
    """The cluster's "you are about to be stopped" signal, handled at a step boundary.

    Slurm jobs launched by submitit (``hydra/launcher=slurm``) get ``SIGUSR2`` (or
    ``$SUBMITIT_PREEMPT_SIGNAL``) ``signal_delay_s`` before their time limit or on preemption; submitit's
    own handler requeues the job and exits. While a run trains, this class catches the signal instead, the
    loop finishes the current step and saves a checkpoint, and then :meth:`forward` hands the signal to the
    handler that was installed before (submitit's requeue), or re-raises it with the default action. A
    requeued job started with ``resume=auto`` continues from that checkpoint exactly. A signal that was
    ignored before (``SIG_IGN``) stays ignored.
    """

    def __init__(self, install: bool = True) -> None:
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")
        self.signum: signal.Signals | None = getattr(signal, f"SIG{name}", None)
        self.name = f"SIG{name}"
        self.caught: tuple[int, Any] | None = None
        self.previous: Any = None
        if self.signum is None or not install:
            self.signum = None
            return
        self.previous = signal.getsignal(self.signum)
        if self.previous == signal.SIG_IGN:
            self.signum = None
            return
        signal.signal(self.signum, self._catch)

    def _catch(self, signum: int, frame: Any) -> None:  # pragma: no cover - signal handler
        self.caught = (signum, frame)

    def restore(self) -> None:
        if self.signum is not None:
            signal.signal(self.signum, self.previous if self.previous is not None else signal.SIG_DFL)

    def forward(self) -> None:
        if self.caught is None or self.signum is None:
            return
        if callable(self.previous):
            self.previous(*self.caught)
        else:  # SIG_DFL (or a handler installed outside Python): the default action, usually termination
            signal.signal(self.signum, signal.SIG_DFL)
            os.kill(os.getpid(), self.signum)


def raise_keyboard_interrupt(signum, frame):  # pragma: no cover - signal handler
    raise KeyboardInterrupt


@contextmanager
def stop_signals() -> Iterator[PreemptionSignal]:
    """SIGTERM -> ``KeyboardInterrupt`` and the preemption signal caught, inside the block; the previous
    handlers are back after it. Yields the :class:`PreemptionSignal` (inert outside the main thread)."""
    main = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, raise_keyboard_interrupt) if main else None
    preemption = PreemptionSignal(install=main)
    try:
        yield preemption
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)
        preemption.restore()
