"""What a sweep hands back: its outcome, and how a finished or failed job is recorded."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench_med.runners.base import Job, JobResult
from rlbench_med.runners.sweep.progress import Progress
from rlbench_med.runners.sweep.results import ResultsWriter
from rlbench_med.runners.sweep.signals import shielded, signal_of
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
    status: str = "RUNNING"  # FINISHED, FAILED (a job failed) or KILLED (SIGINT/SIGTERM) once run_sweep returns
    signum: int | None = None  # the signal that stopped the sweep
    report_interrupted: bool = False  # stopped while the report was being built (results.csv is complete)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    def stop(self, exc: BaseException, *, in_report: bool = False) -> None:
        """Record an interrupt (SIGINT, SIGTERM): the sweep ends KILLED, everything written stays."""
        self.interrupted = True
        self.status = "KILLED"
        self.signum = signal_of(exc)
        self.report_interrupted = in_report


def failure_of(job: Job, exc: BaseException) -> JobFailure:
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return JobFailure(job=job, error=f"{type(exc).__name__}: {first}", detail=detail)


def record_result(
    result: JobResult, tracking: SweepTracking, progress: Progress, writer: ResultsWriter, outcome: SweepOutcome
) -> None:
    """A finished job: its rows go to results.csv at once, its child run ends FINISHED (no signal in between)."""
    with shielded():
        writer.add(result.rows)
        outcome.results.append(result)
        tracking.close_child(result.job, result, "FINISHED")
    progress.job_finished(result.job, True)


def record_failure(failure: JobFailure, tracking: SweepTracking, progress: Progress, outcome: SweepOutcome) -> None:
    """A failed job: reported with its error, its child run ends FAILED; the sweep goes on."""
    with shielded():
        outcome.failures.append(failure)
        tracking.close_child(failure.job, None, "FAILED", failure.detail)
    progress.job_finished(failure.job, False)
