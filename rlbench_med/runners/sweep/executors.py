"""Executors: run a sweep's pending jobs in this process one after another, side by side in worker
processes of this machine (:mod:`.workers`), or as Ray tasks; take the ones the job cache holds from it.

All record each job through :mod:`.outcome` (results.csv rows at once, child run closed), and
re-raise ``KeyboardInterrupt`` (SIGINT or SIGTERM) after marking the jobs still open KILLED. A job
that trained is then stored in the job cache (:mod:`.jobcache`) with the metrics it logged.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlbench_med.runners.base import BASE, Job, JobResult, flush_tracker
from rlbench_med.runners.sweep import jobcache
from rlbench_med.runners.sweep.outcome import (
    JobFailure,
    SweepOutcome,
    failure_of,
    record_failure,
    record_result,
)
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.progress import NullProgress, Progress, StepCounting
from rlbench_med.runners.sweep.results import ResultsWriter
from rlbench_med.runners.sweep.signals import interrupt_reason, shielded
from rlbench_med.runners.sweep.tracking import SweepTracking
from rlbench_med.runners.sweep.workers import Task, WorkerPool, run_job_here

#: Environment variables a Ray worker inherits from the driver.
WORKER_ENV_PREFIXES = ("RLBENCH_MED_", "MLFLOW_", "NUMBA_")


def run_reused(
    plan: Plan, jobs: Sequence[Job], tracking: SweepTracking, progress: Progress,
    writer: ResultsWriter, outcome: SweepOutcome,
) -> None:
    """Jobs the job cache holds: a child run with the stored params and per-step metrics, the stored
    predictions and results rows, the run tagged with where and when the job was trained."""
    for job in jobs:
        entry = plan.reused[(job.algo, job.seed)]
        with shielded():
            child = tracking.child(job)
            jobcache.replay(entry, child.open())
            result = jobcache.reuse(entry, job)
        progress.job_reused(job, result.reused_from or "")
        record_result(result, tracking, NullProgress(), writer, outcome)


def _keep(plan: Plan, result: JobResult, recorder: jobcache.RecordingTracker, progress: Progress) -> None:
    """Store a trained job in the job cache; a cache that cannot be written is said, never fatal."""
    try:
        jobcache.keep(plan, result, recorder.history, recorder.params)
    except OSError as exc:
        progress.note(f"job cache: {result.job.algo} seed {result.job.seed} not stored ({exc})")


def _quiet(job: Job) -> Job:
    """The job without the runner's own progress bar: the sweep's display shows its steps."""
    if hasattr(job.config, "progress"):
        return dataclasses.replace(job, config=dataclasses.replace(job.config, progress=False))
    return job


def _steps(job: Job) -> int | None:
    return 0 if job.estimator == BASE else getattr(job.config, "steps", None)


def run_local(
    plan: Plan, jobs: Sequence[Job], tracking: SweepTracking, progress: Progress,
    writer: ResultsWriter, outcome: SweepOutcome,
) -> None:
    """The jobs side by side in worker processes when the machine has cores for several
    (:meth:`Plan.side_by_side`), else one after another in this process."""
    workers = plan.side_by_side(jobs)
    if workers > 1:
        run_side_by_side(plan, jobs, tracking, progress, writer, outcome, workers)
        return
    for job in jobs:
        with shielded():
            child = tracking.child(job)
        if getattr(progress, "enabled", False):  # a second (runner) bar would fight the sweep's
            job = _quiet(job)
        progress.job_started(job, _steps(job))
        tracker = child.open()
        recorder = jobcache.RecordingTracker(StepCounting(tracker, progress))
        try:
            try:
                result = plan.runner.run(job, recorder, plan.resume)
            finally:  # the last second of per-step metrics, before the run is closed in any way
                flush_tracker(tracker)
        except KeyboardInterrupt as exc:
            with shielded():
                tracking.close_child(job, None, "KILLED", interrupt_reason(exc))
            progress.job_finished(job, False)
            raise
        except (Exception, SystemExit) as exc:  # a job's own failure (a plugin's sys.exit too): the sweep goes on
            record_failure(failure_of(job, exc), tracking, progress, outcome)
            continue
        if record_result(result, tracking, progress, writer, outcome):
            _keep(plan, result, recorder, progress)


def run_side_by_side(
    plan: Plan, jobs: Sequence[Job], tracking: SweepTracking, progress: Progress,
    writer: ResultsWriter, outcome: SweepOutcome, workers: int,
) -> None:
    """The jobs in ``workers`` worker processes (:mod:`.workers`), each handed the next job in plan order
    when it is free. This process opens each job's child run, shows every running job's steps and
    records each job as it ends, as :func:`run_local` does; on SIGINT or SIGTERM it ends the workers
    and marks the running jobs KILLED."""
    waiting = [_quiet(job) for job in jobs]  # a worker's own bar would draw over the sweep's display
    running: dict[int, Job] = {}  # task number -> job
    numbers = itertools.count()
    pool = WorkerPool(workers, plan.plugins)
    ended = False
    try:
        while waiting or running:
            for index in pool.idle[: len(waiting)]:
                job, number = waiting.pop(0), next(numbers)
                with shielded():
                    child = tracking.child(job)
                progress.job_started(job, _steps(job))
                running[number] = job
                pool.submit(index, Task(number, plan.runner.name, job, child, plan.resume))
            kind, number, *rest = pool.next_event()
            job = running.get(number)
            if job is None:  # a late step of a job whose worker died: the job is recorded already
                continue
            if kind == "step":
                progress.step(rest[0], rest[1], job)
                continue
            del running[number]
            if kind == "done":
                result, recorder = rest
                if record_result(result, tracking, progress, writer, outcome):
                    _keep(plan, result, recorder, progress)
            elif kind == "failed":
                record_failure(rest[0], tracking, progress, outcome)
            else:  # died
                record_failure(JobFailure(job, rest[0], rest[0]), tracking, progress, outcome)
        ended = True
    except KeyboardInterrupt as exc:
        pool.kill()
        with shielded():
            for job in running.values():
                tracking.close_child(job, None, "KILLED", interrupt_reason(exc))
        for job in running.values():
            progress.job_finished(job, False)
        raise
    finally:
        if ended:
            pool.close()
        else:
            pool.kill()


def _ray_init(plan: Plan) -> Any:
    import ray

    if ray.is_initialized():
        return ray
    # The workers use the driver's cache, tracking store, numba cache and MLflow settings (telemetry off).
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
    if plan.ray_address:
        ray.init(address=plan.ray_address, **kwargs)
    else:
        ray.init(num_cpus=plan.ray_num_cpus, include_dashboard=False, **kwargs)
    return ray


def run_ray(
    plan: Plan, jobs: Sequence[Job], tracking: SweepTracking, progress: Progress,
    writer: ResultsWriter, outcome: SweepOutcome,
) -> None:
    ray = _ray_init(plan)
    from ray import cloudpickle
    from ray.exceptions import RayError, RayTaskError

    # Classes defined in --plugin .py files (e.g. a runner's config) travel by value: a worker
    # cannot import them by module name before it has loaded the plugin itself.
    plugin_files = {str(Path(p).resolve()) for p in plan.plugins if Path(p).is_file()}
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and str(Path(module.__file__).resolve()) in plugin_files:
            cloudpickle.register_pickle_by_value(module)

    remote = ray.remote(run_job_here)
    futures: dict[Any, Job] = {}
    for job in jobs:
        with shielded():
            child = tracking.child(job)
        progress.job_started(job, None)
        ref = remote.options(**plan.resources(job), max_retries=0).remote(
            plan.runner.name, plan.plugins, job, child, plan.resume
        )
        futures[ref] = job
    try:
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            ref = ready[0]
            job = futures.pop(ref)
            try:
                result, recorder = ray.get(ref)
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                failure = failure_of(job, cause)
                failure.detail = str(exc)
                record_failure(failure, tracking, progress, outcome)
                continue
            except RayError as exc:  # worker died, object lost, ...
                record_failure(failure_of(job, exc), tracking, progress, outcome)
                continue
            if record_result(result, tracking, progress, writer, outcome):
                _keep(plan, result, recorder, progress)
    except KeyboardInterrupt as exc:
        with shielded():
            for ref, job in futures.items():
                ray.cancel(ref, force=True)
                tracking.close_child(job, None, "KILLED", interrupt_reason(exc))
        raise
