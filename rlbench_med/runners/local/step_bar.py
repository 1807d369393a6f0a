"""A job's step bar on the terminal (``progress=true``, stderr a terminal): rich, the one progress library.

The CLI's sweep display shows the steps of a job itself and turns this bar off; it serves a job run
from Python (``run_job``). It has the three methods the training loop calls.
"""

from __future__ import annotations

import sys
from typing import Any


class StepBar:
    """``update(n)``, ``set_postfix(**stats)``, ``close()``; does nothing when ``enabled`` is false."""

    def __init__(self, total: int, initial: int, description: str, enabled: bool) -> None:
        self.progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                 console=Console(file=sys.stderr), transient=True)
        self.task = self.progress.add_task(description, total=total, completed=initial, stats="")
        self.progress.start()

    def update(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def set_postfix(self, **stats: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, stats="  ".join(f"{k} {v}" for k, v in stats.items()))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
