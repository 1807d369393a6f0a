"""The life of a sweep, in one place: data -> shared work -> jobs -> outcome -> parent run closed.

``run_sweep(plan, tracking, progress)`` prepares the data and the runner's shared work, runs the
pending jobs with the plan's executor and returns a :class:`SweepOutcome`; the caller builds the
report and closes the parent run with :func:`finish_sweep` (in a ``finally``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rlbench_med.runners.sweep.datacache import ensure_data
from rlbench_med.runners.sweep.executors import run_local, run_ray
from rlbench_med.runners.sweep.outcome import SweepOutcome
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.progress import NullProgress, Progress
from rlbench_med.runners.sweep.results import (
    ResultsWriter,
    floor_files,
    read_results,
    save_config,
    write_floors,
    write_predictions_index,
)
from rlbench_med.runners.sweep.tracking import NullSweepTracking, SweepTracking
from rlbench_med.suites.floors import is_floor


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the sweep like Ctrl-C (runs marked KILLED, results kept)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep(
    plan: Plan,
    tracking: SweepTracking | None = None,
    progress: Progress | None = None,
) -> SweepOutcome:
    """Run the plan's pending jobs; never raises for a failed job (see ``SweepOutcome.failures``).

    Ctrl-C (or SIGTERM) stops the sweep: open child runs are marked KILLED, results.csv keeps
    every finished job. An error of the sweep itself marks the parent run FAILED and is
    re-raised. Otherwise the parent run stays open for the report: close it with
    :func:`finish_sweep` (in a ``finally``).
    """
    tracking = tracking or NullSweepTracking()
    progress = progress or NullProgress()
    start = time.perf_counter()
    if plan.data_dir is not None:
        progress.note(f"data: checking {plan.data_dir} (generated on first use) ...")
        ensure_data(plan)
        progress.note(f"data: ready ({time.perf_counter() - start:.1f} s)")
    save_config(plan)
    results_csv = plan.out_dir / "results.csv"
    writer = ResultsWriter(results_csv, read_results(results_csv) if plan.done and results_csv.exists() else ())
    if not results_csv.exists():
        writer.flush()
    if plan.has_floors and not any(is_floor(algo) for algo, _ in plan.done):
        begin = time.perf_counter()
        progress.note("floors: scoring the trivial answers (every class, the majority set, a random class) ...")
        writer.add(write_floors(plan))
        progress.note(f"floors: done ({time.perf_counter() - begin:.1f} s)")
    outcome = SweepOutcome(plan, [], [], False, results_csv, 0.0)
    pending = plan.pending
    tracking.start(plan)
    try:
        with _sigterm_as_interrupt():
            if pending:
                begin = time.perf_counter()
                progress.note(f"runner {plan.runner.name}: preparing shared work (e.g. the SFT base) ...")
                plan.runner.prepare(pending)
                progress.note(f"runner {plan.runner.name}: ready ({time.perf_counter() - begin:.1f} s)")
            progress.start(len(pending))
            if plan.executor == "ray":
                run_ray(plan, pending, tracking, progress, writer, outcome)
            else:
                run_local(plan, pending, tracking, progress, writer, outcome)
        outcome.status = "FAILED" if outcome.failures else "FINISHED"
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.status = "KILLED"
    except BaseException:
        tracking.finish("FAILED", [plan.out_dir / "config.yaml", results_csv, *floor_files(plan.out_dir)])
        raise
    finally:
        progress.stop()
        if any(r.predictions for r in outcome.results):
            write_predictions_index(plan, outcome.results)
        outcome.wall_s = time.perf_counter() - start
    return outcome


def finish_sweep(outcome: SweepOutcome, tracking: SweepTracking, artifacts: Sequence[Path] = ()) -> None:
    """Close the parent run with the sweep's status, attaching config, results.csv, the floors' predictions
    and report files."""
    out = outcome.plan.out_dir
    tracking.finish(outcome.status, [out / "config.yaml", outcome.results_csv, *floor_files(out), *artifacts])
