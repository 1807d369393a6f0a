"""Progress of a sweep: rich bars on a terminal, plain lines in a log.

On a terminal: one bar for the jobs, one for each running job's steps (reward, rollouts/s). When
stdout is not a terminal (redirected to a file, a batch job's log) the bars would print nothing
useful, so progress is written as lines instead: each phase (data, SFT base), each job's start
and end, and every ``log_every`` steps of a job (default: a tenth of its steps). Every line names
its job, so jobs running side by side interleave readably::

    job 1/2 drpo seed 0: started (150 steps)
    drpo seed 0: step 15/150  reward 0.412  318 rollouts/s  ETA 1m12s
    job 1/2 drpo seed 0: finished (1m20s)
    job 2/2 grpo seed 0: failed (3s): EstimatorFailed: estimator 'grpo' failed at step 4: ...
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Progress lines per job in a log when ``log_every`` is not given.
LINES_PER_JOB = 10


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``; ``9.4`` -> ``9s``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class _JobClock:
    """A running job: when it started, from which step (a resumed job starts later), its step bar."""

    label: str
    total: int | None
    every: int
    started: float
    first_step: int | None = None
    first_seen: float = 0.0  # when its first step was reported: the rate counts from there (the setup before it,
    # a worker's start, the data, the first evaluation, is not a step's)
    last_line: int = -1
    reward: float | None = None
    bar: Any = None  # its rich task on a terminal
    stats: str = ""


class RichProgress:
    """Implements ``runners.sweep.Progress``: bars on a terminal, lines in a log."""

    def __init__(self, console: Console, log_every: int | None = None) -> None:
        self.console = console
        self.enabled = console.is_terminal
        self.log_every = log_every
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"), console=console, transient=False,
        )
        self.jobs: Any = None
        self._total_jobs = 0
        self._started_jobs = 0
        self._clocks: dict[tuple[str, int], tuple[int, _JobClock]] = {}
        self._current: _JobClock | None = None

    def note(self, message: str) -> None:
        """A status line (printed on a terminal and in logs alike; long lines are not cut)."""
        self.console.print(message, highlight=False, soft_wrap=True, markup=False)

    def start(self, total_jobs: int) -> None:
        self._total_jobs = total_jobs
        if self.enabled:
            self.progress.start()
            self.jobs = self.progress.add_task("jobs", total=total_jobs, stats="")

    def job_started(self, job: Any, total_steps: int | None) -> None:
        self._started_jobs += 1
        label = f"{job.algo} seed {job.seed}"
        every = self.log_every or max(1, math.ceil((total_steps or LINES_PER_JOB) / LINES_PER_JOB))
        clock = _JobClock(label, total_steps, every, time.perf_counter())
        self._clocks[(job.algo, job.seed)] = (self._started_jobs, clock)
        self._current = clock
        if not self.enabled:
            steps = f" ({total_steps} steps)" if total_steps else ""
            self.note(f"job {self._started_jobs}/{self._total_jobs} {label}: started{steps}")
            return
        if total_steps:
            clock.bar = self.progress.add_task(label, total=total_steps, stats="")

    def _clock(self, job: Any) -> _JobClock | None:
        if job is None:
            return self._current
        found = self._clocks.get((job.algo, job.seed))
        return found[1] if found is not None else None

    def step(self, step: int, metrics: Mapping[str, float], job: Any = None) -> None:
        """A step of ``job`` (None: of the job started last)."""
        clock = self._clock(job)
        if clock is None:
            return
        if not self.enabled:
            self._log_step(clock, step, metrics)
            return
        if clock.bar is None:
            return
        if "train/reward_mean" in metrics:
            clock.stats = f"reward {metrics['train/reward_mean']:.3f}"
            if "train/rollouts_per_s" in metrics:
                clock.stats += f"  {metrics['train/rollouts_per_s']:.0f} rollouts/s"
        self.progress.update(clock.bar, completed=step, stats=clock.stats)

    def _log_step(self, clock: _JobClock, step: int, metrics: Mapping[str, float]) -> None:
        if step < 1:
            return
        if clock.first_step is None:  # a resumed job starts after its checkpoint: its rate counts from there
            clock.first_step, clock.first_seen = step - 1, time.perf_counter()
        if "train/reward_mean" in metrics:
            clock.reward = float(metrics["train/reward_mean"])
        if step <= clock.last_line or not (step % clock.every == 0 or step == clock.total):
            return
        clock.last_line = step
        parts = [f"{clock.label}: step {step}" + (f"/{clock.total}" if clock.total else "")]
        if clock.reward is not None:
            parts.append(f"reward {clock.reward:.3f}")
        if "train/rollouts_per_s" in metrics:
            parts.append(f"{metrics['train/rollouts_per_s']:.0f} rollouts/s")
        if clock.total:
            now, first = time.perf_counter(), clock.first_step + 1
            per_step = ((now - clock.first_seen) / (step - first) if step > first
                        else (now - clock.started) / (step - clock.first_step))
            parts.append(f"ETA {duration(per_step * (clock.total - step))}")
        self.note("  ".join(parts))

    def job_finished(self, job: Any, ok: bool, error: str = "") -> None:
        """A job's end; a failed one's one-line reason (``error``) is printed on a terminal and in logs alike."""
        number, clock = self._clocks.get((job.algo, job.seed), (0, None))
        if self.enabled:
            if clock is not None and clock.bar is not None:
                self.progress.remove_task(clock.bar)
                clock.bar = None
            if self.jobs is not None:
                self.progress.advance(self.jobs)
            if not ok and error:
                self.note(f"job {number}/{self._total_jobs} {job.algo} seed {job.seed}: failed: {error}")
            return
        took = f" ({duration(time.perf_counter() - clock.started)})" if clock is not None else ""
        reason = f": {error}" if not ok and error else ""
        self.note(f"job {number}/{self._total_jobs} {job.algo} seed {job.seed}: "
                  f"{'finished' if ok else 'failed'}{took}{reason}")

    def job_reused(self, job: Any, origin: str) -> None:
        """A job taken from the job cache: one line, on a terminal and in logs alike."""
        self._started_jobs += 1
        self.note(f"job {self._started_jobs}/{self._total_jobs} {job.algo} seed {job.seed}: reused from the job cache "
                  f"({origin})")
        if self.enabled and self.jobs is not None:
            self.progress.advance(self.jobs)

    def stop(self) -> None:
        if self.enabled:
            self.progress.stop()
