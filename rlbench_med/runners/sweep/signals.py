"""SIGINT and SIGTERM, handled alike until the process exits.

Inside :func:`interrupt_on_signals` either signal raises :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread, wherever the sweep is: data, SFT base, a job, the
report. Inside :func:`shielded` (closing MLflow runs, recording a finished job) a signal is held
back and raised when the block ends, so a second Ctrl-C cannot leave a run half-closed.
SIGKILL cannot be handled: runs it leaves open are closed by the next sweep on the same output
folder (see :mod:`.lifecycle`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM; the process should exit with ``128 + signum`` (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def signal_of(exc: BaseException) -> int:
    """The signal behind an interrupt: ``Interrupted.signum``, else SIGINT (a plain KeyboardInterrupt)."""
    return getattr(exc, "signum", signal.SIGINT)


def interrupt_reason(exc: BaseException) -> str:
    """What a KILLED run records: ``interrupted by SIGTERM`` or ``interrupted by SIGINT``."""
    return f"interrupted by {signal.Signals(signal_of(exc)).name}"


class _Shield:
    depth = 0
    pending: int | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    if _Shield.depth:
        _Shield.pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` while the block runs (main thread only; nests).

    A signal the process was started to ignore (``nohup``, a background job of a script) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in HANDLED if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class shielded:
    """Hold SIGINT/SIGTERM back while the block runs; one that arrived is raised when it ends.

    If the block ends with an exception of its own, that exception goes on and the held signal
    is dropped: the sweep is ending either way.
    """

    def __enter__(self) -> None:
        _Shield.depth += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        _Shield.depth -= 1
        if _Shield.depth == 0 and _Shield.pending is not None:
            signum, _Shield.pending = _Shield.pending, None
            if exc is None:
                raise Interrupted(signum)
