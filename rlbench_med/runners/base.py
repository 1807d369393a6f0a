"""What every runner shares: the job description, its result, the tracker protocol, the runner table.

A *job* is one (algorithm, seed) training run of a suite. A runner turns a job into a
:class:`JobResult` (results.csv rows + a predictions file per evaluation), logging through a
:class:`Tracker` handed to it. ``reports/tracking.py`` implements the tracker with MLflow; the
runners never import MLflow themselves.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rlbench_med.registry import Registry, RegistryError
from rlbench_med.typed_config import ConfigError

if TYPE_CHECKING:
    from rlbench_med.algorithms import Estimator

RESULT_COLUMNS = ("suite", "algo", "seed", "domain", "metric", "value", "n")
#: The columns that identify a results.csv row: one value per (suite, algo, seed, domain, metric).
RESULT_KEY = ("suite", "algo", "seed", "domain", "metric")
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


def flush_tracker(tracker: Tracker) -> None:
    """Send what ``tracker`` buffers (an MLflow job tracker holds up to a second of per-step metrics);
    trackers without a buffer have nothing to send."""
    flush = getattr(tracker, "flush", None)
    if flush is not None:
        flush()


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
    ``score_test``: whether the job answers and scores the test split at its end (results.csv);
    a tuning trial does not: it answers the validation split only, whose rows it returns instead.
    """

    suite: str
    algo: str
    estimator: str
    seed: int
    config: Any
    data_dir: Path
    out_dir: Path
    score_test: bool = True

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


#: The split a job's results.csv rows and ``predictions/`` files score (once, at the end of the job).
TEST = "test"
#: The split every choice reads (curves, calibration, tuning); its predictions go to ``predictions/validation/``.
VALIDATION = "validation"


def predictions_dir(out_dir: Path, split: str = TEST) -> Path:
    """Where a sweep's predictions of ``split`` live: ``<out>/predictions`` (test) or ``<out>/predictions/validation``."""
    base = Path(out_dir) / "predictions"
    return base if split == TEST else base / split


class ResultsError(ValueError):
    """A results.csv, or a row for one, that breaks the contract: its columns, a value that is not a
    finite number, or a (suite, algo, seed, domain, metric) given twice. The message names file:line."""


def check_result_row(row: Mapping[str, Any], where: str, seen: dict[tuple[Any, ...], str]) -> dict[str, Any]:
    """``row`` with ``seed``/``n`` as int and ``value`` as float, checked; ``seen`` maps the keys of the
    rows before it to where they are (updated). Raises :class:`ResultsError` naming ``where``.

    A value twice would be averaged as if it were two seeds, and NaN or inf would be rendered as a
    number, so both are refused rather than reported.
    """
    if None in row or set(row) != set(RESULT_COLUMNS) or any(row[c] is None for c in RESULT_COLUMNS):
        raise ResultsError(f"{where}: expected the {len(RESULT_COLUMNS)} columns {','.join(RESULT_COLUMNS)}; "
                           "the row is cut short or has extra fields")
    try:
        parsed = {**row, "seed": int(row["seed"]), "value": float(row["value"]), "n": int(row["n"])}
    except (TypeError, ValueError):
        raise ResultsError(f"{where}: seed, value or n is not a number "
                           f"(seed {row['seed']!r}, value {row['value']!r}, n {row['n']!r})") from None
    key = tuple(parsed[c] for c in RESULT_KEY)
    if not math.isfinite(parsed["value"]):
        raise ResultsError(f"{where}: value {row['value']!r} of {parsed['algo']} seed {parsed['seed']} "
                           f"{parsed['domain']} {parsed['metric']} is not a finite number")
    if key in seen:
        raise ResultsError(f"{where}: {parsed['algo']} seed {parsed['seed']} {parsed['domain']} {parsed['metric']} "
                           f"is given twice (also {seen[key]}); keep one row per algo, seed, domain and metric")
    seen[key] = where
    return parsed


def check_result_rows(rows: Iterable[Mapping[str, Any]], where: str,
                      seen: dict[tuple[Any, ...], str] | None = None) -> list[dict[str, Any]]:
    """:func:`check_result_row` over ``rows``, all named ``where`` (e.g. a job's rows)."""
    seen = {} if seen is None else seen
    return [check_result_row(row, where, seen) for row in rows]


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a results.csv, each checked by :func:`check_result_row` (seed/n int, value float);
    raises :class:`ResultsError` naming ``file:line``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
                raise ResultsError(f"{path}:1: columns {reader.fieldnames} are not {','.join(RESULT_COLUMNS)}")
            seen: dict[tuple[Any, ...], str] = {}
            return [check_result_row(row, f"{path}:{reader.line_num}", seen) for row in reader]
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not UTF-8 text; is it a results.csv?") from None
    except csv.Error as exc:
        raise ResultsError(f"{path}: not a readable CSV file ({exc})") from None


#: Beside results.csv: the jobs of an output folder that failed and have no results, with the one-line
#: reason (results.csv's columns are fixed, so the marker is a file of its own).
FAILED_CSV = "failed.csv"
FAILED_COLUMNS = ("suite", "algo", "seed", "error")


def read_failed(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``failed.csv`` (``seed`` as int); none when the file does not exist. Raises
    :class:`ResultsError` naming ``file:line`` for a damaged one."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != FAILED_COLUMNS:
                raise ResultsError(f"{path}:1: columns {reader.fieldnames} are not {','.join(FAILED_COLUMNS)}")
            rows = []
            for row in reader:
                if None in row or any(row[c] is None for c in FAILED_COLUMNS) or not row["seed"].isdigit():
                    raise ResultsError(f"{path}:{reader.line_num}: expected suite,algo,seed,error with a whole seed")
                rows.append({**row, "seed": int(row["seed"])})
            return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"{path}: not a readable CSV file ({type(exc).__name__})") from None


@dataclass
class JobResult:
    """What a finished job hands back to the sweep (which alone writes results.csv).

    ``rows`` score the test split (results.csv); for a job with ``score_test`` False, the validation
    split (a tune's validation.csv). ``predictions`` are the test split's (none without
    ``score_test``); ``validation`` the validation split's, with full inputs (what calibration and
    tuning read; empty for a runner that does not score validation).
    """

    job: Job
    rows: list[dict[str, Any]]  # RESULT_COLUMNS keys
    predictions: dict[str, Path]  # results.csv algo label -> predictions jsonl
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    #: Set when the result was not trained but taken from the job cache: where and when it was trained.
    reused_from: str | None = None
    validation: dict[str, Path] = field(default_factory=dict)  # algo label -> validation predictions jsonl


@dataclass(frozen=True)
class RunnerSpec:
    """A runner: its config dataclass and the functions the sweep calls.

    - ``config_cls``: frozen dataclass of every knob (``--set key=value`` targets its fields).
    - ``check(job)``: raise ``ConfigError`` with a one-line reason before any training.
    - ``prepare(jobs)``: shared work for a sweep (e.g. the SFT base), run once by the driver; one that
      also takes ``note`` (a ``Callable[[str], None]``) is given the progress display's, to say what it does.
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
    - ``threads(job)``: the CPU threads the job computes with, when it may run beside other jobs of
      the sweep (each in a worker process of this machine), or None when it must run alone (it uses
      a GPU); a runner without it runs its jobs one after another (``openrlhf`` starts its own
      cluster, ``timing`` measures the machine).
    - ``validation_only``: ``run`` honours ``Job.score_test`` False (answers and scores the validation
      split only, writes no test predictions): what ``rlbench-med tune`` needs of a runner.
    - ``tunable``: the config fields ``tune --space`` may search: fields that change a job's updates,
      but not the shared starting checkpoint every estimator trains from, the evaluation or the
      number of steps.
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
    threads: Callable[[Job], int | None] | None = None
    validation_only: bool = False
    tunable: frozenset[str] = frozenset()


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


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a folder this process writes into, in a phrase naming the part at fault
    (a file where a folder is needed, a folder it may not write, a name longer than the file system
    allows), or None when it can (it exists as a writable folder, or can be made)."""
    path = Path(os.path.abspath(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    existing = path
    while not os.path.lexists(existing):  # (a folder we may not even look into counts as missing here)
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"{existing} is a file, so no folder can be made under it"
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    long_names = [part for part in path.relative_to(existing).parts if len(part.encode()) > name_max]
    if long_names:
        return (f"its part {long_names[0][:24]}... is {len(long_names[0].encode())} bytes long; this file system "
                f"allows at most {name_max} per name")
    # Files go a few levels below it (predictions/<algo>-seed<seed>@<inputs>.jsonl, checkpoints/...).
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    if len(str(path).encode()) > path_max - 512:
        return f"the path is {len(str(path).encode())} bytes long; the files under it would pass the {path_max} allowed"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def cache_dir() -> Path:
    """Root of generated data and SFT base checkpoints (``RLBENCH_MED_CACHE`` or ~/.cache)."""
    root = os.environ.get("RLBENCH_MED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlbench-med"
    )
    return Path(root)


def jobs_dir() -> Path:
    """Where the job cache keeps finished jobs: ``cache_dir()/jobs`` (``runners/sweep/jobcache.py``)."""
    return cache_dir() / "jobs"
