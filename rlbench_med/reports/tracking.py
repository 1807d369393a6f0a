"""MLflow tracking of a sweep: a parent run per sweep (per output folder), a child run per (algo, seed).

Schema (ARCHITECTURE.md): experiment ``rlbench-med/<suite>``, tagged
``mlflow.experimentKind=custom_model_development`` so the UI opens it on its training runs; the
child run of a job has params ``algo``, ``seed`` and every field of the resolved runner config
(each logged once), tags ``rlbench.algo``, ``rlbench.suite`` and MLflow's ``mlflow.source.git.commit``
(from a git checkout), the data as an MLflow dataset input (digest: its fingerprint); the runner's
per-step metrics (``train/...``, ``adv/...``, ``time/...``, and the validation split's
``val/<domain>/<metric>`` curves) and, when the job ends, its final test-split ``eval/<domain>/<metric>`` values, the run totals of ``JobResult.timings`` as
``time/total_<name>`` and the wall time as ``time/job_s``; artifacts ``config.yaml`` and
``predictions/*.jsonl`` (``error.txt`` for a failed job). With MLflow's own switch
``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true``, MLflow's ``system/*`` metrics of each job (local
executor) or of the sweep's driver (Ray executor). The parent run gets the sweep's config, results.csv, the report files and
a summary (:func:`log_summary`): ``summary/<algo>/<primary metric>`` metrics and a table artifact.

The store is checked at plan time by :func:`open_store` (scheme, a server that answers within
``STORE_TIMEOUT_S``, a writable database, a writable artifact folder), which also creates it once
under a lock, so two first runs at once both work; a new sqlite store is made under a temporary
name and renamed into place, so a creation that fails (a full disk) leaves nothing half-made. Artifacts of a database store go under the cache
(``<cache>/mlflow-artifacts/``), never into ``./mlruns`` of the current folder.

Everything goes through ``MlflowClient`` with explicit run ids (no global "active run"), so
trackers work in threads and Ray workers alike. Per-step metrics are sent in ``log_batch`` calls
of up to ``_METRICS_PER_BATCH`` points at most ``METRICS_FLUSH_S`` apart (one sqlite transaction
costs about 10 ms, as much as a step of a small job); whoever runs a job flushes its tracker when
the job ends, however it ends, so only a process killed outright loses its last second of points. The driver owns every run's lifecycle: it creates child runs, a worker only
logs into its run, and the driver ends each run FINISHED, FAILED or KILLED. Runs a killed driver
(SIGKILL) could not close are closed KILLED, with the reason, by the next sweep on the same output
folder; ``--resume`` then continues the same parent run and each unfinished job's own child run,
so a job keeps one history (a step logged again after the resume replaces the earlier point
when curves are read back).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from rlbench_med.locks import file_lock
from rlbench_med.runners.base import Job, JobResult, cache_dir, folder_problem
from rlbench_med.typed_config import to_plain_dict

EXPERIMENT_PREFIX = "rlbench-med/"
PARENT_TAG = "mlflow.parentRunId"
#: Tag of a child run mapping an eval metric prefix to its results.csv algo label.
LABELS_TAG = "rlbench.eval_labels"
#: Why a run ended FAILED or KILLED (the last line of the traceback, or the interrupt).
ERROR_TAG = "rlbench.error"
#: Tag of a child run whose job was taken from the job cache: where and when it was trained.
REUSED_TAG = "rlbench.reused_from"
#: Tag that makes the MLflow UI open an experiment on its training runs (not its GenAI view).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
#: URI schemes of the tracking stores MLflow documents (a local folder, a database, a server); a
#: database scheme may name its driver (``postgresql+psycopg2``).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
STORE_SCHEMES = ("", "file", *DATABASE_SCHEMES, "http", "https", "databricks")
#: MLflow's own tag of the commit a run's code came from (the UI shows it as the run's source version).
GIT_COMMIT_TAG = "mlflow.source.git.commit"
#: MLflow's switch of system metrics (CPU, memory, disk, network, GPU): off unless set to true.
SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
#: Longest wait for a tracking server to answer at plan time.
STORE_TIMEOUT_S = 10.0
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_MAX_PARAM_LEN = 6000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
#: Seconds a per-step metric may wait in a tracker's buffer before it is sent.
METRICS_FLUSH_S = 1.0


class TrackingError(LookupError):
    """A tracking store that cannot be used, or an experiment or run that is not in it."""


def experiment_name(suite: str) -> str:
    return f"{EXPERIMENT_PREFIX}{suite}"


def metric_key(key: str) -> str:
    """MLflow-safe metric name: characters MLflow rejects (``+``, ``@``, ...) become ``_``."""
    return _BAD_KEY_CHARS.sub("_", key)


def total_key(name: str) -> str:
    """Metric key of a run total from ``JobResult.timings``: ``advantage_s`` -> ``time/total_advantage_s``."""
    return metric_key(f"time/total_{name}")


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> ``{"a.b": "value"}``; lists as JSON; values cut to MLflow's 6000 characters."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
            continue
        if isinstance(value, (list, tuple)):
            text = json.dumps([v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for v in value])
        else:
            text = str(value)
        out[metric_key(name)] = text[:_MAX_PARAM_LEN]
    return out


def git_sha() -> str:
    """The commit of the checkout the package runs from, or ``unknown`` (e.g. an installed wheel)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# --------------------------------------------------------------------------------------------
# the store, checked at plan time
# --------------------------------------------------------------------------------------------
def open_store(uri: str, experiment: str | None = None) -> str | None:
    """Check the tracking store before anything is written; raise :class:`TrackingError` in one line.

    Without ``experiment`` (``--dry-run``) nothing is written: the scheme must be one MLflow
    knows, a server must answer within ``STORE_TIMEOUT_S`` and a sqlite file (or its folder) must
    be writable. With ``experiment`` the store is also created if new (under a lock, so two first
    runs at once do not both create its tables) and the experiment is created or tagged: a first
    write, so a store that cannot be written fails here. Returns the experiment id.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    scheme = urllib.parse.urlparse(uri).scheme
    if scheme.split("+")[0] not in STORE_SCHEMES:
        raise TrackingError(
            f"tracking store {uri}: MLflow has no store for the scheme {scheme!r}; set MLFLOW_TRACKING_URI to "
            "sqlite:///path/mlflow.db, a folder or http(s)://host:port"
        ) from None
    if scheme in ("http", "https"):
        _check_server(uri)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    if experiment is None:
        return None
    lock = cache_dir() / "locks" / f"tracking-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"
    try:
        with file_lock(lock):
            if scheme == "sqlite":
                _create_sqlite_store(uri)
            client = client_for(uri)
            experiment_id = ensure_experiment(client, uri, experiment)
            location = client.get_experiment(experiment_id).artifact_location
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        raise TrackingError(_store_problem(uri, exc)) from None
    _check_artifact_root(location, experiment)
    return experiment_id


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None in memory or for a URI with options)."""
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _create_sqlite_store(uri: str) -> None:
    """Create a new sqlite store under a temporary name, then rename it into place (the caller holds
    the store's lock): a first run that fails while MLflow creates its tables (a full disk, a
    file-size limit) leaves no half-created store that every later run would trip over."""
    database = _sqlite_file(uri)
    if database is None or database.exists():
        return
    # A name no earlier store had: MLflow caches a store per URI, and a cached one would skip creating the tables.
    tmp = database.with_name(f".{database.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
    try:
        client_for(f"sqlite:///{tmp}")  # MLflow creates every table of a new store here
        os.replace(tmp, database)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _store_problem(uri: str, exc: BaseException) -> str:
    """One line on a store that cannot be opened; a sqlite store without a single run whose tables
    are damaged or missing is named as half-created, with what to do."""
    database = _sqlite_file(uri) if urllib.parse.urlparse(uri).scheme == "sqlite" else None
    if database is not None and not database.exists():
        return (f"tracking store {database} could not be created ({_first_line(exc)}; is the disk full?); nothing "
                "was left behind: run again once it can be written, or set MLFLOW_TRACKING_URI to another store")
    if database is not None and database.is_file() and _holds_no_runs(database):
        return (f"tracking store {database} is half-created or damaged and holds no runs ({_first_line(exc)}; a first "
                "run that failed while creating it, e.g. on a full disk, leaves it so); delete it and run again, or "
                "set MLFLOW_TRACKING_URI to another store")
    return f"tracking store {uri}: {_first_line(exc)}"


def _holds_no_runs(database: Path) -> bool:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            return "runs" not in tables or db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    except sqlite3.Error:  # not readable as a database: it may hold runs, so it is not called empty
        return False


def _check_artifact_root(location: str | None, experiment: str) -> None:
    """An experiment's local artifact folder must be a folder this process can write (a server's or a
    cloud store's is theirs to check): otherwise every job would train and then fail to attach its files."""
    if not location:
        return
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme not in ("", "file"):
        return
    path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme else location)
    problem = folder_problem(path)
    if problem is not None:
        raise TrackingError(f"artifact folder {path} of experiment {experiment}: {problem}; make it a folder you can "
                            "write to, or set MLFLOW_TRACKING_URI to another store")


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Errors of the store itself while reading it (a truncated or damaged database) as one-line
    :class:`TrackingError` s instead of the database driver's traceback."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError) as exc:
        raise TrackingError(f"tracking store {uri} cannot be read ({_first_line(exc)}); restore it from a backup or "
                            "set MLFLOW_TRACKING_URI to another store") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _check_server(uri: str) -> None:
    """A tracking server must answer (any HTTP status) within ``STORE_TIMEOUT_S``; MLflow's own client would retry for minutes."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=STORE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"tracking server {uri} does not answer ({reason}; waited at most {STORE_TIMEOUT_S:.0f} s); "
            "start it or set MLFLOW_TRACKING_URI to another store"
        ) from None


def _check_sqlite(uri: str) -> None:
    """The database file (or, for a new one, its folder) must exist and be writable."""
    path = _sqlite_file(uri)
    if path is None:
        return  # in-memory or a sqlite URI with options: the first write in open_store tells
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise TrackingError(f"tracking store {path} is read-only; make it writable or set MLFLOW_TRACKING_URI "
                                "to another store")
    elif not path.parent.is_dir():
        raise TrackingError(f"tracking store {uri}: folder {path.parent} does not exist; create it or set "
                            "MLFLOW_TRACKING_URI to another store")
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        raise TrackingError(f"tracking store {uri}: folder {path.parent} is not writable; set MLFLOW_TRACKING_URI "
                            "to another store")


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: under the cache for a database store (MLflow's
    default is ``./mlruns`` of the current folder); ``None`` (the store decides) for a server or a
    file store, which keep artifacts with the store."""
    if urllib.parse.urlparse(uri).scheme.split("+")[0] not in DATABASE_SCHEMES:
        return None
    return (cache_dir() / "mlflow-artifacts" / experiment.replace("/", "_")).resolve().as_uri()


def ensure_experiment(client: Any, uri: str, name: str) -> str:
    """The id of experiment ``name``, created if missing (artifacts under the cache); tagged so the
    MLflow UI opens it on its training runs."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri, name), tags=EXPERIMENT_KIND)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another process created it meanwhile
                raise
            experiment = client.get_experiment_by_name(name)
    for key, value in EXPERIMENT_KIND.items():  # also a first write: a read-only store fails here, at plan time
        client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def system_metrics_enabled() -> bool:
    """Whether MLflow's own switch turns system metrics on; refuses, in one line, when psutil (what MLflow
    samples them with) is missing."""
    if os.environ.get(SYSTEM_METRICS_ENV, "").strip().lower() not in ("true", "1"):
        return False
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        raise TrackingError(f"{SYSTEM_METRICS_ENV}=true asks for system metrics, which MLflow samples with psutil: "
                            "pip install 'rlbench-med[system-metrics]', or unset it")
    return True


def data_input(plan: Any) -> Any:
    """The plan's data as an MLflow dataset input: its folder as source, the first 32 hex digits of its
    fingerprint (split files, class list, suite selection; what the job cache keys on) as digest (MLflow
    keeps 36 characters), the whole fingerprint and the data settings as its profile. None without data."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = getattr(plan, "data_source", None)
    if source is None or not (source.train.is_file() and source.test.is_file()):
        return None
    fingerprint = source.fingerprint()
    dataset = Dataset(
        name=f"{plan.suite.name}:{Path(plan.data_dir).name}", digest=fingerprint[:32], source_type="local",
        source=json.dumps({"uri": str(plan.data_dir)}),
        profile=json.dumps({"fingerprint": fingerprint, "settings": plan.data_settings.as_dict(),
                            "generated": bool(plan.generates_data)}),
    )
    return DatasetInput(dataset=dataset, tags=[InputTag(key="mlflow.data.context", value="training")])


class MLflowTracker:
    """A :class:`~rlbench_med.runners.base.Tracker` logging into one existing MLflow run.

    With ``flush_s`` > 0 per-step metrics wait in a buffer and are sent together once ``flush_s`` seconds
    have passed since the last send (module docstring); :meth:`flush` sends what waits, and params and
    artifacts flush first, so the run keeps the order things were logged in. With 0, each call is sent.
    """

    def __init__(self, uri: str, run_id: str, flush_s: float = 0.0) -> None:
        self.uri = uri
        self.run_id = run_id
        self.flush_s = flush_s
        self.client = client_for(uri)
        self.last_step = 0
        self._pending: list[Any] = []
        self._sent_at = time.monotonic()

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.flush()
        flat = flatten(params)
        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAMS_PER_BATCH], synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one step's metrics (None values are not metrics and are dropped); buffered while less than
        ``flush_s`` seconds have passed since the last send and fewer than ``_METRICS_PER_BATCH`` points wait."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._pending += [Metric(metric_key(k), float(v), stamp, int(step)) for k, v in metrics.items() if v is not None]
        self.last_step = max(self.last_step, int(step))
        if len(self._pending) >= _METRICS_PER_BATCH or time.monotonic() - self._sent_at >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics (chunks of ``_METRICS_PER_BATCH``)."""
        items, self._pending = self._pending, []
        self._sent_at = time.monotonic()
        for i in range(0, len(items), _METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + _METRICS_PER_BATCH], synchronous=True)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.flush()
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)


@dataclass(frozen=True)
class MLflowChild:
    """A child run handle; picklable, so a Ray worker opens the same run."""

    uri: str
    run_id: str

    def open(self) -> MLflowTracker:
        """The job's tracker, its per-step metrics buffered for ``METRICS_FLUSH_S`` (whoever runs the job
        flushes it when the job ends)."""
        return MLflowTracker(self.uri, self.run_id, METRICS_FLUSH_S)


def eval_labels(job: Job, labels: Iterable[str]) -> dict[str, str]:
    """Metric prefix per results.csv label of a job: its own label -> ``eval``;
    ``<algo>@<inputs>`` -> ``eval-<inputs>`` (MLflow-safe), e.g. ``eval-ecg_text``."""
    out: dict[str, str] = {}
    for label in labels:
        if label == job.algo:
            out["eval"] = label
        else:
            suffix = label[len(job.algo) + 1 :] if label.startswith(job.algo + "@") else label
            out[metric_key(f"eval-{suffix}").replace("/", "_")] = label
    return out


def final_metrics(job: Job, rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, str]]:
    """results.csv rows of a job -> ``{"eval/<domain>/<metric>": value}`` and the label map."""
    labels = eval_labels(job, dict.fromkeys(r["algo"] for r in rows))
    prefix = {label: p for p, label in labels.items()}
    metrics = {metric_key(f"{prefix[r['algo']]}/{r['domain']}/{r['metric']}"): float(r["value"]) for r in rows}
    return metrics, labels


@dataclass
class MLflowSweepTracking:
    """Parent/child run management of one sweep (implements ``runners.sweep.SweepTracking``).

    ``start`` first closes the runs a killed sweep left RUNNING in the same output folder (the
    caller holds that folder's lock, so their process is gone), then creates the parent run, or
    with ``--resume`` reopens the folder's latest one; ``child`` likewise continues the child run
    of a job that did not finish.
    """

    uri: str
    parent_id: str | None = None
    experiment_id: str | None = None
    children: dict[tuple[str, int], MLflowChild] = field(default_factory=dict)
    closed: set[tuple[str, int]] = field(default_factory=set)
    #: Child runs of the reopened parent, newest first per (algo, seed): what ``child`` continues.
    previous: dict[tuple[str, int], Any] = field(default_factory=dict)
    sha: str = ""
    #: The parent run's ``rlbench.role``: ``sweep`` (what report, compare and leaderboard read), or
    #: ``tune`` (a tune's trials, which they leave alone: no test-split result).
    role: str = "sweep"
    #: The sweep's data as an MLflow dataset input (None without a data folder), logged on every run.
    dataset: Any = None
    #: The run whose system metrics are being sampled (MLflow's monitor of the active run).
    monitored: str | None = None
    per_job_metrics: bool = True

    @property
    def client(self) -> Any:
        return client_for(self.uri)

    def _start_system_metrics(self, run_id: str) -> None:
        """Sample CPU, memory, disk and network into ``system/*`` metrics of the job's run, in this process,
        while it is open, when MLflow's own switch asks for it (``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true``).

        MLflow samples only its active run, so the job's run is made active here and ended (by
        :meth:`_stop_system_metrics`) before the sweep closes it with its own status.
        """
        if not system_metrics_enabled():
            return
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.start_run(run_id=run_id, log_system_metrics=True)
        self.monitored = run_id

    def _stop_system_metrics(self) -> None:
        if self.monitored is None:
            return
        import mlflow

        self.monitored = None
        mlflow.end_run()

    def start(self, plan: Any) -> None:
        client = self.client
        self.experiment_id = ensure_experiment(client, self.uri, experiment_name(plan.suite.name))
        self.sha = git_sha()
        out = str(plan.out_dir)
        sweeps = [r for r in self._sweep_runs(client) if r.data.tags.get("rlbench.out_dir") == out]
        for run in sweeps:
            if run.info.status == "RUNNING":
                self._close_stale(client, run)
        tags = {"rlbench.algos": ",".join(plan.algos), "rlbench.seeds": ",".join(map(str, plan.seeds))}
        if plan.resume and sweeps:
            self.parent_id = sweeps[0].info.run_id
            _reopen(client, client.get_run(self.parent_id))
            for run in reversed(child_runs(self.uri, sweeps[0])):  # oldest first: the newest run of a job wins
                self.previous[(run.data.tags.get("rlbench.algo"), int(run.data.tags.get("rlbench.seed", -1)))] = run
        else:
            run = client.create_run(
                self.experiment_id,
                run_name=plan.out_dir.name,
                tags={
                    "rlbench.suite": plan.suite.name,
                    **self._git_tag(),
                    "rlbench.profile": plan.profile,
                    "rlbench.runner": plan.runner.name,
                    "rlbench.executor": plan.executor,
                    "rlbench.out_dir": out,
                    "rlbench.role": self.role,
                },
            )
            self.parent_id = run.info.run_id
        for key, value in tags.items():
            client.set_tag(self.parent_id, key, value)
        self.dataset = data_input(plan)
        if self.dataset is not None:
            client.log_inputs(self.parent_id, datasets=[self.dataset])
        self.per_job_metrics = plan.executor != "ray"
        if not self.per_job_metrics:  # jobs run in Ray workers at once: the driver's machine, on the sweep's run
            self._start_system_metrics(self.parent_id)
        MLflowTracker(self.uri, self.parent_id).log_params(
            {"suite": plan.suite.name, "profile": plan.profile, "runner": plan.runner.name,
             "executor": plan.executor, **plan.config_dict()}
        )

    def _git_tag(self) -> dict[str, str]:
        """MLflow's ``mlflow.source.git.commit`` when the package runs from a git checkout (else no tag)."""
        sha = self.sha or git_sha()
        return {GIT_COMMIT_TAG: sha} if sha != "unknown" else {}

    def _sweep_runs(self, client: Any) -> Iterator[Any]:
        """The experiment's parent runs of this role, newest first."""
        token = None
        while True:
            page = client.search_runs([self.experiment_id], filter_string=f"tags.`rlbench.role` = '{self.role}'",
                                      order_by=["attributes.start_time DESC"], max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def _close_stale(self, client: Any, parent: Any) -> None:
        """Close a parent run its sweep could not close (and its children still RUNNING) as KILLED, with the reason."""
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        reason = (f"its process ended without closing it (killed with SIGKILL, out of memory or a crash); "
                  f"closed at {stamp} by the next run in {parent.data.tags.get('rlbench.out_dir')}")
        for run in child_runs(self.uri, parent):
            if run.info.status == "RUNNING":
                client.set_tag(run.info.run_id, ERROR_TAG, reason)
                client.set_terminated(run.info.run_id, "KILLED")
        client.set_tag(parent.info.run_id, ERROR_TAG, reason)
        client.set_terminated(parent.info.run_id, "KILLED")

    def child(self, job: Job) -> MLflowChild:
        if self.parent_id is None:
            raise RuntimeError("MLflowSweepTracking.start(plan) must run before child(job)")
        client = self.client
        previous = self.previous.get((job.algo, job.seed))
        if previous is not None and previous.info.status != "FINISHED":
            # --resume: the job continues its own run, so its curves stay in one history.
            run_id = previous.info.run_id
            _reopen(client, previous)
            handle = MLflowChild(self.uri, run_id)
            self.children[(job.algo, job.seed)] = handle
            self.closed.discard((job.algo, job.seed))
            return handle
        run = client.create_run(
            self.experiment_id,
            run_name=job.slug,
            tags={
                PARENT_TAG: self.parent_id,
                "rlbench.algo": job.algo,
                "rlbench.estimator": job.estimator,
                "rlbench.seed": str(job.seed),
                "rlbench.suite": job.suite,
                **self._git_tag(),
                "rlbench.role": "job",
            },
        )
        handle = MLflowChild(self.uri, run.info.run_id)
        self.children[(job.algo, job.seed)] = handle  # from here on, every exit path closes it
        config = to_plain_dict(job.config)
        tracker = MLflowTracker(self.uri, handle.run_id)
        tracker.log_params({"algo": job.algo, "seed": job.seed, "estimator": job.estimator, **config})
        client.log_dict(run.info.run_id, {"suite": job.suite, "algo": job.algo, "seed": job.seed,
                                          "estimator": job.estimator, "config": config}, "config.yaml")
        if self.dataset is not None:
            client.log_inputs(run.info.run_id, datasets=[self.dataset])
        if self.per_job_metrics:
            self._start_system_metrics(run.info.run_id)
        return handle

    def close_child(self, job: Job, result: JobResult | None, status: str, error: str | None = None,
                    detail: str | None = None) -> None:
        """Log the job's final eval metrics and predictions, then end its run with ``status``; ``error``
        (one line) becomes the run's :data:`ERROR_TAG`, ``detail`` (a traceback) its ``error.txt``.

        The run is ended in every case: when its metrics or files cannot be written (a full disk, an
        artifact folder that is a file), it ends FAILED with that reason and the error is raised.
        """
        handle = self.children[(job.algo, job.seed)]
        client = self.client
        tracker = MLflowTracker(self.uri, handle.run_id)
        if self.per_job_metrics:
            self._stop_system_metrics()
        try:
            if result is not None:
                self._log_result(client, tracker, handle, job, result)
            if error:
                client.set_tag(handle.run_id, ERROR_TAG, error[:5000])
                client.log_text(handle.run_id, detail or error, "error.txt")
        except BaseException as exc:
            _end_run(client, handle.run_id, "KILLED" if status == "KILLED" else "FAILED",
                     f"{error + '; ' if error else ''}its results could not be attached: {_one_line(exc)}")
            self.closed.add((job.algo, job.seed))
            raise
        client.set_terminated(handle.run_id, status)
        self.closed.add((job.algo, job.seed))

    def _log_result(self, client: Any, tracker: MLflowTracker, handle: MLflowChild, job: Job, result: JobResult) -> None:
        # A tuning trial's rows are the validation split's, which its val/ curve already ends with:
        # nothing goes under eval/ (the test split's keys).
        metrics, labels = final_metrics(job, result.rows) if job.score_test else ({}, {})
        latest = client.get_run(handle.run_id).data.metrics
        changed = {k: v for k, v in metrics.items() if k not in latest or not _same(latest[k], v)}
        step = int(getattr(job.config, "steps", 0) or 0)
        # result.timings are the run's totals (summed over its steps): logged under their own keys, so
        # they never add a point to the per-step series (time/advantage_s, time/step_s, ...).
        extra = {total_key(k): float(v) for k, v in result.timings.items()}
        tracker.log_metrics({**changed, **extra, "time/job_s": float(result.wall_s)}, step=step)
        if labels:
            client.set_tag(handle.run_id, LABELS_TAG, json.dumps(labels, sort_keys=True))
        if result.reused_from is not None:
            client.set_tag(handle.run_id, REUSED_TAG, result.reused_from)
        for path in result.predictions.values():
            if Path(path).exists():
                tracker.log_artifact(Path(path), "predictions")

    def finish(self, status: str, artifacts: Sequence[Path] = (), error: str | None = None) -> None:
        """End every child still open (KILLED after an interrupt, else FAILED) and the parent run, whose
        :data:`ERROR_TAG` says why it failed (``error``).

        The runs are ended even when the artifacts cannot be attached: a sweep that had FINISHED then
        ends FAILED and the error is raised; a sweep that failed or was interrupted already keeps its
        own error, and the artifacts' is added to its tag.
        """
        if self.parent_id is None:
            return
        self._stop_system_metrics()
        client = self.client
        raised: BaseException | None = None
        try:
            tracker = MLflowTracker(self.uri, self.parent_id)
            for path in artifacts:
                path = Path(path)
                if path.is_dir():
                    tracker.log_artifact(path, path.name)
                elif path.exists():
                    tracker.log_artifact(path)
        except Exception as exc:  # ended below either way; raised only if the sweep itself had succeeded
            missing = f"artifacts not attached: {_one_line(exc)}"
            error = f"{error}; {missing}" if error else missing
            if status == "FINISHED":
                status, raised = "FAILED", exc
        for key, handle in self.children.items():
            if key not in self.closed:
                client.set_terminated(handle.run_id, "KILLED" if status == "KILLED" else "FAILED")
                self.closed.add(key)
        _end_run(client, self.parent_id, status, error)
        if raised is not None:
            raise raised


def _end_run(client: Any, run_id: str, status: str, error: str | None) -> None:
    if error:
        client.set_tag(run_id, ERROR_TAG, error[:5000])
    client.set_terminated(run_id, status)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"


#: The parent run's table artifact (MLflow's table format: the UI's artifact view shows it as a table).
SUMMARY_TABLE = "summary_table.json"


def summary_key(algo: str, metric: str) -> str:
    """The parent run's metric of one algorithm's overall mean: ``summary/<algo>/<metric>``."""
    return metric_key(f"summary/{algo}/{metric}").replace("@", "_")


def log_summary(uri: str, parent_id: str, report: Any) -> dict[str, float]:
    """Summary of a sweep on its parent run, so sweeps compare in the MLflow UI: per algorithm (trained,
    ``base``, floors) the mean over seeds of the overall primary metric as ``summary/<algo>/<metric>``,
    and the report's headline table (domains x algorithms) as the table artifact :data:`SUMMARY_TABLE`.
    Returns the metrics logged."""
    import pandas as pd

    from rlbench_med.reports.render import metric_cells

    table, primary = report.table, report.primary
    metrics = {summary_key(algo, primary): cell.mean for algo in table.algos
               if (cell := table.cell(algo, "overall", primary)) is not None and math.isfinite(cell.mean)}
    tracker = MLflowTracker(uri, parent_id)
    tracker.log_metrics(metrics, step=0)
    header, rows = metric_cells(report, primary, table.algos)
    frame = pd.DataFrame([[c.text for c in r] for r in rows], columns=header)
    tracker.client.log_table(parent_id, data=frame, artifact_file=SUMMARY_TABLE)
    return metrics


def _reopen(client: Any, run: Any) -> None:
    """Set a closed run RUNNING again (``--resume``); why it ended before moves to ``rlbench.resumed``."""
    reason = run.data.tags.get(ERROR_TAG)
    client.update_run(run.info.run_id, status="RUNNING")
    client.set_tag(run.info.run_id, "rlbench.resumed", f"after {run.info.status}" + (f": {reason[:1000]}" if reason else ""))
    if reason is not None:
        client.delete_tag(run.info.run_id, ERROR_TAG)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# --------------------------------------------------------------------------------------------
# reading a sweep back (for `rlbench-med report --experiment` and the report's curves)
# --------------------------------------------------------------------------------------------
Curves = dict[tuple[str, int], dict[str, list[tuple[int, float]]]]
CURVE_PATTERNS = (
    re.compile(r"^val/[^/]+/[^/]+$"),
    re.compile(r"^train/([^/]+/)?reward_mean$"),
    re.compile(r"^train/(zero_spread_frac|entropy|kl|grad_norm|clip_frac)$"),
    re.compile(r"^time/advantage_s$"),
)


def find_parent_run(uri: str, experiment: str, run_id: str | None = None) -> Any:
    """The sweep's parent run: ``run_id`` if given, else the latest parent run of ``experiment``."""
    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX))
        raise TrackingError(
            f"no experiment {experiment!r} in {uri}; known: {', '.join(names) or '(none)'}"
        )
    if run_id:
        return _get_run(client, uri, run_id)
    runs = client.search_runs(
        [exp.experiment_id], filter_string="tags.`rlbench.role` = 'sweep'", order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise TrackingError(f"experiment {experiment!r} in {uri} has no sweep (parent) run")
    return runs[0]


def _finished_job(client: Any, parent: Any) -> bool:
    """Whether sweep ``parent`` has a FINISHED child run (a job with final results)."""
    return bool(client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
        max_results=1,
    ))


def _latest_finished(client: Any, experiment_ids: list[str], names: dict[str, str],
                     skipped: list[str]) -> Any | None:
    """The most recently started sweep of ``experiment_ids`` with a finished job; newer ones without are noted."""
    for run in client.search_runs(experiment_ids, filter_string="tags.`rlbench.role` = 'sweep'",
                                  order_by=["attributes.start_time DESC"], max_results=1000):
        if _finished_job(client, run):
            return run
        skipped.append(f"skipped sweep run {run.info.run_id} ({run.info.run_name}, {names[run.info.experiment_id]}, "
                       f"{run.info.status}): no job finished")
    return None


def latest_sweep(uri: str, run_id: str | None = None, skipped: list[str] | None = None) -> tuple[str, Any]:
    """``(experiment name, parent run)`` of the sweep ``run_id`` if given, else of the most recently started
    sweep (parent) run with a finished job in any ``rlbench-med/*`` experiment of the store (the report's
    default); the newer sweeps it passes over, with no finished job, are described in ``skipped``."""
    client = client_for(uri)
    if run_id:
        run = _get_run(client, uri, run_id)
        return client.get_experiment(run.info.experiment_id).name, run
    notes: list[str] = [] if skipped is None else skipped
    experiments = {e.experiment_id: e.name for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)}
    run = _latest_finished(client, list(experiments), experiments, notes) if experiments else None
    if run is None:
        what = f"no rlbench-med sweep with a finished job in {uri} ({len(notes)} without)" if notes else \
            f"no rlbench-med sweep in {uri}"
        raise TrackingError(f"{what}; run `rlbench-med run` first, or give --experiment NAME or --results DIR")
    return experiments[run.info.experiment_id], run


def latest_sweeps(uri: str, skipped: list[str] | None = None) -> list[Any]:
    """The latest sweep (parent) run with a finished job of every ``rlbench-med/*`` experiment of the store, by
    experiment name; the newer sweeps passed over, with no finished job, are described in ``skipped``."""
    client = client_for(uri)
    notes: list[str] = [] if skipped is None else skipped
    out = []
    for exp in sorted(client.search_experiments(), key=lambda e: e.name):
        if not exp.name.startswith(EXPERIMENT_PREFIX):
            continue
        run = _latest_finished(client, [exp.experiment_id], {exp.experiment_id: exp.name}, notes)
        if run is not None:
            out.append(run)
    return out


def try_run(uri: str, run_id: str) -> Any | None:
    """The run ``run_id`` of the store, or None when the store has no such run."""
    try:
        return _get_run(client_for(uri), uri, run_id)
    except TrackingError:
        return None


def sweep_of_folder(uri: str, folder: Path) -> Any | None:
    """The latest sweep (parent) run the store holds for output folder ``folder``, or None: when the
    store has none, does not exist yet (a sqlite file) or does not answer."""
    from mlflow.exceptions import MlflowException

    try:
        open_store(uri)
    except TrackingError:
        return None
    if urllib.parse.urlparse(uri).scheme == "sqlite":
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if database and not Path(database).exists():
            return None
    try:
        client = client_for(uri)
        experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)]
        out = str(Path(folder).resolve()).replace("'", "\\'")
        runs = client.search_runs(
            experiments, filter_string=f"tags.`rlbench.role` = 'sweep' and tags.`rlbench.out_dir` = '{out}'",
            order_by=["attributes.start_time DESC"], max_results=1,
        ) if experiments else []
    except MlflowException:
        return None
    return runs[0] if runs else None


def _get_run(client: Any, uri: str, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(f"no run {run_id!r} in {uri}") from exc


def child_runs(uri: str, parent: Any) -> list[Any]:
    client = client_for(uri)
    return list(
        client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
            order_by=["attributes.start_time ASC"], max_results=10000,
        )
    )


def fetch_curves(uri: str, parent: Any, children: Sequence[Any] | None = None) -> Curves:
    """``{(algo, seed): {key: [(step, value), ...]}}`` for the keys the report plots, one point per step."""
    client = client_for(uri)
    curves: Curves = {}
    for run in children if children is not None else child_runs(uri, parent):
        algo = run.data.tags.get("rlbench.algo")
        seed = run.data.tags.get("rlbench.seed")
        if algo is None or seed is None:
            continue
        per: dict[str, list[tuple[int, float]]] = {}
        for key in run.data.metrics:
            if any(p.match(key) for p in CURVE_PATTERNS):
                # A resumed job logs again the steps after its checkpoint: the later point of a step wins.
                latest = {m.step: m.value for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                          key=lambda m: m.timestamp)}
                per[key] = sorted(latest.items())
        curves[(algo, int(seed))] = per
    return curves


def rebuild_results(uri: str, parent: Any, dest: Path) -> tuple[list[dict[str, Any]], Curves]:
    """Rows of results.csv from the child runs' final eval metrics, predictions downloaded into ``dest``.

    ``n`` of a row is the number of predictions lines of that domain (all lines for ``overall``).
    Only FINISHED child runs count (a KILLED or FAILED job has no final results); the FAILED jobs
    without a finished run are written to ``dest/failed.csv`` with their reasons, for the report. A
    sweep with neither raises :class:`TrackingError` rather than give an empty report.
    """
    client = client_for(uri)
    suite = parent.data.tags.get("rlbench.suite", "")
    every = child_runs(uri, parent)
    children = [r for r in every if r.info.status == "FINISHED"]
    finished = {(r.data.tags.get("rlbench.algo"), r.data.tags.get("rlbench.seed")) for r in children}
    failed = {(r.data.tags.get("rlbench.algo"), r.data.tags.get("rlbench.seed")): r for r in every
              if r.info.status == "FAILED"}  # the latest run of a job wins (child_runs: oldest first)
    failed = {k: r for k, r in failed.items() if k not in finished and None not in k}
    _write_failed(dest, suite, [(algo, int(seed), r.data.tags.get(ERROR_TAG, "(no reason recorded)"))
                                for (algo, seed), r in failed.items()])
    if not children and not failed:
        out = parent.data.tags.get("rlbench.out_dir", "<out>")
        raise TrackingError(
            f"sweep run {parent.info.run_id} ({parent.info.run_name}) has no finished job, so there is nothing to "
            f"report; finish it with `rlbench-med run --resume --out {out}` (same flags)"
        )
    pred_dir = dest / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    index: dict[str, str] = {}
    for run in children:
        tags = run.data.tags
        algo, seed = tags["rlbench.algo"], int(tags["rlbench.seed"])
        labels = json.loads(tags.get(LABELS_TAG, "{}")) or {"eval": algo}
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "predictions")]
        local: list[Path] = []
        for art in artifacts:
            local.append(Path(client.download_artifacts(run.info.run_id, art, str(pred_dir))))
        for prefix, label in labels.items():
            pred = _predictions_for(local, label, seed, algo)
            counts = _domain_counts(pred) if pred else {}
            if pred:
                index[f"{label}|{seed}"] = str(Path("predictions") / pred.name)
            for key, value in run.data.metrics.items():
                parts = key.split("/")
                if len(parts) != 3 or parts[0] != prefix:
                    continue
                domain, metric = parts[1], parts[2]
                n = counts.get((domain, "iou" if metric == "iou" else "all"), 0)
                rows.append({"suite": suite, "algo": label, "seed": seed, "domain": domain, "metric": metric,
                             "value": value, "n": n})
    rows += _rebuild_floors(client, parent, suite, pred_dir, index)
    (pred_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    return rows, fetch_curves(uri, parent, children)


def _write_failed(dest: Path, suite: str, failed: Sequence[tuple[str, int, str]]) -> None:
    """``dest/failed.csv`` (the output folder's format) of the sweep's failed jobs; none: no file."""
    import csv

    from rlbench_med.runners.base import FAILED_COLUMNS, FAILED_CSV

    path = Path(dest) / FAILED_CSV
    if not failed:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(FAILED_COLUMNS)
        writer.writerows([suite, algo, seed, error] for algo, seed, error in failed)


def _rebuild_floors(client: Any, parent: Any, suite: str, pred_dir: Path, index: dict[str, str]) -> list[dict[str, Any]]:
    """The floors' rows, recomputed from the predictions files attached to the parent run (none if absent)."""
    from rlbench_med.reports.stats import read_predictions
    from rlbench_med.runners.base import run_slug
    from rlbench_med.suites.floors import FILED_FLOORS, FLOOR_ALL, FLOOR_RANDOM, FLOOR_SEED, floor_rows, random_draws

    names = {f"{run_slug(name, FLOOR_SEED)}.jsonl": name for name in FILED_FLOORS}
    floors: dict[str, list[list[dict[str, Any]]]] = {}
    for art in client.list_artifacts(parent.info.run_id):
        name = names.get(Path(art.path).name)
        if name is None:
            continue
        local = Path(client.download_artifacts(parent.info.run_id, art.path, str(pred_dir)))
        floors[name] = [read_predictions(local)]
        index[f"{name}|{FLOOR_SEED}"] = str(Path("predictions") / local.name)
    if FLOOR_ALL in floors:
        floors[FLOOR_RANDOM] = random_draws(floors[FLOOR_ALL][0])
    return floor_rows(suite, floors)


def _predictions_for(files: Sequence[Path], label: str, seed: int, algo: str) -> Path | None:
    from rlbench_med.runners.base import run_slug

    candidates = [f"{run_slug(label, seed)}.jsonl"]
    if label.startswith(algo + "@"):
        candidates.append(f"{run_slug(algo, seed)}@{label[len(algo) + 1:]}.jsonl")
    for f in files:
        if f.name in candidates:
            return f
    return None


def _domain_counts(path: Path) -> dict[tuple[str, str], int]:
    """``{(domain, kind): records}`` of a predictions file, kind ``all`` or ``iou`` (records with an IoU)."""
    counts: dict[tuple[str, str], int] = {}
    with open(path) as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                for domain in (rec["domain"], "overall"):
                    counts[(domain, "all")] = counts.get((domain, "all"), 0) + 1
                    if rec.get("iou") is not None:
                        counts[(domain, "iou")] = counts.get((domain, "iou"), 0) + 1
    return counts
