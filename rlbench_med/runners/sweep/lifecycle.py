"""The life of a sweep, in one place: data -> runs opened -> shared work -> jobs -> report -> runs closed.

``run_sweep(plan, tracking, progress, report)`` does all of it and returns a
:class:`SweepOutcome`. Every exit path closes the MLflow runs it opened:

- FINISHED: every job finished; FAILED: a job failed (the others are kept), or the sweep or its
  report raised (re-raised after closing);
- KILLED: SIGINT or SIGTERM, handled alike wherever they arrive, the report included (see
  :mod:`.signals`); finished jobs stay in results.csv;
- SIGKILL (or a crash of the interpreter) runs no handler at all: the runs it leaves RUNNING are
  closed KILLED, with the reason, by the next sweep on the same output folder. That sweep holds
  the folder's lock (``<out>/.rlbench-med.lock``, released by the operating system when its
  holder dies), which proves that no live process still owns them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rlbench_med.locks import LockHeld, file_lock
from rlbench_med.runners.base import FAILED_CSV, Job
from rlbench_med.runners.sweep.datacache import data_complete, ensure_data
from rlbench_med.runners.sweep.executors import run_local, run_ray, run_reused
from rlbench_med.runners.sweep.jobcache import find_reusable
from rlbench_med.runners.sweep.outcome import SweepOutcome
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.progress import NullProgress, Progress
from rlbench_med.runners.sweep.request import SweepError
from rlbench_med.runners.sweep.results import (
    FailedJobs,
    ResultsWriter,
    floor_files,
    read_results,
    save_config,
    write_floors,
    write_predictions_index,
)
from rlbench_med.runners.sweep.signals import interrupt_on_signals, shielded
from rlbench_med.runners.sweep.tracking import NullSweepTracking, SweepTracking
from rlbench_med.suites.floors import is_floor

#: Lock file in the output folder, held by the sweep writing it.
LOCK_NAME = ".rlbench-med.lock"
#: Builds the report of a finished (or interrupted) sweep; returns the files to attach to the parent run.
ReportBuilder = Callable[[SweepOutcome], Sequence[Path]]


def run_sweep(
    plan: Plan,
    tracking: SweepTracking | None = None,
    progress: Progress | None = None,
    report: ReportBuilder | None = None,
) -> SweepOutcome:
    """Run the plan's pending jobs, build the report with ``report`` and close the parent run.

    Never raises for a failed job (see ``SweepOutcome.failures``) nor for SIGINT/SIGTERM (see
    ``SweepOutcome.interrupted``); an error of the sweep itself (or of the report) marks the
    parent run FAILED and is re-raised.
    """
    tracking = tracking or NullSweepTracking()
    progress = progress or NullProgress()
    start = time.perf_counter()
    outcome = SweepOutcome(plan, [], [], False, plan.results_csv, 0.0)
    with interrupt_on_signals():
        try:
            try:
                _prepare_data(plan, progress)
            except KeyboardInterrupt as exc:  # no run is open yet
                outcome.stop(exc)
                return outcome
            with _own_out_dir(plan.out_dir):
                _tracked(plan, tracking, progress, report, outcome)
        finally:
            outcome.wall_s = time.perf_counter() - start
    return outcome


@contextmanager
def _own_out_dir(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock while the block runs; refuse a folder another live run holds."""
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(out_dir / LOCK_NAME, wait=False))
        except LockHeld as exc:
            raise SweepError(
                f"another rlbench-med run (process {exc.holder or '?'}) is writing to {out_dir}; "
                "wait for it to end or use another --out"
            ) from None
        yield


def _prepare_data(plan: Plan, progress: Progress) -> None:
    if plan.data_dir is None:
        return
    begin = time.perf_counter()
    if not plan.generates_data:
        progress.note(f"data: validating {plan.data_dir} (--data) ...")
    elif data_complete(plan.data_dir):
        progress.note(f"data: checking the cached SynthCLIMB in {plan.data_dir} ...")
    else:
        progress.note(f"data: generating SynthCLIMB into {plan.data_dir} ...")
    ensure_data(plan)
    progress.note(f"data: ready ({time.perf_counter() - begin:.1f} s)")


def _tracked(
    plan: Plan, tracking: SweepTracking, progress: Progress, report: ReportBuilder | None, outcome: SweepOutcome
) -> None:
    """Open the parent run, run the jobs, build the report, close the parent run: in every exit path.

    A signal that arrives while the parent run is being closed is raised once it is closed.
    """
    files = [plan.out_dir / "config.yaml", outcome.results_csv, plan.out_dir / FAILED_CSV]
    in_report = False
    try:
        with shielded():
            tracking.start(plan)
        _run_jobs(plan, tracking, progress, outcome)
        outcome.status = "FAILED" if outcome.failures else "FINISHED"
        if report is not None:
            in_report = True
            files.extend(report(outcome))
    except KeyboardInterrupt as exc:
        outcome.stop(exc, in_report=in_report)
    except BaseException as exc:
        outcome.status = "FAILED"
        with shielded():
            tracking.finish("FAILED", [*files, *floor_files(plan.out_dir)], error=_reason(exc, in_report))
        raise
    failed = f"{len(outcome.failures)} job(s) failed" if outcome.failures else None
    with shielded():
        tracking.finish(outcome.status, [*files, *floor_files(plan.out_dir)], error=failed)


def _prepare(plan: Plan, jobs: Sequence[Job], progress: Progress) -> None:
    """The runner's shared work; a runner whose ``prepare`` takes ``note`` reports its steps through it."""
    import inspect

    if "note" in inspect.signature(plan.runner.prepare).parameters:
        plan.runner.prepare(jobs, note=progress.note)
    else:
        plan.runner.prepare(jobs)


def _reason(exc: BaseException, in_report: bool) -> str:
    text = str(exc).strip().splitlines()
    return f"{'the report' if in_report else 'the sweep'} failed: {type(exc).__name__}: {text[0] if text else ''}"


def _run_jobs(plan: Plan, tracking: SweepTracking, progress: Progress, outcome: SweepOutcome) -> None:
    save_config(plan)
    outcome.failed_jobs = FailedJobs(plan.out_dir, keep_existing=plan.resume)
    existing = read_results(outcome.results_csv) if plan.done and outcome.results_csv.exists() else ()
    writer = ResultsWriter(outcome.results_csv, existing)
    if not outcome.results_csv.exists():
        writer.flush()
    if plan.has_floors and not any(is_floor(algo) for algo, _ in plan.done):
        begin = time.perf_counter()
        progress.note("floors: scoring the trivial answers (every class, the majority set, a random class) ...")
        writer.add(write_floors(plan))
        progress.note(f"floors: done ({time.perf_counter() - begin:.1f} s)")
    find_reusable(plan)  # again: generated data exists only now
    pending, to_train = plan.pending, plan.to_train
    try:
        if to_train:
            begin = time.perf_counter()
            progress.note(f"runner {plan.runner.name}: preparing what the jobs share ...")
            _prepare(plan, to_train, progress)
            progress.note(f"runner {plan.runner.name}: ready ({time.perf_counter() - begin:.1f} s)")
        progress.start(len(pending))
        run_reused(plan, [j for j in pending if (j.algo, j.seed) in plan.reused], tracking, progress, writer, outcome)
        if plan.executor == "ray":
            run_ray(plan, to_train, tracking, progress, writer, outcome)
        else:
            run_local(plan, to_train, tracking, progress, writer, outcome)
    finally:
        progress.stop()
        if any(r.predictions or r.validation for r in outcome.results):
            write_predictions_index(plan, outcome.results)
