"""Worker processes: how the local executor runs jobs side by side on one machine.

A :class:`WorkerPool` holds ``size`` worker processes. Each is a fresh Python process (``spawn``:
it inherits none of the sweep's threads, locks or open MLflow client), loads the sweep's plugins,
then runs the jobs it is handed one at a time with :func:`run_job_here` (the runner's ``run``,
logging into the job's own MLflow child run, as a Ray worker does) and sends back what happened as
events: a step's metrics, the finished job's result with what its tracker recorded, or the job's
failure. The sweep's process keeps everything else (:mod:`.executors`).

- A worker ignores SIGINT (a terminal sends Ctrl-C to the whole process group): the sweep's process
  handles it, as SIGTERM, and ends its workers with :meth:`WorkerPool.kill`.
- A worker that dies while it runs a job (killed, out of memory) is reported as a ``died`` event
  with its exit code and replaced; the other workers go on.
- A worker whose sweep process died (SIGKILL: no handler ran) ends itself within a second.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench_med.registry import load_plugin
from rlbench_med.runners.base import RUNNERS, Job, JobResult, NullTracker, Tracker, flush_tracker
from rlbench_med.runners.sweep.jobcache import RecordingTracker
from rlbench_med.runners.sweep.outcome import failure_of
from rlbench_med.runners.sweep.tracking import ChildRun

#: How often a waiting sweep looks for a worker that died, and a worker for a sweep that died (seconds).
POLL_S = 0.5


class _StepForwarding:
    """A job's tracker that also hands each step's metrics to ``on_step`` (the sweep's progress)."""

    def __init__(self, inner: Tracker, on_step: Callable[[int, Mapping[str, float]], None]) -> None:
        self.inner = inner
        self.on_step = on_step

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)
        self.on_step(step, dict(metrics))

    def log_artifact(self, path: Path) -> None:
        self.inner.log_artifact(path)


def run_job_here(
    runner_name: str, plugins: tuple[str, ...], job: Job, child: ChildRun, resume: bool,
    on_step: Callable[[int, Mapping[str, float]], None] | None = None,
) -> tuple[JobResult, RecordingTracker]:
    """Run one job in this process (a worker's, or a Ray task's): load the plugins, look the runner up,
    run the job into its child run. Returns the result and the recorder of its params and per-step
    metrics (its MLflow client left out, so it travels back to the sweep)."""
    for plugin in plugins:
        load_plugin(plugin)
    runner = RUNNERS.get(runner_name)
    tracker = child.open()
    recorder = RecordingTracker(_StepForwarding(tracker, on_step) if on_step is not None else tracker)
    try:
        result = runner.run(job, recorder, resume)
    finally:  # the last second of per-step metrics, whether the job ended or failed
        flush_tracker(tracker)
    recorder.inner = NullTracker()
    return result, recorder


@dataclass(frozen=True)
class Task:
    """One job handed to a worker; ``number`` names it in the worker's events."""

    number: int
    runner_name: str
    job: Job
    child: ChildRun
    resume: bool


def _watch_parent(parent: int) -> None:
    """End this worker once the sweep's process is gone (its parent changes)."""
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(1)


def _serve(plugins: tuple[str, ...], tasks: Any, events: Any, parent: int) -> None:
    """A worker's life: run each task it gets until it gets None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    for plugin in plugins:  # before the first task is unpickled: its job may hold a plugin's classes
        load_plugin(plugin)
    while (task := tasks.get()) is not None:
        number = task.number
        try:
            result, recorder = run_job_here(task.runner_name, plugins, task.job, task.child, task.resume,
                                            lambda step, metrics: events.put(("step", number, step, metrics)))
        except (Exception, SystemExit) as exc:  # the job's own failure (a plugin's sys.exit too)
            events.put(("failed", number, failure_of(task.job, exc)))
        else:
            events.put(("done", number, result, recorder))


class WorkerPool:
    """``size`` worker processes, each running one task at a time (module docstring)."""

    def __init__(self, size: int, plugins: tuple[str, ...]) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._plugins = plugins
        self._events = self._context.Queue()
        self._workers: list[Any] = [None] * size
        self._inboxes: list[Any] = [None] * size
        self._busy: dict[int, int] = {}  # worker index -> task number
        self._next_check = 0.0
        for index in range(size):
            self._start(index)

    def _start(self, index: int) -> None:
        inbox = self._context.Queue()
        worker = self._context.Process(target=_serve, args=(self._plugins, inbox, self._events, os.getpid()),
                                       name=f"rlbench-med worker {index}", daemon=True)
        worker.start()
        self._workers[index], self._inboxes[index] = worker, inbox

    @property
    def idle(self) -> list[int]:
        """Workers without a task."""
        return [i for i in range(len(self._workers)) if i not in self._busy]

    def submit(self, index: int, task: Task) -> None:
        self._busy[index] = task.number
        self._inboxes[index].put(task)

    def next_event(self) -> tuple[Any, ...]:
        """The next event of a task: ``("step", number, step, metrics)``, ``("done", number, result,
        recorder)``, ``("failed", number, JobFailure)`` or ``("died", number, reason)`` (its worker ended
        while running it; a new worker takes its place). Blocks until there is one."""
        while True:
            if time.monotonic() >= self._next_check:  # also while other workers keep sending steps
                self._next_check = time.monotonic() + POLL_S
                died = self._dead_worker()
                if died is not None:
                    return died
            try:
                event = self._events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if event[0] != "step":
                self._busy = {i: n for i, n in self._busy.items() if n != event[1]}
            return event

    def _dead_worker(self) -> tuple[Any, ...] | None:
        for index, number in list(self._busy.items()):
            worker = self._workers[index]
            if worker.is_alive():
                continue
            del self._busy[index]
            code = worker.exitcode
            self._start(index)
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return ("died", number, f"WorkerDied: the worker process running the job ended ({how})")
        return None

    def close(self) -> None:
        """Let every worker finish (they are idle) and end."""
        for inbox in self._inboxes:
            inbox.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
        self.kill()

    def kill(self) -> None:
        """End every worker now (SIGTERM, then SIGKILL for one that has not ended within 5 s)."""
        for worker in self._workers:
            if worker.is_alive():
                worker.terminate()
        deadline = time.monotonic() + 5
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join()


__all__ = ["Task", "WorkerPool", "run_job_here"]
