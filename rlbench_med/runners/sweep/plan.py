"""The plan of a sweep: everything resolved (suite, config, data, jobs, output), nothing run.

``Plan`` lives here, below every module of the sweep that reads it (the data cache, the job cache,
the output files, tracking, calibration, the executors): it imports none of them, so the sweep's
imports run one way. :mod:`.planner` builds it (``build_plan(request)``); ``Plan.render()`` is what
``rlbench-med run`` prints first.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rlbench_med.runners.base import BASE, Job, RunnerSpec, jobs_dir
from rlbench_med.runners.sweep.settings import DataSettings, ExecutorSettings, ReportSettings
from rlbench_med.suites.floors import LABEL_FLOORS
from rlbench_med.typed_config import to_plain_dict


class StoredJob(Protocol):
    """A finished job the job cache holds (:class:`~rlbench_med.runners.sweep.jobcache.CacheEntry`)."""

    def describe(self) -> str:
        """Where and when it was trained, for the plan and the log."""


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
    executor_settings: ExecutorSettings = field(default_factory=ExecutorSettings)
    done: set[tuple[str, int]] = field(default_factory=set)
    data_source: Any = None  # suites.data.DataSource the jobs read (None without data)
    data_problems: int = 0  # problems found in --data without opening its media (a run would refuse it)
    data: Any = None  # the checked suites.data records of data_source, once ensure_data has loaded them
    notes: list[str] = field(default_factory=list)
    reuse: bool = True  # --no-reuse: False
    reused: dict[tuple[str, int], StoredJob] = field(default_factory=dict)  # pending jobs the job cache holds
    #: False for a tune: the jobs answer the validation split only, their rows go to validation.csv.
    score_test: bool = True
    #: ``{label: runner overrides}`` applied to every algorithm (the suite's variants, or a tune's trials).
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``run --tuned``: ``{algo: runner overrides}`` of each algorithm's tuned setting.
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    command: str = "run"  # the command the plan is printed for
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
    def results_csv(self) -> Path:
        """Where the jobs' rows go: ``results.csv`` (the test split), or a tune's ``validation.csv``."""
        return self.out_dir / ("results.csv" if self.score_test else "validation.csv")

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

    def side_by_side(self, jobs: Sequence[Job]) -> int:
        """How many of ``jobs`` the local executor runs at once, each in a worker process: ``--set workers``
        (0: the cores this process may use, divided by the threads of a job), at most one per job; 1 (in
        this process, one after another) when the runner's jobs must run alone (``RunnerSpec.threads``)."""
        threads = [self.runner.threads(job) for job in jobs] if self.runner.threads is not None else [None]
        if not jobs or any(t is None for t in threads):
            return 1
        wanted = self.executor_settings.workers or usable_cores() // max(int(t or 1) for t in threads)
        return max(1, min(wanted, len(jobs)))

    def config_dict(self) -> dict[str, Any]:
        return to_plain_dict(self.config)

    def data_fingerprint(self) -> str | None:
        """The fingerprint of the plan's data (split files, class list, record selection), or None when the
        plan has no data or the data is not there yet (generated SynthCLIMB before its first run)."""
        source = self.data_source
        if source is None or not (source.train.is_file() and source.test.is_file()):
            return None
        return source.fingerprint()

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
        lines = [f"rlbench-med {self.command} plan"]
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
            workers = self.side_by_side(self.to_train)
            if workers > 1:
                lines.append(f"  executor   local: {workers} jobs side by side, each in a worker process with its "
                             f"cpu_threads thread(s) (--set workers=1: one after another)")
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


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


#: The results.csv label suffix of an algorithm's run at its tuned setting (``run --tuned``): the
#: report's sweep grammar, so it is compared with the baseline's tuned run and with its own default.
TUNED = "tuned"


def variant_label(algo: str, variant: str) -> str:
    """``grpo``, ``trial1`` -> ``grpo[trial1]``: the results.csv label of an algorithm in a variant."""
    return f"{algo}[{variant}]"


def tuned_label(algo: str) -> str:
    """``grpo`` -> ``grpo (tuned)``."""
    return f"{algo} ({TUNED})"


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
