"""What a sweep hands back: its outcome, and how a finished or failed job is recorded."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from rlbench_med.runners.base import Job, JobResult, ResultsError
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.progress import Progress
from rlbench_med.runners.sweep.results import FailedJobs, ResultsWriter
from rlbench_med.runners.sweep.signals import shielded, signal_of
from rlbench_med.runners.sweep.tracking import SweepTracking


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
    failed_jobs: FailedJobs | None = None  # <out>/failed.csv, once the jobs run

    def rank(self, job: Job) -> int:
        """The job's place in the plan: where its rows go in results.csv."""
        return next(i for i, j in enumerate(self.plan.jobs) if (j.algo, j.seed) == (job.algo, job.seed))

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
) -> bool:
    """A finished job: its rows go to results.csv at once, its child run ends FINISHED (no signal in between).

    Rows results.csv's readers would refuse (a non-finite value, a key twice) make the job a failure
    instead; returns whether the job was recorded as finished.
    """
    job = result.job
    try:
        rows = writer.check(result.rows, f"the results of {job.algo} seed {job.seed}")
    except ResultsError as exc:
        record_failure(failure_of(job, exc), tracking, progress, outcome)
        return False
    with shielded():
        writer.add(rows, rank=outcome.rank(job))
        if outcome.failed_jobs is not None:
            outcome.failed_jobs.discard(job)
        outcome.results.append(result)
        tracking.close_child(job, result, "FINISHED")
    progress.job_finished(job, True)
    return True


def record_failure(failure: JobFailure, tracking: SweepTracking, progress: Progress, outcome: SweepOutcome) -> None:
    """A failed job: its one-line reason goes to failed.csv, the progress display and its child run
    (which ends FAILED, with the traceback attached); the sweep goes on."""
    with shielded():
        outcome.failures.append(failure)
        if outcome.failed_jobs is not None:
            outcome.failed_jobs.add(failure.job, failure.error)
        tracking.close_child(failure.job, None, "FAILED", failure.error, failure.detail)
    progress.job_finished(failure.job, False, failure.error)
