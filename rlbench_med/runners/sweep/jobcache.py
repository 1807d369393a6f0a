"""The job cache: a finished job is reused when nothing its results depend on has changed.

A job's **key** is the sha256 of one JSON document holding everything its results depend on:

- the suite, the results.csv label (``algo``), the estimator spec, the seed, whether the job
  scores the test split (a tuning trial does not; its rows are the validation split's) and the runner;
- the resolved runner config, every field but ``progress`` (a display switch);
- the data: the data source fingerprint (split files, class list and the suite's record
  selection; :meth:`~rlbench_med.suites.data.DataSource.fingerprint`), ``None`` for a suite
  without data;
- the runner's identity of the job (``RunnerSpec.identity``; the local runner: the cache key of
  the SFT base the job starts from, which covers a ``hf:`` model folder's files, and the device
  type). A runner without one (``openrlhf``; ``timing``, which measures the machine) is never reused;
- the **code version**, :func:`code_version`.

What "code version" means: a commit id cannot be it. With an editable install (``pip install
-e .``) the code that runs is the working tree, uncommitted edits included, and a wheel has no
git at all; a commit id would let an edited estimator reuse the results of the code before the
edit. So the code version is a hash of the *content* of the code: every file of the package that
a job's results can depend on (all of ``rlbench_med/`` except ``reports/`` and ``cli.py``, which
only read, track and render results that a job has already produced), every ``--plugin`` file or
module, the file defining the job's estimator (an entry-point plugin's, say), the versions of
Python and of the libraries the training math runs on (:data:`LIBRARIES`), and the machine's
architecture. Saving any change to that code, committed or not, changes every key.

An entry, ``cache_dir()/jobs/<key>/``, holds ``entry.json`` (the key's parts, the job's
results.csv rows, run totals and wall time, where and when it ran), ``history.jsonl`` (every
step's metrics and the params the runner logged, replayed into the new MLflow run so curves are
whole) and ``predictions/``. ``entry.json`` also holds the sha256 of its own content and of every
other file of the entry: a file changed after it was written (edited by hand, damaged on disk) is
named and the job trains again, so a reused result is always the one the job produced. Entries
are written under a lock into a temporary folder that is then renamed, so a killed writer never
leaves a half entry; a damaged entry is named in the plan and its job trains again. ``--no-reuse`` trains every job and replaces the entries of the ones
that finish. Jobs of a ``--resume`` sweep are not stored: part of such a job may have run with
other code before the interruption.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rlbench_med.locks import file_lock
from rlbench_med.runners.base import (
    BASE,
    RESULT_COLUMNS,
    SFT,
    TEST,
    VALIDATION,
    Job,
    JobResult,
    Tracker,
    flush_tracker,
    jobs_dir,
    predictions_dir,
)
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.typed_config import to_plain_dict

#: Bump when the entry layout or the key's document changes (3: entries carry checksums and validation
#: predictions; 4: the key says whether the job scores the test split).
CACHE_FORMAT = 4
#: Config fields that cannot change a job's results.
NOT_RESULT_FIELDS = frozenset({"progress", "save_final"})
#: Libraries whose version is part of the code version: the training and metric math runs on them,
#: and the media a policy sees are decoded by them (images: Pillow; videos: OpenCV; ECG records: wfdb).
LIBRARIES = ("torch", "numpy", "scipy", "transformers", "numba", "scikit-learn", "pillow",
             "opencv-python-headless", "wfdb")
#: Parts of the package that only read, track and render results (left out of the code version).
READ_ONLY_PARTS = ("reports", "cli.py")
History = list[tuple[int, dict[str, float]]]


# --------------------------------------------------------------------------------------------
# the code version
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def tree_digest(root: str, skip: tuple[str, ...] = ()) -> str:
    """sha256 over (relative path, content) of every file under ``root``, but ``skip`` (top-level
    names) and byte-code caches; files in sorted order."""
    base = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base)
        if rel.parts[0] in skip or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plugin_file(plugin: str) -> Path | None:
    """The source file of a ``--plugin`` (a path, or a module name)."""
    if Path(plugin).is_file():
        return Path(plugin).resolve()
    spec = importlib.util.find_spec(plugin)
    return Path(spec.origin).resolve() if spec is not None and spec.origin and Path(spec.origin).is_file() else None


def _library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def code_version(plugins: Iterable[str] = (), extra: Iterable[Path] = ()) -> dict[str, Any]:
    """The code version of a job (module docstring): digests of the package, the plugins and
    ``extra`` source files outside the package, with the library versions."""
    package = Path(__file__).resolve().parents[2]  # rlbench_med/
    files = {p for p in (_plugin_file(x) for x in plugins) if p is not None}
    files |= {Path(p).resolve() for p in extra if not Path(p).resolve().is_relative_to(package)}
    return {
        "package": tree_digest(str(package), READ_ONLY_PARTS),
        "files": {str(p): _file_digest(p) for p in sorted(files)},
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "libraries": _library_versions(),
    }


def _estimator_file(job: Job) -> list[Path]:
    """The source file of the job's estimator class (a plugin's, through an entry point, say)."""
    if job.estimator in (BASE, SFT):
        return []
    from rlbench_med.runners.base import make_job_estimator

    source = inspect.getsourcefile(type(make_job_estimator(job)))
    return [Path(source)] if source else []


def _reward_file(job: Job) -> list[Path]:
    """The source file of the job's reward function when a plugin registered it (an entry point's, say)."""
    from rlbench_med.suites.rewards import REWARDS, PluginReward, reward_function

    name = getattr(job.config, "reward", None)
    if name is None or name in REWARDS:
        return []
    found = reward_function(name)
    source = inspect.getsourcefile(found.fn if isinstance(found, PluginReward) else found)
    return [Path(source)] if source else []


# --------------------------------------------------------------------------------------------
# keys and entries
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobKey:
    digest: str
    parts: dict[str, Any]


def job_key(plan: Plan, job: Job) -> JobKey | None:
    """The job's key, or None when the job cannot be reused (its runner declares no identity).

    Needs the job's data (the data source file): call it once the data is ready.
    """
    if plan.runner.identity is None:
        return None
    data = None
    if plan.data_source is not None:
        from rlbench_med.suites.data import DataSource

        data = DataSource.open(job.data_dir).fingerprint()
    config = {k: v for k, v in to_plain_dict(job.config).items() if k not in NOT_RESULT_FIELDS}
    runner_file = inspect.getsourcefile(plan.runner.run)
    parts = {
        "format": CACHE_FORMAT, "suite": job.suite, "algo": job.algo, "estimator": job.estimator, "seed": job.seed,
        "score_test": job.score_test, "runner": plan.runner.name, "config": config, "data": data, "identity": plan.runner.identity(job),
        "code": code_version(plan.plugins, [*_estimator_file(job), *_reward_file(job),
                                            *([Path(runner_file)] if runner_file else [])]),
    }
    blob = json.dumps(parts, sort_keys=True, default=str)
    return JobKey(hashlib.sha256(blob.encode()).hexdigest(), parts)


@dataclass
class CacheEntry:
    """A stored job: where it is, what it produced, where and when it ran."""

    path: Path
    key: str
    rows: list[dict[str, Any]]
    predictions: dict[str, str]  # results.csv label -> file name in the entry's predictions/
    validation: dict[str, str]  # label -> file name in the entry's predictions/validation/
    wall_s: float
    timings: dict[str, float]
    origin: str  # "<out folder> (<date>)"
    history: History = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"trained {self.origin}"


class DamagedEntry(ValueError):
    """An entry that cannot be read back (what is wrong is the message)."""


def _doc_digest(doc: Mapping[str, Any]) -> str:
    """sha256 of an entry.json document, its checksum fields left out."""
    body = {k: v for k, v in doc.items() if k not in ("checksum", "files")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _entry_files(path: Path, predictions: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """sha256 of the entry's other files, by their path in the entry (``predictions``: file names per split)."""
    names = ["history.jsonl"]
    for split, files in sorted(predictions.items()):
        folder = predictions_dir(Path(), split).as_posix()
        names += [f"{folder}/{name}" for name in sorted(files)]
    return {name: _file_digest(path / name) for name in names if (path / name).is_file()}


def read_entry(path: Path, key: str) -> CacheEntry:
    """Read and check an entry (its checksums included); raise :class:`DamagedEntry` naming what is wrong."""
    try:
        doc = json.loads((path / "entry.json").read_text())
    except (OSError, ValueError) as exc:
        raise DamagedEntry(f"entry.json unreadable ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("key") != key:
        raise DamagedEntry("entry.json is of another format or key")
    if doc.get("checksum") != _doc_digest(doc):
        raise DamagedEntry("entry.json does not match its checksum (it was changed after the job wrote it)")
    stored = doc.get("files")
    found = _entry_files(path, {TEST: dict(doc.get("predictions") or {}).values(),
                                VALIDATION: dict(doc.get("validation") or {}).values()})
    if not isinstance(stored, dict):
        raise DamagedEntry("entry.json has no checksums of its files")
    for name, digest in stored.items():
        if name not in found:
            raise DamagedEntry(f"{name} is missing")
        if found[name] != digest:
            raise DamagedEntry(f"{name} does not match its checksum (it was changed after the job wrote it)")
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows or any(not isinstance(r, dict) or set(r) != set(RESULT_COLUMNS) for r in rows):
        raise DamagedEntry("its results rows are missing or lack columns")
    predictions = dict(doc.get("predictions") or {})
    validation = dict(doc.get("validation") or {})
    for folder, names in ((Path("predictions"), predictions), (Path("predictions") / VALIDATION, validation)):
        for name in names.values():
            if not (path / folder / name).is_file():
                raise DamagedEntry(f"{folder / name} is missing")
    history: History = []
    try:
        with open(path / "history.jsonl") as fh:
            for line in fh:
                if line.strip():
                    item = json.loads(line)
                    history.append((int(item["step"]), {str(k): float(v) for k, v in item["metrics"].items()}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedEntry(f"history.jsonl unreadable ({type(exc).__name__})") from None
    return CacheEntry(path=path, key=key, rows=rows, predictions=predictions, validation=validation,
                      wall_s=float(doc.get("wall_s", 0.0)),
                      timings={str(k): float(v) for k, v in (doc.get("timings") or {}).items()},
                      origin=str(doc.get("origin", "?")), history=history, params=dict(doc.get("params") or {}))


def lookup(key: JobKey) -> CacheEntry | None:
    """The entry of ``key``, or None when there is none; raises :class:`DamagedEntry` for a broken one."""
    path = jobs_dir() / key.digest
    if not path.is_dir():
        return None
    with file_lock(_lock_of(key.digest)):
        return read_entry(path, key.digest)


def _lock_of(digest: str) -> Path:
    return jobs_dir() / "locks" / f"{digest}.lock"


def store(key: JobKey, result: JobResult, history: History, params: Mapping[str, Any]) -> Path:
    """Write (or replace) the entry of ``key`` from a finished job: atomically, under the entry's lock."""
    target = jobs_dir() / key.digest
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    with file_lock(_lock_of(key.digest)):
        for stale in target.parent.glob(f"{key.digest}.tmp*"):  # a writer killed midway (nobody holds the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key.digest}.tmp", dir=target.parent))
        try:
            names: dict[str, dict[str, str]] = {}
            for split, files in ((TEST, result.predictions), (VALIDATION, result.validation)):
                folder = predictions_dir(tmp, split)
                folder.mkdir(parents=True, exist_ok=True)
                names[split] = {}
                for label, src in files.items():
                    names[split][label] = Path(src).name
                    shutil.copyfile(src, folder / Path(src).name)
            with open(tmp / "history.jsonl", "w") as fh:
                for step, metrics in history:
                    fh.write(json.dumps({"step": step, "metrics": metrics}) + "\n")
            doc = {"format": CACHE_FORMAT, "key": key.digest, "parts": key.parts, "rows": result.rows,
                   "predictions": names[TEST], "validation": names[VALIDATION], "wall_s": result.wall_s,
                   "timings": result.timings,
                   "origin": f"in {result.job.out_dir} on {stamp}", "params": dict(params)}
            doc = json.loads(json.dumps(doc, default=str))  # as read_entry will read it back
            doc["checksum"] = _doc_digest(doc)
            doc["files"] = _entry_files(tmp, {split: files.values() for split, files in names.items()})
            (tmp / "entry.json").write_text(json.dumps(doc, indent=1))
            if target.exists():
                shutil.rmtree(target)  # --no-reuse: the new result replaces the old entry
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def reuse(entry: CacheEntry, job: Job) -> JobResult:
    """The entry as the job's result: its predictions copied into the job's output folder."""
    copied: dict[str, dict[str, Path]] = {}
    with file_lock(_lock_of(entry.key)):
        for split, names in ((TEST, entry.predictions), (VALIDATION, entry.validation)):
            pred_dir = predictions_dir(job.out_dir, split)
            pred_dir.mkdir(parents=True, exist_ok=True)
            copied[split] = {}
            for label, name in names.items():
                shutil.copyfile(predictions_dir(entry.path, split) / name, pred_dir / name)
                copied[split][label] = pred_dir / name
    return JobResult(job=job, rows=[dict(r) for r in entry.rows], predictions=copied[TEST], wall_s=entry.wall_s,
                     timings=dict(entry.timings), reused_from=entry.describe(), validation=copied[VALIDATION])


# --------------------------------------------------------------------------------------------
# the sweep's side: which jobs of a plan are reused, and what a finished job leaves behind
# --------------------------------------------------------------------------------------------
def find_reusable(plan: Plan) -> None:
    """Fill ``plan.reused`` with the cache entries of its pending jobs (``--no-reuse``: none).

    Jobs whose data is not there yet (generated data on a first run) are looked up again once it
    is; a damaged entry is named in ``plan.notes`` and its job trains.
    """
    if not plan.reuse:
        return
    for job in plan.pending:
        data_ready = plan.data_source is None or Path(job.data_dir).exists()  # the data source file, once written
        if (job.algo, job.seed) in plan.reused or not data_ready:
            continue
        key = job_key(plan, job)
        if key is None:
            continue
        try:
            entry = lookup(key)
        except DamagedEntry as exc:
            note = f"job cache entry {jobs_dir() / key.digest} is damaged ({exc}); {job.algo} seed {job.seed} trains again"
            plan.notes += [note] if note not in plan.notes else []  # looked up again once the data is ready
            continue
        if entry is not None:
            plan.reused[(job.algo, job.seed)] = entry


def keep(plan: Plan, result: JobResult, history: History, params: Mapping[str, Any]) -> Path | None:
    """Store a job the sweep just trained (not a reused one, nor one of a ``--resume`` sweep)."""
    if result.reused_from is not None or plan.resume:
        return None
    key = job_key(plan, result.job)
    return None if key is None else store(key, result, history, params)


class RecordingTracker:
    """Forwards to a tracker and keeps the params and per-step metrics (what a reuse replays)."""

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.history: History = []
        self.params: dict[str, Any] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({str(k): str(v) for k, v in params.items()})
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.history.append((int(step), {str(k): float(v) for k, v in metrics.items() if v is not None}))
        self.inner.log_metrics(metrics, step)

    def log_artifact(self, path: Path) -> None:
        self.inner.log_artifact(path)


def replay(entry: CacheEntry, tracker: Tracker) -> None:
    """Log a stored job's params and per-step metrics into a new run, so its curves are whole."""
    if entry.params:
        tracker.log_params(entry.params)
    for step, metrics in entry.history:
        tracker.log_metrics(metrics, step)
    flush_tracker(tracker)
