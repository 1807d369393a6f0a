"""Advisory file locks (``flock``) that the operating system releases when their process ends.

A lock held by a process that is killed with SIGKILL disappears with it, so a lock that can be
taken proves that nobody else is working on what it guards: the sweep's output folder (stale
MLflow runs of a killed sweep are then safe to close), a data folder being generated in the
cache (stale temporary folders are then safe to delete) and the creation of a tracking store.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockHeld(RuntimeError):
    """Another live process holds the lock; ``holder`` is what it wrote into the lock file (its pid)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by process {holder or '?'}")
        self.path = path
        self.holder = holder


@contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) while the block runs.

    ``wait=False`` raises :class:`LockHeld` at once instead of waiting for the holder. The
    holder's pid is written into the file, so the error can name it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(path, os.pread(fd, 64, 0).decode(errors="replace").strip()) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
