"""What a sweep hands back: its outcome, and how a finished or failed job is recorded."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench_med.runners.base import Job, JobResult
from rlbench_med.runners.sweep.progress import Progress
from rlbench_med.runners.sweep.results import ResultsWriter
from rlbench_med.runners.sweep.tracking import SweepTracking

if TYPE_CHECKING:
    from rlbench_med.runners.sweep.plan import Plan


@dataclass
class JobFailure:
    job: Job
    error: str  # one line: "ExceptionType: message"
    detail: str  # full traceback


@dataclass
class SweepOutcome:
    plan: Plan
    results: list[JobResult]
    failures: list[JobFailure]
    interrupted: bool
    results_csv: Path
    wall_s: float
    status: str = "RUNNING"  # FINISHED, FAILED (a job failed) or KILLED (Ctrl-C) once run_sweep returns

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted


def failure_of(job: Job, exc: BaseException) -> JobFailure:
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return JobFailure(job=job, error=f"{type(exc).__name__}: {first}", detail=detail)


def record_result(
    result: JobResult, tracking: SweepTracking, progress: Progress, writer: ResultsWriter, outcome: SweepOutcome
) -> None:
    """A finished job: its rows go to results.csv at once, its child run ends FINISHED."""
    writer.add(result.rows)
    outcome.results.append(result)
    tracking.close_child(result.job, result, "FINISHED")
    progress.job_finished(result.job, True)


def record_failure(failure: JobFailure, tracking: SweepTracking, progress: Progress, outcome: SweepOutcome) -> None:
    """A failed job: reported with its error, its child run ends FAILED; the sweep goes on."""
    outcome.failures.append(failure)
    tracking.close_child(failure.job, None, "FAILED", failure.detail)
    progress.job_finished(failure.job, False)
