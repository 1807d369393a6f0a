"""Terminal progress of a sweep (rich): one bar for the jobs, one for the current job's steps."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichProgress:
    """Implements ``runners.sweep.Progress``; silent when the console is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.enabled = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.jobs: Any = None
        self.steps: Any = None

    def start(self, total_jobs: int) -> None:
        if self.enabled:
            self.progress.start()
            self.jobs = self.progress.add_task("jobs", total=total_jobs)

    def job_started(self, job: Any, total_steps: int | None) -> None:
        if not self.enabled:
            return
        if total_steps:
            if self.steps is None:
                self.steps = self.progress.add_task("steps", total=total_steps)
            self.progress.reset(self.steps, total=total_steps, description=f"{job.algo} seed {job.seed}")

    def step(self, step: int) -> None:
        if self.enabled and self.steps is not None:
            self.progress.update(self.steps, completed=step)

    def job_finished(self, job: Any, ok: bool) -> None:
        if self.enabled and self.jobs is not None:
            self.progress.advance(self.jobs)

    def stop(self) -> None:
        if self.enabled:
            self.progress.stop()
