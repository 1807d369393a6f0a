"""Where a sweep is tracked: the store's URI and the tracking protocol the sweep calls.

``reports/tracking.py`` implements :class:`SweepTracking` with MLflow; the sweep itself never
imports MLflow, so the import direction stays ``cli -> runners`` and ``cli -> reports``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rlbench_med.runners.base import Job, JobResult, Tracker
from rlbench_med.runners.sweep.plan import Plan


#: The default tracking store, under the cache: one store wherever the command runs, so the "latest
#: sweep" of report, compare and leaderboard does not depend on the current folder.
DEFAULT_STORE = "mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cache>/mlflow.db`` (the cache folder is created);
    local paths made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        from rlbench_med.runners.base import cache_dir

        root = cache_dir()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a cache that cannot be a folder is refused, naming it, when the sweep is planned
        uri = f"sqlite:///{(root / DEFAULT_STORE).resolve()}"
    return absolute_uri(uri)


def absolute_uri(uri: str) -> str:
    """Make a relative ``sqlite:///x.db`` / ``file:x`` / plain path URI absolute (Ray workers' cwd differs)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    if uri.startswith("file:") and not uri.startswith("file:///") and not uri.startswith("file://"):
        return "file://" + str(Path(uri[len("file:"):]).resolve())
    return uri


class ChildRun(Protocol):
    """One job's tracked run; picklable, so a Ray worker can open it."""

    def open(self) -> Tracker: ...


class SweepTracking(Protocol):
    """Parent/child run lifecycle of a sweep. Statuses: FINISHED, FAILED, KILLED."""

    def start(self, plan: Plan) -> None: ...

    def child(self, job: Job) -> ChildRun: ...

    def close_child(self, job: Job, result: JobResult | None, status: str, error: str | None = None,
                    detail: str | None = None) -> None:
        """End a job's run; ``error`` is the one-line reason of a failure, ``detail`` its traceback."""

    def finish(self, status: str, artifacts: Sequence[Path] = (), error: str | None = None) -> None:
        """End the open child runs and the parent run, in every case (``error``: why the sweep failed)."""


class _NullChild:
    def open(self) -> Tracker:
        from rlbench_med.runners.base import NullTracker

        return NullTracker()


class NullSweepTracking:
    """No tracking (library use and tests)."""

    def start(self, plan: Plan) -> None:
        pass

    def child(self, job: Job) -> ChildRun:
        return _NullChild()

    def close_child(self, job: Job, result: JobResult | None, status: str, error: str | None = None,
                    detail: str | None = None) -> None:
        pass

    def finish(self, status: str, artifacts: Sequence[Path] = (), error: str | None = None) -> None:
        pass
