"""What every runner shares: the job description, its result, the tracker protocol, the runner table.

A *job* is one (algorithm, seed) training run of a suite. A runner turns a job into a
:class:`JobResult` (results.csv rows + a predictions file per evaluation), logging through a
:class:`Tracker` handed to it. ``reports/tracking.py`` implements the tracker with MLflow; the
runners never import MLflow themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rlbench_med.registry import Registry, RegistryError
from rlbench_med.typed_config import ConfigError

if TYPE_CHECKING:
    from rlbench_med.algorithms import Estimator

RESULT_COLUMNS = ("suite", "algo", "seed", "domain", "metric", "value", "n")
#: The pseudo-algorithm of the shared SFT base evaluated at step 0 (no training); its seed is the base's.
BASE = "base"
#: The supervised baseline: continues SFT with the RL runs' sample budget (not an estimator).
SFT = "sft"


@runtime_checkable
class Tracker(Protocol):
    """Where a runner sends params, per-step metrics and artifacts."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path) -> None: ...


class NullTracker:
    """Discards everything."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: Path) -> None:
        pass


@dataclass
class MemoryTracker:
    """Keeps everything in memory (tests, and runs with tracking turned off)."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path: Path) -> None:
        self.artifacts.append(Path(path))

    def history(self, key: str) -> list[tuple[int, float]]:
        return [(step, m[key]) for step, m in self.metrics if key in m]


@dataclass(frozen=True)
class Job:
    """One (algorithm, seed) run of a suite.

    ``algo`` is the label written to results.csv (e.g. ``drpo``, ``drpo:k_max=3``,
    ``drpo[acc0.2_iou0.6]``); ``estimator`` is the estimator spec string it trains with, or
    ``sft`` for the supervised baseline. ``config`` is the runner's resolved config dataclass.
    ``data_dir`` is what :func:`rlbench_med.suites.load_data` reads: a data folder, or the data
    source file the sweep writes (``*.source.json``: the split files and the suite's selection).
    """

    suite: str
    algo: str
    estimator: str
    seed: int
    config: Any
    data_dir: Path
    out_dir: Path

    @property
    def slug(self) -> str:
        """File-name-safe ``<algo>-seed<seed>`` used for predictions and checkpoints."""
        return run_slug(self.algo, self.seed)


def safe_name(label: str) -> str:
    """``label`` with every character but letters, digits and ``-_.=`` replaced by ``_`` (file names)."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)


def run_slug(label: str, seed: int) -> str:
    """``<safe label>-seed<seed>``: the predictions file stem of a results.csv (algo, seed)."""
    return f"{safe_name(label)}-seed{seed}"


@dataclass
class JobResult:
    """What a finished job hands back to the sweep (which alone writes results.csv)."""

    job: Job
    rows: list[dict[str, Any]]  # RESULT_COLUMNS keys
    predictions: dict[str, Path]  # results.csv algo label -> predictions jsonl
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    #: Set when the result was not trained but taken from the job cache: where and when it was trained.
    reused_from: str | None = None


@dataclass(frozen=True)
class RunnerSpec:
    """A runner: its config dataclass and the functions the sweep calls.

    - ``config_cls``: frozen dataclass of every knob (``--set key=value`` targets its fields).
    - ``check(job)``: raise ``ConfigError`` with a one-line reason before any training.
    - ``prepare(jobs)``: shared work for a sweep (e.g. the SFT base), run once by the driver.
    - ``run(job, tracker, resume)``: train and evaluate one job.
    - ``plan(job)``: lines describing what would run (``--dry-run``).
    - ``evaluates_base``: ``run`` accepts a :data:`BASE` job (the shared starting policy, evaluated
      without training), which the sweep adds so reports show where every algorithm started.
    - ``identity(job)``: what a job's results depend on beyond its config, data and the code (e.g.
      the cache key of its starting checkpoint), once the data is ready; a runner without it is
      never reused from the job cache (``runners/sweep/jobcache.py``).
    - ``preflight(job)``: for a real run (not ``--dry-run``), raise ``ConfigError`` if the job cannot
      start on this machine (missing packages, model or GPUs); called at plan time, before anything
      is written.
    """

    name: str
    description: str
    config_cls: type
    check: Callable[[Job], None]
    prepare: Callable[[Sequence[Job]], None]
    run: Callable[[Job, Tracker, bool], JobResult]
    plan: Callable[[Job], list[str]]
    evaluates_base: bool = False
    identity: Callable[[Job], dict[str, str]] | None = None
    preflight: Callable[[Job], None] | None = None


def make_job_estimator(job: Job) -> Estimator:
    """The estimator of ``job.estimator``; a bad spec raises :class:`ConfigError` with a one-line reason."""
    from rlbench_med.algorithms import make_estimator

    try:
        return make_estimator(job.estimator)
    except (RegistryError, ValueError) as exc:
        raise ConfigError(f"{job.algo}: bad estimator spec {job.estimator!r}: {exc}".splitlines()[0]) from exc


RUNNERS: Registry[RunnerSpec] = Registry("runner")
RUNNERS.register_lazy("local", "rlbench_med.runners.local:RUNNER")
RUNNERS.register_lazy("openrlhf", "rlbench_med.runners.openrlhf:RUNNER")
RUNNERS.register_lazy("timing", "rlbench_med.runners.timing:RUNNER")


def cache_dir() -> Path:
    """Root of generated data and SFT base checkpoints (``RLBENCH_MED_CACHE`` or ~/.cache)."""
    root = os.environ.get("RLBENCH_MED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlbench-med"
    )
    return Path(root)
