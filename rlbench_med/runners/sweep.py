"""A sweep: one suite x algorithms x seeds, planned, then run by an executor into one output folder.

``build_plan(request)`` resolves everything without running anything: the suite, the runner's
config (suite/profile defaults < ``--config`` YAML < ``--set key=value``), the data folder and
the jobs (suite x algos x suite variants x seeds). ``Plan.render()`` is what ``rlbench-med run``
prints first. ``run_sweep(plan, tracking, progress)`` prepares the data and the runner's shared
work, runs the jobs with the ``local`` (in-process, sequential) or ``ray`` executor, and writes
``results.csv`` as results arrive (the driver alone writes it, atomically after every job).

Tracking is handed in (``SweepTracking``); the sweep never imports MLflow, so the import
direction stays ``cli -> runners`` and ``cli -> reports``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from rlbench_med.registry import load_plugin
from rlbench_med.runners.base import RESULT_COLUMNS, RUNNERS, Job, JobResult, RunnerSpec, Tracker, cache_dir
from rlbench_med.typed_config import ConfigError, apply_overrides, to_plain_dict

SFT = "sft"
EXECUTORS = ("local", "ray")
#: Suites whose jobs are not training runs: they are executed by another runner than ``--runner``.
#: Such suites have no data folder (``data="none"``); their profile's ``data`` sizes configure the runner.
SUITE_RUNNERS = {"runtime": "timing"}
#: Seed of the generated SynthCLIMB data; every algorithm and seed of a sweep share the same data.
DATA_SEED = 0


class SweepError(RuntimeError):
    """A sweep that cannot start (e.g. an output folder that would be overwritten)."""


# --------------------------------------------------------------------------------------------
# request and plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepRequest:
    """What the user asked for (the ``run`` flags), before anything is resolved."""

    suite: str
    algos: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    profile: str = "quick"
    runner: str = "local"
    executor: str = "local"
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    data: Path | None = None
    out: Path | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    plugins: tuple[str, ...] = ()
    resume: bool = False


@dataclass
class Plan:
    """Everything a sweep will do, resolved; ``render()`` is printed before anything runs."""

    suite: Any  # suites.SuiteSpec
    profile: str
    runner: RunnerSpec
    executor: str
    ray_address: str | None
    ray_num_cpus: int | None
    config: Any
    config_sources: list[str]
    data_dir: Path | None
    data_note: str
    generates_data: bool
    algos: list[str]
    seeds: list[int]
    jobs: list[Job]
    out_dir: Path
    tracking_uri: str
    plugins: tuple[str, ...]
    resume: bool
    done: set[tuple[str, int]] = field(default_factory=set)

    @property
    def pending(self) -> list[Job]:
        """Jobs not already in results.csv (``--resume`` skips finished ones)."""
        return [j for j in self.jobs if (j.algo, j.seed) not in self.done]

    def resources(self, job: Job) -> dict[str, float]:
        """Ray resources declared by one job: its cpu_threads CPUs, and 1 GPU when its config asks for CUDA."""
        return {"num_cpus": max(1, int(getattr(job.config, "cpu_threads", 1))), "num_gpus": 1 if _wants_gpu(job.config) else 0}

    def config_dict(self) -> dict[str, Any]:
        return to_plain_dict(self.config)

    def render(self) -> str:
        """Human-readable plan: suite, data, algos x seeds, runner, executor, output, tracking."""
        suite = self.suite
        lines = ["rlbench-med run plan"]
        lines.append(f"  suite      {suite.name}: {suite.description} (profile {self.profile})")
        lines.append(f"  data       {self.data_note}")
        lines.append(
            f"  algos      {', '.join(self.algos)} x seeds {','.join(map(str, self.seeds))} = {len(self.jobs)} jobs"
            + (f" ({len(self.jobs) - len(self.pending)} already done, resumed)" if self.done else "")
        )
        lines.append(f"  runner     {self.runner.name}: {self.runner.description}")
        if self.executor == "ray":
            where = f"Ray cluster at {self.ray_address}" if self.ray_address else "a local Ray instance"
            res = self.resources(self.jobs[0]) if self.jobs else {"num_cpus": 1, "num_gpus": 0}
            lines.append(
                f"  executor   ray: one task per job on {where} "
                f"(num_cpus={res['num_cpus']}, num_gpus={res['num_gpus']} each)"
            )
        else:
            lines.append("  executor   local: jobs one after another in this process")
        changed = _non_default(self.config)
        shown = ", ".join(f"{k}={v}" for k, v in changed.items()) or "(runner defaults)"
        lines.append(f"  config     {shown}")
        lines.append(f"             from {' < '.join(self.config_sources)}")
        lines.append(f"  output     {self.out_dir}")
        lines.append(f"  tracking   {self.tracking_uri} (experiment rlbench-med/{suite.name})")
        lines.append("  jobs")
        for job in self.jobs:
            mark = " (done)" if (job.algo, job.seed) in self.done else ""
            lines.append(f"    {job.algo} seed {job.seed} -> estimator {job.estimator}{mark}")
            for extra in self.runner.plan(job):
                lines.append(f"      {extra}")
        return "\n".join(lines)


def _wants_gpu(config: Any) -> bool:
    device = str(getattr(config, "device", "cpu"))
    if device.startswith("cuda"):
        return True
    if device == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return False


def _non_default(config: Any) -> dict[str, Any]:
    default = type(config)()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    }


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-3"`` (inclusive range) -> seeds; raises ConfigError naming the flag."""
    seeds: list[int] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        lo, dash, hi = part.partition("-")
        try:
            if dash and lo:
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not an integer or a range like 0-3") from None
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. --seeds 0,1,2,3")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: seed listed twice in {text!r}")
    return tuple(seeds)


def parse_algos(text: str) -> tuple[str, ...]:
    """Split ``--algos``: commas separate algorithms, except inside a spec's ``name:k=v,k2=v2`` tail.

    ``"drpo:k_max=3,kl_damping=false,grpo"`` -> ``("drpo:k_max=3,kl_damping=false", "grpo")``: a
    comma-separated item containing ``=`` (and no ``:``) continues the previous spec.
    """
    algos: list[str] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" in part and ":" not in part and algos and ":" in algos[-1]:
            algos[-1] = f"{algos[-1]},{part}"
        else:
            algos.append(part)
    if not algos:
        raise ConfigError("--algos: give at least one algorithm, e.g. --algos drpo,grpo")
    if len(set(algos)) != len(algos):
        raise ConfigError(f"--algos: algorithm listed twice in {text!r}")
    return tuple(algos)


def read_config_file(path: Path) -> dict[str, Any]:
    """A ``--config`` YAML file: a flat mapping of runner config keys to values."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of config keys to values, got {type(data).__name__}")
    if isinstance(data.get("config"), dict):
        # A saved run's config.yaml: the runner config lives under "config".
        data = data["config"]
    return {str(k): v for k, v in data.items()}


def resolve_config(
    runner: RunnerSpec,
    profile_run: Mapping[str, Any],
    config_file: Path | None,
    overrides: Mapping[str, str],
) -> tuple[Any, list[str]]:
    """Runner defaults < suite profile ``run`` < ``--config`` file < ``--set``; returns (config, sources).

    Profile keys the runner's config does not have are named in the sources (shown in the plan).
    """
    config = runner.config_cls()
    sources = [f"{runner.name} defaults"]
    known = {f.name for f in dataclasses.fields(config)}
    unused = sorted(set(profile_run) - known)
    used = {k: v for k, v in profile_run.items() if k in known}
    if used:
        config = apply_overrides(config, used, what="suite profile")
        sources.append("suite profile" + (f" (not used by this runner: {', '.join(unused)})" if unused else ""))
    elif unused:
        sources.append(f"suite profile (not used by this runner: {', '.join(unused)})")
    if config_file is not None:
        config = apply_overrides(config, read_config_file(config_file), what=f"--config {config_file}")
        sources.append(f"--config {config_file}")
    if overrides:
        config = apply_overrides(config, dict(overrides), what="--set")
        sources.append("--set")
    return config, sources


def parse_set(items: Sequence[str]) -> dict[str, str]:
    """``["steps=10", "lr=1e-3"]`` -> ``{"steps": "10", "lr": "1e-3"}`` (later ones win)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set steps=20")
        out[key.strip()] = value.strip()
    return out


def _check_algo(spec: str) -> None:
    if spec == SFT:
        return
    from rlbench_med.algorithms import make_estimator

    make_estimator(spec)


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else MLflow's own default; local paths made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        import mlflow

        uri = mlflow.get_tracking_uri()
    return absolute_uri(uri)


def absolute_uri(uri: str) -> str:
    """Make a relative ``sqlite:///x.db`` / ``file:x`` / plain path URI absolute (Ray workers' cwd differs)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    if uri.startswith("file:") and not uri.startswith("file:///") and not uri.startswith("file://"):
        return "file://" + str(Path(uri[len("file:"):]).resolve())
    return uri


def data_cache_path(suite: str, profile: str, seed: int = DATA_SEED) -> Path:
    """Where generated SynthCLIMB data of a suite lives: ``cache_dir()/data/<suite>-<profile>-seed<seed>``."""
    return cache_dir() / "data" / f"{suite}-{profile}-seed{seed}"


def default_out_dir(suite: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{suite}-{stamp}"


def latest_out_dir(suite: str) -> Path | None:
    """The most recent ``reports/<suite>-*`` folder (what ``--resume`` without ``--out`` continues)."""
    candidates = sorted(p for p in Path("reports").glob(f"{suite}-*") if (p / "config.yaml").is_file())
    return candidates[-1] if candidates else None


def build_plan(request: SweepRequest) -> Plan:
    """Resolve a request into a plan; raises ConfigError/RegistryError/SweepError with a one-line reason."""
    for plugin in request.plugins:
        load_plugin(plugin)
    from rlbench_med.suites import get_suite

    suite = get_suite(request.suite)
    profiles = dict(getattr(suite, "profiles", {}) or {})
    if request.profile not in profiles:
        raise ConfigError(
            f"--profile {request.profile!r} is not a profile of suite {suite.name}; "
            f"choose one of {', '.join(sorted(profiles)) or '(none)'}"
        )
    if request.executor not in EXECUTORS:
        raise ConfigError(f"--executor {request.executor!r}: choose one of {', '.join(EXECUTORS)}")
    if request.ray_address and request.executor != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    runner = RUNNERS.get(SUITE_RUNNERS.get(suite.name, request.runner))
    profile_run = suite.run_overrides(request.profile)
    if suite.name in SUITE_RUNNERS:
        profile_run = {**suite.data_params(request.profile), **profile_run}
    config, sources = resolve_config(runner, profile_run, request.config_file, request.overrides)

    algos = list(request.algos or suite.default_algos)
    seeds = list(request.seeds if request.seeds is not None else suite.seeds(request.profile))
    for spec in algos:
        _check_algo(spec)

    generates_data = False
    if suite.data == "none":
        data_dir, data_note = None, f"synthetic batches generated by the {runner.name} runner (no data folder)"
    elif request.data is not None:
        data_dir = Path(request.data).resolve()
        data_note = f"{data_dir} (--data; validated before the first job)"
    else:
        generates_data = True
        data_dir = data_cache_path(suite.name, request.profile)
        state = "cached" if _data_complete(data_dir) else "will be generated"
        data_note = f"SynthCLIMB ({suite.data}) profile {request.profile} seed {DATA_SEED} -> {data_dir} ({state})"

    out = request.out
    if out is None and request.resume:
        out = latest_out_dir(suite.name)
        if out is None:
            raise SweepError(f"--resume: no earlier run of {suite.name} under reports/; pass --out DIR")
    out_dir = Path(out if out is not None else default_out_dir(suite.name)).resolve()

    variants = dict(getattr(suite, "variants", {}) or {})
    jobs: list[Job] = []
    for spec in algos:
        for variant, variant_overrides in (variants.items() if variants else [(None, {})]):
            job_config = (
                apply_overrides(config, dict(variant_overrides), what=f"suite variant {variant}") if variant else config
            )
            label = f"{spec}[{variant}]" if variant else spec
            for seed in seeds:
                jobs.append(
                    Job(
                        suite=suite.name, algo=label, estimator=spec, seed=seed, config=job_config,
                        data_dir=data_dir if data_dir is not None else out_dir, out_dir=out_dir,
                    )
                )
    labels = list(dict.fromkeys(j.algo for j in jobs))
    plan = Plan(
        suite=suite, profile=request.profile, runner=runner, executor=request.executor,
        ray_address=request.ray_address, ray_num_cpus=request.ray_num_cpus, config=config,
        config_sources=sources, data_dir=data_dir, data_note=data_note, generates_data=generates_data,
        algos=labels, seeds=seeds, jobs=jobs, out_dir=out_dir, tracking_uri=tracking_uri(),
        plugins=tuple(request.plugins), resume=request.resume,
    )
    _check_out_dir(plan)
    for job in jobs:
        runner.check(job)
    return plan


def _check_out_dir(plan: Plan) -> None:
    results = plan.out_dir / "results.csv"
    saved = plan.out_dir / "config.yaml"
    if not plan.resume:
        if results.exists() or saved.exists():
            raise SweepError(
                f"output folder {plan.out_dir} already holds a run; pass --resume to continue it or another --out"
            )
        return
    if saved.exists():
        previous = yaml.safe_load(saved.read_text()) or {}
        if previous.get("config") != plan.config_dict():
            raise SweepError(
                f"--resume: the resolved config differs from {saved}; resume with the same settings or use another --out"
            )
    if results.exists():
        plan.done = {(r["algo"], int(r["seed"])) for r in read_results(results)}


def _data_complete(path: Path) -> bool:
    return (path / "train.jsonl").is_file() and (path / "test.jsonl").is_file()


def ensure_data(plan: Plan) -> Path | None:
    """Validate ``--data`` or generate SynthCLIMB into the cache (atomically: a tmp folder renamed)."""
    from rlbench_med.suites import load_data, synth

    if plan.data_dir is None:
        return None
    if _data_complete(plan.data_dir):
        load_data(plan.data_dir)  # raises DataError listing every problem
        return plan.data_dir
    if not plan.generates_data:
        load_data(plan.data_dir)
        return plan.data_dir
    plan.data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=plan.data_dir.name + ".", dir=plan.data_dir.parent))
    try:
        synth.generate(plan.suite.name, tmp, seed=DATA_SEED, profile=plan.profile)
        if plan.data_dir.exists():
            shutil.rmtree(plan.data_dir)  # an incomplete earlier attempt
        os.replace(tmp, plan.data_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return plan.data_dir


# --------------------------------------------------------------------------------------------
# results.csv
# --------------------------------------------------------------------------------------------
def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.csv (values as strings except seed/value/n); checks the header."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise SweepError(f"{path}: header {reader.fieldnames} is not {','.join(RESULT_COLUMNS)}")
        return [
            {**row, "seed": int(row["seed"]), "value": float(row["value"]), "n": int(row["n"])} for row in reader
        ]


class ResultsWriter:
    """Keeps results.csv complete on disk: rewritten atomically (tmp file + rename) after each job."""

    def __init__(self, path: Path, existing: Sequence[Mapping[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = [dict(r) for r in existing]

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            if set(row) != set(RESULT_COLUMNS):
                raise SweepError(f"result row {dict(row)} does not have exactly the columns {','.join(RESULT_COLUMNS)}")
        self.rows.extend(dict(r) for r in rows)
        self.flush()

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: row[k] for k in RESULT_COLUMNS})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def save_config(plan: Plan) -> Path:
    """Write ``<out>/config.yaml``: the resolved runner config plus what the sweep was asked to do."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / "config.yaml"
    doc = {
        "suite": plan.suite.name,
        "profile": plan.profile,
        "runner": plan.runner.name,
        "executor": plan.executor,
        "algos": plan.algos,
        "estimators": list(dict.fromkeys(j.estimator for j in plan.jobs)),
        "seeds": plan.seeds,
        "data": str(plan.data_dir) if plan.data_dir else None,
        "config_sources": plan.config_sources,
        "config": plan.config_dict(),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------
# tracking and progress hooks (implemented by reports/tracking.py and the CLI)
# --------------------------------------------------------------------------------------------
class ChildRun(Protocol):
    """One job's tracked run; picklable, so a Ray worker can open it."""

    def open(self) -> Tracker: ...


class SweepTracking(Protocol):
    """Parent/child run lifecycle of a sweep. Statuses: FINISHED, FAILED, KILLED."""

    def start(self, plan: Plan) -> None: ...

    def child(self, job: Job) -> ChildRun: ...

    def close_child(self, job: Job, result: JobResult | None, status: str, error: str | None = None) -> None: ...

    def finish(self, status: str, artifacts: Sequence[Path] = ()) -> None: ...


class _NullChild:
    def open(self) -> Tracker:
        from rlbench_med.runners.base import NullTracker

        return NullTracker()


class NullSweepTracking:
    """No tracking (library use and tests)."""

    def start(self, plan: Plan) -> None:
        pass

    def child(self, job: Job) -> ChildRun:
        return _NullChild()

    def close_child(self, job: Job, result: JobResult | None, status: str, error: str | None = None) -> None:
        pass

    def finish(self, status: str, artifacts: Sequence[Path] = ()) -> None:
        pass


class Progress(Protocol):
    """Progress display: overall jobs, and the current job's steps (local executor only)."""

    def note(self, message: str) -> None: ...

    def start(self, total_jobs: int) -> None: ...

    def job_started(self, job: Job, total_steps: int | None) -> None: ...

    def step(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def job_finished(self, job: Job, ok: bool) -> None: ...

    def stop(self) -> None: ...


class NullProgress:
    def note(self, message: str) -> None:
        pass

    def start(self, total_jobs: int) -> None:
        pass

    def job_started(self, job: Job, total_steps: int | None) -> None:
        pass

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def job_finished(self, job: Job, ok: bool) -> None:
        pass

    def stop(self) -> None:
        pass


class _StepCounting:
    """Forwards to the job's tracker and advances the step progress bar."""

    def __init__(self, inner: Tracker, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)
        self.progress.step(step, metrics)

    def log_artifact(self, path: Path) -> None:
        self.inner.log_artifact(path)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
@dataclass
class JobFailure:
    job: Job
    error: str  # one line: "ExceptionType: message"
    detail: str  # full traceback


@dataclass
class SweepOutcome:
    plan: Plan
    results: list[JobResult]
    failures: list[JobFailure]
    interrupted: bool
    results_csv: Path
    wall_s: float
    status: str = "RUNNING"  # FINISHED, FAILED (a job failed) or KILLED (Ctrl-C) once run_sweep returns

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the sweep like Ctrl-C (runs marked KILLED, results kept)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_predictions_index(plan: Plan, results: Sequence[JobResult]) -> Path:
    """``<out>/predictions/index.json``: results.csv (algo, seed) -> predictions file (relative)."""
    path = plan.out_dir / "predictions" / "index.json"
    index: dict[str, str] = {}
    if path.exists():
        index = json.loads(path.read_text())
    for result in results:
        for label, pred in result.predictions.items():
            p = Path(pred)
            rel = os.path.relpath(p.resolve(), plan.out_dir) if p.is_absolute() else str(p)
            index[f"{label}|{result.job.seed}"] = rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return path


def run_sweep(
    plan: Plan,
    tracking: SweepTracking | None = None,
    progress: Progress | None = None,
) -> SweepOutcome:
    """Run the plan's pending jobs; never raises for a failed job (see ``SweepOutcome.failures``).

    Ctrl-C (or SIGTERM) stops the sweep: open child runs are marked KILLED, results.csv keeps
    every finished job. An error of the sweep itself marks the parent run FAILED and is
    re-raised. Otherwise the parent run stays open for the report: close it with
    :func:`finish_sweep` (in a ``finally``).
    """
    tracking = tracking or NullSweepTracking()
    progress = progress or NullProgress()
    start = time.perf_counter()
    if plan.data_dir is not None:
        progress.note(f"data: checking {plan.data_dir} (generated on first use) ...")
        ensure_data(plan)
        progress.note(f"data: ready ({time.perf_counter() - start:.1f} s)")
    save_config(plan)
    results_csv = plan.out_dir / "results.csv"
    writer = ResultsWriter(results_csv, read_results(results_csv) if plan.done and results_csv.exists() else ())
    if not results_csv.exists():
        writer.flush()
    outcome = SweepOutcome(plan, [], [], False, results_csv, 0.0)
    pending = plan.pending
    tracking.start(plan)
    try:
        with _sigterm_as_interrupt():
            if pending:
                begin = time.perf_counter()
                progress.note(f"runner {plan.runner.name}: preparing shared work (e.g. the SFT base) ...")
                plan.runner.prepare(pending)
                progress.note(f"runner {plan.runner.name}: ready ({time.perf_counter() - begin:.1f} s)")
            progress.start(len(pending))
            if plan.executor == "ray":
                _run_ray(plan, pending, tracking, progress, writer, outcome)
            else:
                _run_local(plan, pending, tracking, progress, writer, outcome)
        outcome.status = "FAILED" if outcome.failures else "FINISHED"
    except KeyboardInterrupt:
        outcome.interrupted = True
        outcome.status = "KILLED"
    except BaseException:
        tracking.finish("FAILED", [plan.out_dir / "config.yaml", results_csv])
        raise
    finally:
        progress.stop()
        if any(r.predictions for r in outcome.results):
            write_predictions_index(plan, outcome.results)
        outcome.wall_s = time.perf_counter() - start
    return outcome


def finish_sweep(outcome: SweepOutcome, tracking: SweepTracking, artifacts: Sequence[Path] = ()) -> None:
    """Close the parent run with the sweep's status, attaching config, results.csv and report files."""
    tracking.finish(outcome.status, [outcome.plan.out_dir / "config.yaml", outcome.results_csv, *artifacts])


def _failure(job: Job, exc: BaseException) -> JobFailure:
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return JobFailure(job=job, error=f"{type(exc).__name__}: {first}", detail=detail)


def _run_local(
    plan: Plan, jobs: Sequence[Job], tracking: SweepTracking, progress: Progress,
    writer: ResultsWriter, outcome: SweepOutcome,
) -> None:
    for job in jobs:
        child = tracking.child(job)
        if getattr(progress, "enabled", False) and hasattr(job.config, "progress"):
            # The sweep's display shows the job's steps; a second (runner) bar would fight it.
            job = dataclasses.replace(job, config=dataclasses.replace(job.config, progress=False))
        progress.job_started(job, getattr(job.config, "steps", None))
        try:
            result = plan.runner.run(job, _StepCounting(child.open(), progress), plan.resume)
        except KeyboardInterrupt:
            tracking.close_child(job, None, "KILLED", "interrupted (Ctrl-C)")
            progress.job_finished(job, False)
            raise
        except Exception as exc:  # a job's own failure: recorded with its traceback, the sweep goes on
            _record_failure(_failure(job, exc), tracking, progress, outcome)
            continue
        _record_result(result, tracking, progress, writer, outcome)


def _record_result(
    result: JobResult, tracking: SweepTracking, progress: Progress, writer: ResultsWriter, outcome: SweepOutcome
) -> None:
    """A finished job: its rows go to results.csv at once, its child run ends FINISHED."""
    writer.add(result.rows)
    outcome.results.append(result)
    tracking.close_child(result.job, result, "FINISHED")
    progress.job_finished(result.job, True)


def _record_failure(failure: JobFailure, tracking: SweepTracking, progress: Progress, outcome: SweepOutcome) -> None:
    """A failed job: reported with its error, its child run ends FAILED; the sweep goes on."""
    outcome.failures.append(failure)
    tracking.close_child(failure.job, None, "FAILED", failure.detail)
    progress.job_finished(failure.job, False)


def _job_in_worker(runner_name: str, plugins: tuple[str, ...], job: Job, child: ChildRun, resume: bool) -> JobResult:
    """What one Ray task runs: load plugins, look the runner up, run the job with its tracker."""
    for plugin in plugins:
        load_plugin(plugin)
    runner = RUNNERS.get(runner_name)
    return runner.run(job, child.open(), resume)


def _ray_init(plan: Plan) -> Any:
    import ray

    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in ("RLBENCH_MED_CACHE", "MLFLOW_TRACKING_URI") if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
    if plan.ray_address:
        ray.init(address=plan.ray_address, **kwargs)
    else:
        ray.init(num_cpus=plan.ray_num_cpus, include_dashboard=False, **kwargs)
    return ray


def _run_ray(
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

    remote = ray.remote(_job_in_worker)
    futures: dict[Any, Job] = {}
    for job in jobs:
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
                result = ray.get(ref)
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                failure = _failure(job, cause)
                failure.detail = str(exc)
                _record_failure(failure, tracking, progress, outcome)
                continue
            except RayError as exc:  # worker died, object lost, ...
                _record_failure(_failure(job, exc), tracking, progress, outcome)
                continue
            _record_result(result, tracking, progress, writer, outcome)
    except KeyboardInterrupt:
        for ref, job in futures.items():
            ray.cancel(ref, force=True)
            tracking.close_child(job, None, "KILLED", "interrupted (Ctrl-C)")
        raise
