"""The Python API: run a sweep and read its results as pandas DataFrames, without the command line.

    from rlbench_med import load_results, run_sweep

    sweep = run_sweep("climb_vision", algos=["drpo", "grpo"], seeds=[0], settings={"steps": 20})
    sweep.results          # results.csv as a DataFrame: suite, algo, seed, domain, metric, value, n
    sweep.comparisons      # comparisons.csv: algo, baseline, domain, metric, diff, ci_low, ci_high, ...
    sweep.table()          # the headline: domains x algorithms, the primary metric's mean over seeds
    load_results("reports/climb_vision-20260101-120000").table("acc")

``run_sweep`` does what ``rlbench-med run`` does (plan, jobs, MLflow runs, report) with the same
arguments, ``config=`` taking an experiment file; it prints nothing unless ``progress=True``. It
raises the CLI's errors as exceptions (``ConfigError``, ``RegistryError``, ``SweepError``, ...);
a job that fails does not raise: it is in ``failed``. Like the CLI it sits above ``runners`` and
``reports`` in the import graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from rlbench_med.runners.sweep import Plan, SweepOutcome


@dataclass
class SweepResults:
    """A sweep's output folder as DataFrames (the files ``run`` writes)."""

    out_dir: Path
    results: pd.DataFrame  # results.csv
    comparisons: pd.DataFrame  # comparisons.csv (empty when the report was not built)
    failed: pd.DataFrame  # failed.csv: suite, algo, seed, error (empty when every job finished)
    primary_metric: str

    @property
    def report(self) -> Path | None:
        """``report.html`` of the folder, when it was written."""
        path = self.out_dir / "report.html"
        return path if path.is_file() else None

    def table(self, metric: str | None = None) -> pd.DataFrame:
        """Domains (rows, ``overall`` last) x algorithms: the mean over seeds of ``metric`` (default: the primary)."""
        metric = metric or self.primary_metric
        rows = self.results[self.results["metric"] == metric]
        if rows.empty:
            known = ", ".join(sorted(set(self.results["metric"])))
            raise KeyError(f"no results of metric {metric!r} in {self.out_dir}; its metrics: {known}")
        table = rows.pivot_table(index="domain", columns="algo", values="value", aggfunc="mean")
        order = [d for d in table.index if d != "overall"] + (["overall"] if "overall" in table.index else [])
        return table.loc[order]


def load_results(out_dir: str | Path) -> SweepResults:
    """The results of a ``run`` output folder (results.csv checked as every reader checks it)."""
    import pandas as pd
    import yaml

    from rlbench_med.reports.results import load_results as read_rows
    from rlbench_med.runners.base import FAILED_COLUMNS, FAILED_CSV, read_failed

    folder = Path(out_dir)
    rows = read_rows(folder / "results.csv")
    comparisons_csv = folder / "comparisons.csv"
    comparisons = pd.read_csv(comparisons_csv) if comparisons_csv.is_file() else pd.DataFrame()
    failed = pd.DataFrame(read_failed(folder / FAILED_CSV), columns=list(FAILED_COLUMNS))
    saved = folder / "config.yaml"
    primary = (yaml.safe_load(saved.read_text()) or {}).get("primary_metric") if saved.is_file() else None
    frame = pd.DataFrame(rows, columns=["suite", "algo", "seed", "domain", "metric", "value", "n"])
    return SweepResults(folder, frame, comparisons, failed, primary or "f1_strict")


def run_sweep(
    suite: str | None = None,
    *,
    algos: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    profile: str | None = None,
    runner: str | None = None,
    executor: str | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    plugins: Iterable[str] = (),
    baseline: str | None = None,
    resume: bool = False,
    reuse: bool = True,
    progress: bool = False,
) -> SweepResults:
    """Run a sweep as ``rlbench-med run`` does and return its results.

    Arguments are the flags of ``run``: ``settings`` is ``--set`` (``{"steps": 20, "data.seed": 3}``),
    ``config`` an experiment file the other arguments override. ``progress=True`` prints the plan
    and progress lines as the command does.
    """
    from rlbench_med.cli import configure_environment
    from rlbench_med.runners import sweep
    from rlbench_med.runners.sweep.experiment import merge_request, read_experiment

    configure_environment()
    experiment = read_experiment(Path(config)) if config is not None else None
    request = merge_request(
        experiment, suite=suite, algos=tuple(algos) if algos is not None else None,
        seeds=tuple(int(s) for s in seeds) if seeds is not None else None, profile=profile, runner=runner,
        executor=executor, data=str(data) if data is not None else None,
        out=Path(out) if out is not None else None,
        overrides={str(k): str(v) for k, v in (settings or {}).items()}, plugins=tuple(plugins),
        resume=resume or None, reuse=reuse, baseline=baseline,
    )
    plan = sweep.build_plan(request)
    sweep.preflight(plan)
    if progress:
        print(plan.render(), flush=True)
    run_plan(plan, progress_lines=progress)
    return load_results(plan.out_dir)


def run_plan(plan: Plan, progress: Any = None, *, progress_lines: bool = False, calibration: bool = True,
             extra_sections: Any = None) -> tuple[SweepOutcome, list[Any]]:
    """Run a planned sweep with MLflow tracking and build its report; ``(outcome, [report])``.

    The tracking store is opened (created once) first; the report is built from results.csv and the
    curves in the store, and its summary logged on the sweep's parent run. ``progress`` is a
    :class:`~rlbench_med.runners.sweep.Progress` (``progress_lines``: the command's lines on stdout).
    ``calibration``: the report shows the latest calibration of the sweep's settings in one line
    (``calibrate``'s own sweep does not); ``extra_sections``: see :func:`~rlbench_med.reports.report.make_report`.
    """
    from rlbench_med.reports.report import make_report
    from rlbench_med.reports.tracking import MLflowSweepTracking, experiment_name, fetch_curves, log_summary, open_store
    from rlbench_med.runners import sweep

    open_store(plan.tracking_uri, experiment_name(plan.suite.name))
    tracking = MLflowSweepTracking(plan.tracking_uri)
    reports: list[Any] = []
    if progress is None and progress_lines:
        from rich.console import Console

        from rlbench_med.reports.progress import RichProgress

        progress = RichProgress(Console())

    def build_report(outcome: sweep.SweepOutcome) -> list[Path]:
        rows = sweep.read_results(outcome.results_csv) if outcome.results_csv.exists() else []
        if not rows and not outcome.failures:
            return []
        curves = fetch_curves(plan.tracking_uri, tracking.client.get_run(tracking.parent_id))
        try:
            report = make_report(plan.out_dir, rows=rows, curves=curves, baseline=plan.report_baseline,
                                 source=f"{outcome.results_csv} (MLflow {plan.tracking_uri})",
                                 calibration=calibration_of(plan.out_dir, plan.suite.name) if calibration else "",
                                 extra_sections=extra_sections)
        except OSError as exc:
            if exc.filename is not None:
                raise
            # A failed write (a full disk) does not say which file: name what was being written.
            raise OSError(exc.errno, exc.strerror,
                          f"{plan.out_dir} (the report: report.md, report.html, comparisons.csv, figures/)") from exc
        log_summary(plan.tracking_uri, tracking.parent_id, report)
        reports.append(report)
        return [p for p in (report.markdown, report.html, report.comparisons_csv, plan.out_dir / "figures")
                if p is not None]

    outcome = sweep.run_sweep(plan, tracking, progress, build_report)
    return outcome, reports


def calibration_of(folder: str | Path, suite: str) -> str:
    """The report's calibration line of a sweep folder: its config.yaml's calibration key looked up in the cache."""
    import yaml

    from rlbench_med.reports.calibration import calibration_line
    from rlbench_med.runners.sweep.calibration import DamagedCalibration, find_calibration

    saved = Path(folder) / "config.yaml"
    key = (yaml.safe_load(saved.read_text()) or {}).get("calibration_key") if saved.is_file() else None
    try:
        return calibration_line(find_calibration(key), suite)
    except DamagedCalibration as exc:
        return f"Calibration: {exc}."
