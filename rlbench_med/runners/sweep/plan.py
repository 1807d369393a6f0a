"""The plan of a sweep: everything resolved (suite, config, data, jobs, output), nothing run.

``build_plan(request)`` raises ConfigError/RegistryError/SweepError with a one-line reason;
``Plan.render()`` is what ``rlbench-med run`` prints first.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlbench_med.registry import load_plugin
from rlbench_med.runners.base import BASE, RUNNERS, Job, RunnerSpec, cache_dir, folder_problem, safe_name
from rlbench_med.runners.sweep.datacache import data_cache_path, data_complete, source_folder
from rlbench_med.runners.sweep.jobcache import CacheEntry, find_reusable, jobs_dir
from rlbench_med.runners.sweep.request import (
    EXECUTORS,
    SUITE_RUNNERS,
    SweepError,
    SweepRequest,
    check_algo,
    resolve_config,
)
from rlbench_med.runners.sweep.results import read_results
from rlbench_med.runners.sweep.settings import DataSettings, ReportSettings, resolve_settings
from rlbench_med.runners.sweep.tracking import tracking_uri
from rlbench_med.suites.floors import LABEL_FLOORS
from rlbench_med.typed_config import ConfigError, apply_overrides, to_plain_dict


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
    data_settings: DataSettings = field(default_factory=DataSettings)
    report_settings: ReportSettings = field(default_factory=ReportSettings)
    done: set[tuple[str, int]] = field(default_factory=set)
    data_source: Any = None  # suites.data.DataSource the jobs read (None without data)
    data_problems: int = 0  # problems found in --data without opening its media (a run would refuse it)
    data: Any = None  # the checked suites.data records of data_source, once ensure_data has loaded them
    notes: list[str] = field(default_factory=list)
    reuse: bool = True  # --no-reuse: False
    reused: dict[tuple[str, int], CacheEntry] = field(default_factory=dict)  # pending jobs the job cache holds
    specs: list[str] = field(default_factory=list)  # the algorithms as asked for (--algos, or the suite's)
    requested_runner: str = "local"  # --runner (a suite such as runtime runs its own runner instead)
    user_keys: tuple[str, ...] = ()  # the settings the user named (--config file and --set)
    algo_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # runner settings of one algorithm
    baseline: str | None = None  # --baseline: what the report compares every algorithm against (None: grpo)

    @property
    def report_baseline(self) -> str:
        """The baseline the report uses: ``--baseline``, else ``grpo`` (the report notes when the sweep lacks it)."""
        return self.baseline or "grpo"

    @property
    def pending(self) -> list[Job]:
        """Jobs not already in results.csv (``--resume`` skips finished ones)."""
        return [j for j in self.jobs if (j.algo, j.seed) not in self.done]

    @property
    def to_train(self) -> list[Job]:
        """Pending jobs the job cache does not hold."""
        return [j for j in self.pending if (j.algo, j.seed) not in self.reused]

    def resources(self, job: Job) -> dict[str, float]:
        """Ray resources declared by one job: its cpu_threads CPUs, and 1 GPU when its config asks for CUDA."""
        return {"num_cpus": max(1, int(getattr(job.config, "cpu_threads", 1))), "num_gpus": 1 if _wants_gpu(job.config) else 0}

    def config_dict(self) -> dict[str, Any]:
        return to_plain_dict(self.config)

    @property
    def primary_metric(self) -> str:
        return self.report_settings.primary_metric

    @property
    def has_floors(self) -> bool:
        """Trivial floors are computed for every sweep that has a data folder."""
        return self.data_dir is not None

    def render(self) -> str:
        """Human-readable plan: suite, data, algos x seeds, runner, executor, output, tracking."""
        suite = self.suite
        lines = ["rlbench-med run plan"]
        lines.append(f"  suite      {suite.name}: {suite.description} (profile {self.profile})")
        lines.append(f"  data       {self.data_note}")
        lines.append(
            f"  algos      {', '.join(self.algos)} x seeds {','.join(map(str, self.seeds))} = {len(self.jobs)} jobs"
            + (f" ({len(self.jobs) - len(self.pending)} already done, resumed)" if self.done else "")
            + (f" ({len(self.reused)} reused from the job cache)" if self.reused else "")
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
        for algo, own in self.algo_settings.items():
            lines.append(f"             {algo}: " + ", ".join(f"{k}={v}" for k, v in own.items()) + " (algo_settings)")
        if self.data_dir is not None:
            extra = "; base (the shared SFT start, step 0)" if any(j.estimator == BASE for j in self.jobs) else ""
            boxes = ", box floors (whole image, mean training box, no box)" if "iou" in suite.metrics else ""
            lines.append(f"  report     leads with {self.primary_metric}; floors {', '.join(LABEL_FLOORS)}{boxes}{extra}")
        for note in self.notes:
            lines.append(f"  note       {note}")
        lines.append(f"  job cache  {self._cache_line()}")
        lines.append(f"  output     {self.out_dir}")
        lines.append(f"  tracking   {self.tracking_uri} (experiment rlbench-med/{suite.name})")
        lines.append("  jobs")
        for job in self.jobs:
            if (job.algo, job.seed) in self.done:
                lines.append(f"    {job.algo} seed {job.seed} -> estimator {job.estimator} (done)")
                continue
            entry = self.reused.get((job.algo, job.seed))
            if entry is not None:
                lines.append(f"    {job.algo} seed {job.seed} -> estimator {job.estimator} (reused: {entry.describe()})")
                continue
            lines.append(f"    {job.algo} seed {job.seed} -> estimator {job.estimator}")
            for extra in self.runner.plan(job):
                lines.append(f"      {extra}")
        return "\n".join(lines)

    def _cache_line(self) -> str:
        if self.runner.identity is None:
            return f"not used: the {self.runner.name} runner's jobs are never reused"
        if not self.reuse:
            return f"--no-reuse: every job trains; the finished ones replace their entries in {jobs_dir()}"
        if self.resume:
            return f"{jobs_dir()}: finished jobs are reused; jobs of a --resume sweep are not stored"
        return (f"{jobs_dir()}: a finished job with the same data, base, config, estimator, seed and code is "
                "reused (--no-reuse trains it again)")


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
    if request.executor == "ray":
        check_ray()
    runner = RUNNERS.get(SUITE_RUNNERS.get(suite.name, request.runner))
    profile_run = suite.run_overrides(request.profile)
    if suite.name in SUITE_RUNNERS:
        profile_run = {**suite.data_params(request.profile), **profile_run}
    from rlbench_med.runners.sweep.experiment import settings_of

    file_label, file_settings, algo_settings = settings_of(request)
    config, sources = resolve_config(runner, profile_run, (file_label, file_settings) if file_label else None,
                                     request.overrides)
    setting_sources = [(file_label, file_settings)] if file_label else []
    data_settings, report_settings = resolve_settings(
        [*setting_sources, ("--set", request.overrides)], suite_primary=suite.primary_metric,
        sizes=suite.data_params(request.profile) if suite.data != "none" else None,
    )

    algos = list(request.algos or suite.default_algos)
    seeds = list(request.seeds if request.seeds is not None else suite.seeds(request.profile))
    for spec in algos:
        check_algo(spec)
    notes: list[str] = []
    algo_settings = _check_algo_settings(algo_settings, algos, runner, file_label, notes)

    from rlbench_med.suites.data import DataSource, check_data, summarize

    generates_data = False
    data_problems = 0
    if not data_settings.is_default and (suite.data == "none" or request.data is not None):
        where = "--data" if request.data is not None else f"suite {suite.name} (it has no data folder)"
        raise ConfigError(f"data.*: these settings configure generated SynthCLIMB data; they do not apply to {where}")
    source = None
    if suite.data == "none":
        data_dir, data_note = None, f"synthetic batches generated by the {runner.name} runner (no data folder)"
    elif request.data is not None:
        try:
            source = DataSource.parse(request.data, allow_outside=request.allow_outside_data).for_suite(suite.name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        data_dir = source.folder or source.train.parent
        check = check_data(source, media=False)
        data_problems = len(check.problems)
        data_note = f"{source.describe()} (--data; validated before the first job)" + "".join(
            f"\n             {line}" for line in summarize(source, check=check)
        )
    else:
        generates_data = True
        data_dir = data_cache_path(suite.name, request.profile, data_settings)
        source = DataSource.parse(data_dir).for_suite(suite.name)
        state = "cached" if data_complete(data_dir) else "will be generated"
        sizes = "".join(f" {k}={v:g}" for k, v in data_settings.sizes)
        data_note = (f"SynthCLIMB ({suite.data}) profile {request.profile} seed {data_settings.seed} "
                     f"imbalance {data_settings.imbalance:g}{sizes} -> {data_dir} ({state})")
    job_data = source_folder() / source.file_name() if source is not None else None

    out = request.out
    if out is None and request.resume:
        out = latest_out_dir(suite.name)
        if out is None:
            raise SweepError(f"--resume: no earlier run of {suite.name} under reports/; pass --out DIR")
    out_dir = Path(out if out is not None else default_out_dir(suite.name)).resolve()

    variants = dict(getattr(suite, "variants", {}) or {})
    user_keys = set(request.overrides) | set(file_settings)
    jobs: list[Job] = []
    for spec in algos:
        own = algo_settings.get(spec, {})
        algo_config = apply_overrides(config, own, what=f"{file_label} algo_settings.{spec}") if own else config
        for variant, variant_overrides in (variants.items() if variants else [(None, {})]):
            job_config = (
                apply_overrides(algo_config, dict(variant_overrides), what=f"suite variant {variant}") if variant
                else algo_config
            )
            if _groups_by_dataset(spec, job_config, user_keys | set(own) | set(variant_overrides)):
                job_config = apply_overrides(job_config, {"group_by": "dataset"}, what=f"{spec} default")
                note = (f"{spec} groups by dataset (group_by=dataset), as the QoQ-Med release keys DRPO on "
                        "`dataset`; --set group_by=domain to change")
                notes += [note] if note not in notes else []
            label = f"{spec}[{variant}]" if variant else spec
            for seed in seeds:
                jobs.append(
                    Job(
                        suite=suite.name, algo=label, estimator=spec, seed=seed, config=job_config,
                        data_dir=job_data if job_data is not None else out_dir, out_dir=out_dir,
                    )
                )
    labels = list(dict.fromkeys(j.algo for j in jobs))
    _check_file_names(labels, with_floors=data_dir is not None)
    if runner.evaluates_base and data_dir is not None and BASE not in algos:
        # The shared starting policy, evaluated once (it does not depend on the training seed).
        base_seed = int(getattr(config, "base_seed", 0))
        jobs.insert(0, Job(suite=suite.name, algo=BASE, estimator=BASE, seed=base_seed, config=config,
                           data_dir=job_data if job_data is not None else data_dir, out_dir=out_dir))
    plan = Plan(
        suite=suite, profile=request.profile, runner=runner, executor=request.executor,
        ray_address=request.ray_address, ray_num_cpus=request.ray_num_cpus, config=config,
        config_sources=sources, data_dir=data_dir, data_note=data_note, generates_data=generates_data,
        algos=labels, seeds=seeds, jobs=jobs, out_dir=out_dir, tracking_uri=tracking_uri(),
        plugins=tuple(request.plugins), resume=request.resume, data_settings=data_settings,
        report_settings=report_settings, data_source=source, notes=notes, reuse=request.reuse,
        data_problems=data_problems, specs=algos, requested_runner=request.runner,
        user_keys=tuple(sorted(user_keys)), algo_settings={a: dict(v) for a, v in algo_settings.items()},
        baseline=request.baseline,
    )
    _check_baseline(plan)
    _check_out_dir(plan)
    check_cache_folder()
    for job in jobs:
        runner.check(job)
    find_reusable(plan)
    return plan


def _check_baseline(plan: Plan) -> None:
    """An explicit ``--baseline`` must be an algorithm of the sweep (or ``base`` when the sweep evaluates it)."""
    if plan.baseline is None:
        return
    labels = [*plan.algos, *([BASE] if any(j.algo == BASE for j in plan.jobs) else [])]
    if plan.baseline not in labels:
        from rlbench_med.registry import did_you_mean

        raise ConfigError(f"--baseline {plan.baseline!r} is not an algorithm of this sweep.{did_you_mean(plan.baseline, labels)} "
                          f"Choose one of {', '.join(labels)} (or leave it out: grpo when the sweep has it)")


def _check_algo_settings(values: Any, algos: list[str], runner: RunnerSpec, what: str,
                         notes: list[str]) -> dict[str, dict[str, Any]]:
    """The ``algo_settings`` of the experiment file that apply: runner settings only (names checked here,
    values when the jobs are built). An algorithm the sweep does not run (``--algos`` left it out) is
    named in a plan note."""
    from rlbench_med.runners.sweep.request import check_setting_names

    known = {f.name for f in dataclasses.fields(runner.config_cls)}
    used: dict[str, dict[str, Any]] = {}
    for algo, own in values.items():
        check_setting_names(own, known, f"{what} algo_settings.{algo}")
        if algo in algos:
            used[algo] = dict(own)
        else:
            notes.append(f"{what} algo_settings.{algo} not used: {algo} is not an algorithm of this sweep")
    return used


def _check_file_names(labels: list[str], *, with_floors: bool) -> None:
    """Refuse two results.csv labels that would share a predictions file and a checkpoint folder
    (``pa+b`` and ``pa_b`` both become ``pa_b``; names differing only in case share them on a
    case-insensitive file system): one would silently overwrite the other's files."""
    from rlbench_med.suites.floors import FILED_FLOORS

    owners: dict[str, str] = {}
    for label in [*labels, BASE, *(FILED_FLOORS if with_floors else ())]:
        name = safe_name(label)
        other = owners.setdefault(name.casefold(), label)
        if other != label:
            raise SweepError(
                f"--algos: {other!r} and {label!r} would share the file name {name} (predictions/{name}-seed<seed>.jsonl, "
                f"checkpoints/{name}-seed<seed>/); rename one: file names keep letters, digits and -_.= only, and "
                "ignore case on some file systems")


def check_ray() -> None:
    """``--executor ray`` needs Ray, an optional dependency (the ``ray`` extra): said at plan time, in one line."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--executor ray needs Ray: pip install 'rlbench-med[ray]' (or run with --executor local)")


def preflight(plan: Plan) -> None:
    """Refuse a real run (not ``--dry-run``) that cannot start on this machine, before anything is written:
    the runner's ``preflight`` on every job (``ConfigError`` with a one-line reason)."""
    if plan.runner.preflight is not None:
        for job in plan.jobs:
            plan.runner.preflight(job)


#: Estimators whose jobs group DRPO by dataset unless the user sets group_by: the release keys DRPO
#: on the record's ``dataset`` (QoQ_Med commit 97f7f3d, verl/trainer/ray_trainer.py L168-179).
DATASET_GROUPED = frozenset({"drpo_release"})


def _groups_by_dataset(spec: str, config: Any, user_keys: set[str]) -> bool:
    return (spec.split(":", 1)[0].strip() in DATASET_GROUPED and "group_by" not in user_keys
            and getattr(config, "group_by", "dataset") != "dataset")


def _check_out_dir(plan: Plan) -> None:
    _check_writable_folder(plan.out_dir)
    results = plan.out_dir / "results.csv"
    saved = plan.out_dir / "config.yaml"
    if not plan.resume:
        if results.exists() or saved.exists():
            raise SweepError(
                f"output folder {plan.out_dir} already holds a run; pass --resume to continue it or another --out"
            )
        return
    rows = read_results(results) if results.exists() else []
    if saved.exists():
        try:
            previous = yaml.safe_load(saved.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SweepError(f"--resume: {saved} is not readable YAML ({type(exc).__name__}); it is the record of "
                             "the sweep to continue: restore it, or use another --out") from None
        differences = _resume_differences(plan, previous if isinstance(previous, dict) else {})
        if differences:
            raise SweepError(f"--resume: this run differs from the sweep in {plan.out_dir} ({saved}): "
                             + "; ".join(differences) + "; resume with the same settings or use another --out")
    other = sorted({str(r["suite"]) for r in rows} - {plan.suite.name})
    if other:
        raise SweepError(f"--resume: {results} holds results of suite {', '.join(other)}, not {plan.suite.name}; "
                         "use another --out")
    plan.done = {(r["algo"], int(r["seed"])) for r in rows}


def _resume_differences(plan: Plan, previous: dict[str, Any]) -> list[str]:
    """What a ``--resume`` run changes about the sweep saved in config.yaml (``previous``), each in a
    phrase. A resume may add algorithms and seeds (the sweep grows); it may not drop any, nor change
    the suite, the data or the config, which would mix results of two setups in one folder."""
    out: list[str] = []
    if previous.get("suite", plan.suite.name) != plan.suite.name:
        out.append(f"the sweep is of suite {previous['suite']}, this run of {plan.suite.name}")
    for what, saved, now in (("algos", previous.get("algos"), plan.algos), ("seeds", previous.get("seeds"), plan.seeds)):
        dropped = [x for x in saved or [] if x not in now]
        if dropped:
            out.append(f"it ran --{what} {','.join(map(str, saved))} and this run leaves out "
                       f"{','.join(map(str, dropped))} (a resume may add {what}, not drop any)")
    fingerprint = previous.get("data_fingerprint")
    if fingerprint is not None and data_fingerprint(plan) not in (None, fingerprint):
        out.append(f"its data ({previous.get('data')}) differ from this run's ({plan.data_dir})")
    elif fingerprint is None and previous.get("data") not in (None, str(plan.data_dir) if plan.data_dir else None):
        out.append(f"it used the data in {previous.get('data')}, this run {plan.data_dir}")
    if previous.get("data_settings", DataSettings().as_dict()) != plan.data_settings.as_dict():
        out.append(f"data settings {previous.get('data_settings')} then, {plan.data_settings.as_dict()} now")
    if (previous.get("algo_settings") or {}) != plan.algo_settings:
        out.append(f"algo_settings {previous.get('algo_settings') or {}} then, {plan.algo_settings} now")
    config, now_config = previous.get("config"), plan.config_dict()
    if config != now_config:
        keys = sorted(k for k in {*(config or {}), *now_config} if (config or {}).get(k) != now_config.get(k))
        shown = ", ".join(f"{k} {(config or {}).get(k)!r} then, {now_config.get(k)!r} now" for k in keys[:3])
        out.append(f"the resolved config differs ({shown}{', ...' if len(keys) > 3 else ''})")
    return out


def data_fingerprint(plan: Plan) -> str | None:
    """The fingerprint of the plan's data (split files, class list, record selection), or None when the
    plan has no data or the data is not there yet (generated SynthCLIMB before its first run)."""
    source = plan.data_source
    if source is None or not (source.train.is_file() and source.test.is_file()):
        return None
    return source.fingerprint()


def _check_writable_folder(out: Path) -> None:
    """``--out`` must be, or be creatable as, a folder this process can write (checked before anything runs)."""
    problem = folder_problem(out)
    if problem is None:
        return
    if problem.endswith("is a file, not a folder"):
        raise SweepError(f"--out {out} is a file, not a folder; give a folder path")
    raise SweepError(f"--out {out}: {problem}; give " + ("a folder you can write to" if problem.endswith("writable")
                                                          else "another --out"))


def check_cache_folder() -> None:
    """The cache (data, SFT bases, the job cache, locks, MLflow artifacts) must be a folder this process
    can write; said at plan time, so it is not mistaken for a problem of whatever first writes there."""
    problem = folder_problem(cache_dir())
    if problem is not None:
        raise SweepError(f"cache {cache_dir()} (RLBENCH_MED_CACHE, default ~/.cache/rlbench-med): {problem}; "
                         "set RLBENCH_MED_CACHE to a folder you can write to")
