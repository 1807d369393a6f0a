"""The progress protocol a sweep reports to (the CLI implements it with rich), and a null one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from rlbench_med.runners.base import Job, Tracker


class Progress(Protocol):
    """Progress display: overall jobs, and the running jobs' steps (local executor only)."""

    def note(self, message: str) -> None: ...

    def start(self, total_jobs: int) -> None: ...

    def job_started(self, job: Job, total_steps: int | None) -> None: ...

    def step(self, step: int, metrics: Mapping[str, float], job: Job | None = None) -> None:
        """A step of ``job`` (None: of the job started last; jobs side by side name theirs)."""

    def job_finished(self, job: Job, ok: bool, error: str = "") -> None: ...

    def job_reused(self, job: Job, origin: str) -> None: ...

    def stop(self) -> None: ...


class NullProgress:
    def note(self, message: str) -> None:
        pass

    def start(self, total_jobs: int) -> None:
        pass

    def job_started(self, job: Job, total_steps: int | None) -> None:
        pass

    def step(self, step: int, metrics: Mapping[str, float], job: Job | None = None) -> None:
        pass

    def job_finished(self, job: Job, ok: bool, error: str = "") -> None:
        pass

    def job_reused(self, job: Job, origin: str) -> None:
        pass

    def stop(self) -> None:
        pass


class StepCounting:
    """Forwards to the job's tracker and advances the step progress bar."""

    def __init__(self, inner: Tracker, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)
        self.progress.step(step, metrics)

    def log_artifact(self, path: Path) -> None:
        self.inner.log_artifact(path)


# --------------------------------------------------------------------------------------------
