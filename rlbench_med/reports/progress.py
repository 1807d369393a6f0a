"""Terminal progress of a sweep (rich): one bar for the jobs, one for the current job's steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichProgress:
    """Implements ``runners.sweep.Progress``; silent when the console is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.enabled = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"), console=console, transient=False,
        )
        self.jobs: Any = None
        self.steps: Any = None
        self._stats: dict[int, str] = {}

    def note(self, message: str) -> None:
        """A status line (printed on a terminal and in logs alike)."""
        self.console.print(message, highlight=False)

    def start(self, total_jobs: int) -> None:
        if self.enabled:
            self.progress.start()
            self.jobs = self.progress.add_task("jobs", total=total_jobs, stats="")

    def job_started(self, job: Any, total_steps: int | None) -> None:
        if not self.enabled:
            return
        if total_steps:
            if self.steps is None:
                self.steps = self.progress.add_task("steps", total=total_steps, stats="")
            self.progress.reset(self.steps, total=total_steps, description=f"{job.algo} seed {job.seed}", stats="")

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        if not (self.enabled and self.steps is not None):
            return
        stats = self._stats.get(id(self.steps), "")
        if "train/reward_mean" in metrics:
            stats = f"reward {metrics['train/reward_mean']:.3f}"
            if "train/rollouts_per_s" in metrics:
                stats += f"  {metrics['train/rollouts_per_s']:.0f} rollouts/s"
            self._stats[id(self.steps)] = stats
        self.progress.update(self.steps, completed=step, stats=stats)

    def job_finished(self, job: Any, ok: bool) -> None:
        if self.enabled and self.jobs is not None:
            self.progress.advance(self.jobs)

    def stop(self) -> None:
        if self.enabled:
            self.progress.stop()
