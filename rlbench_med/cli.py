"""The ``rlbench-med`` command: parses arguments, then calls the library.

Exit codes: 0 success; 1 a job failed (the others' results are kept) or ``data validate``
found problems; 2 a bad request (config, name, data, output folder, tracking store), with a
one-line reason, before anything is written; 130 (SIGINT, Ctrl-C) or 143 (SIGTERM) interrupted:
MLflow runs marked KILLED, results kept. Both signals are handled alike until the process exits.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """examples:
  rlbench-med run --suite climb_vision --algos drpo,grpo --seeds 0,1,2,3
  rlbench-med run --suite climb_vision --algos drpo:k_max=3,grpo --set steps=20 --dry-run
  rlbench-med run --suite climb_vision --executor ray --ray-address auto
  rlbench-med tune --suite climb_vision --algos drpo,grpo --budget 8 --out reports/tune-cv
  rlbench-med run --suite climb_vision --tuned reports/tune-cv
  rlbench-med report --experiment rlbench-med/climb_vision
  rlbench-med compare reports/climb_vision-A reports/climb_vision-B --format latex
  rlbench-med leaderboard --format md
  rlbench-med ui --port 5000
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except where the help already says what the default is (or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default in (None, False, [], ()):
            return text
        return super()._get_help_string(action)


class _Once(argparse.Action):
    """A flag naming one sweep: given twice, it is refused (not silently replaced) and ``compare`` suggested."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice: report takes one sweep; "
                         "`rlbench-med compare SOURCE SOURCE ...` puts several in one report")
        setattr(namespace, self.dest, values)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlbench-med",
        description="Compare RL advantage estimators (PPO/GAE, GRPO, RLOO, ReMax, REINFORCE++, DRPO) "
        "for clinical multimodal diagnosis.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    from rlbench_med import __version__

    parser.add_argument("--version", action="version", version=f"rlbench-med {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="train and evaluate suite x algos x seeds, then write results.csv and the report",
        description="Plan, run and report a sweep. The plan is printed first; --dry-run stops there. "
        "Config precedence: suite/profile defaults < --config FILE < --set key=value.",
        formatter_class=_Formatter,
    )
    run.add_argument("--suite", default=None, metavar=_choices("suite"),
                     help="suite name (see `rlbench-med list suites`); required unless the --config file gives it")
    run.add_argument("--algos", default=None,
                     help="comma-separated estimator specs or sft, e.g. drpo,grpo or drpo:k_max=3,grpo "
                     "(default: the suite's)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds or a range like 0-3 (default: the profile's)")
    run.add_argument("--profile", default=None, metavar=_choices("profile"),
                     help="suite profile: quick (minutes on a CPU) or full (the paper's scale) (default: quick)")
    run.add_argument("--runner", default=None, metavar=_choices("runner"),
                     help="runner: local (PyTorch, CPU/1 GPU) or openrlhf (Ray + vLLM + DeepSpeed) (default: local)")
    run.add_argument("--executor", default=None, choices=("local", "ray"),
                     help="local: jobs side by side in worker processes, one per core (--set workers=N; 1: one after "
                          "another in this process); ray: one Ray task per (algo, seed) (default: local)")
    run.add_argument("--ray-address", default=None, help="address of an existing Ray cluster (default: start a local one)")
    run.add_argument("--data", default=None, metavar="DIR | train=PATH,test=PATH",
                     help="data in the CLIMB / QoQ-Med JSONL format: a folder holding train.jsonl and test.jsonl, "
                     "or explicit files train=PATH,test=PATH[,classes=PATH] (default: generated SynthCLIMB, cached)")
    run.add_argument("--allow-outside-data", action="store_true",
                     help="let media paths of --data (images, videos, time-series, masks) resolve outside the "
                     "folder of their JSONL file (refused by default)")
    run.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<suite>-<timestamp>/)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting; repeatable, e.g. --set steps=20 --set lr=1e-3 (every setting, its type, "
                     "default and meaning: rlbench-med list settings)")
    run.add_argument("--config", type=Path, default=None, metavar="EXPERIMENT.yaml",
                     help="an experiment file (YAML: suite, profile, algos, seeds, runner, settings, algo_settings, data, "
                     "report; see the README), e.g. OUT/experiment.yaml of an earlier run; the flags override it")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                     help="import a module or .py file that registers estimators/suites/runners; repeatable")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out (default: the latest reports/<suite>-*): finished jobs are kept")
    run.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    run.add_argument("--no-reuse", action="store_true",
                     help="train every job, even one the job cache holds (same data, base, config, estimator, seed "
                     "and code); its new result replaces the cached one")
    run.add_argument("--baseline", default=None,
                     help="algorithm of the sweep the report compares every other algorithm against "
                     "(default: grpo, when the sweep has it)")
    run.add_argument("--log-every", type=_positive_int, default=None, metavar="N",
                     help="when stdout is not a terminal (a log file), print a progress line every N steps of a job "
                     "(default: a tenth of its steps)")

    _add_calibrate_parser(sub, run)
    add_list_parser(sub)
    add_completion_parser(sub)

    rep = sub.add_parser(
        "report", help="rebuild a report from MLflow (or from a results folder)", formatter_class=_Formatter,
        description="Rebuild report.md/report.html and figures. By default the data come from MLflow alone "
        "(child runs' eval metrics and predictions artifacts of the latest sweep of --experiment, or of --run-id; "
        "with neither, of the latest rlbench-med sweep in the tracking store); with --results from a run's "
        "output folder.",
    )
    rep.add_argument("--experiment", default=None, action=_Once,
                     help="MLflow experiment, e.g. rlbench-med/climb_vision (default: the one of the latest sweep)")
    rep.add_argument("--run-id", default=None, action=_Once,
                     help="parent (sweep) run id (default: the latest sweep of the experiment, or of the store)")
    rep.add_argument("--results", type=Path, default=None, action=_Once, help="a run's output folder holding results.csv")
    rep.add_argument("--out", type=Path, default=None,
                     help="where to write the report (default: reports/<experiment>-report/ or the --results folder)")
    rep.add_argument("--baseline", default="grpo", help="algorithm every other algorithm is compared against")
    _add_format(rep)

    cmp = sub.add_parser(
        "compare", help="one report across several sweeps of a suite, paired where seeds match",
        formatter_class=_Formatter, description=COMPARE_DESCRIPTION,
    )
    cmp.add_argument("sources", nargs="+", metavar="SOURCE", help=SOURCE_HELP)
    cmp.add_argument("--baseline", default="grpo", help="algorithm every other algorithm is compared against")
    cmp.add_argument("--out", type=Path, default=None,
                     help="where to write the combined report (default: reports/compare-<suite>-<timestamp>/; with "
                     "--format md/html/csv/latex only the tables are printed and no folder is written unless --out is given)")
    _add_format(cmp)

    lb = sub.add_parser(
        "leaderboard", help="algorithms x suites on each suite's primary metric, with intervals and floors",
        formatter_class=_Formatter, description=LEADERBOARD_DESCRIPTION,
    )
    lb.add_argument("sources", nargs="*", metavar="SOURCE",
                    help=SOURCE_HELP + "; sweeps of one suite are combined as compare does (default: the latest "
                    "sweep of every rlbench-med experiment in the tracking store)")
    lb.add_argument("--figure", type=Path, default=None, metavar="FILE.png",
                    help="also write the performance profiles over suites and seeds (a PNG) to this file")
    _add_format(lb)

    ui = sub.add_parser("ui", help="MLflow UI on 127.0.0.1 for the same tracking store", formatter_class=_Formatter)
    ui.add_argument("--port", type=int, default=5000, help="port to listen on")
    ui.add_argument("--workers", type=int, default=1, help="server worker processes")

    data = sub.add_parser("data", help="generate (synth), check (validate) or probe the signal of data folders",
                          formatter_class=_Formatter)
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = dsub.add_parser("synth", help="write SynthCLIMB data of a suite in the export format", formatter_class=_Formatter)
    synth.add_argument("--suite", required=True, metavar=_choices("suite"), help="suite whose data to generate")
    synth.add_argument("--out", type=Path, required=True, help="empty or new folder")
    synth.add_argument("--seed", type=int, default=0, help="generator seed")
    synth.add_argument("--profile", default="quick", metavar=_choices("profile"), help="suite profile (sizes)")
    synth.add_argument("--imbalance", type=float, default=None,
                       help="domain skew exponent: 0 balanced, 1 the catalogue's skew (default: 0.55, as `run`)")
    validate = dsub.add_parser(
        "validate", help="check a data folder; print every problem as file:line: field: message",
        description="Check a data folder (train.jsonl, test.jsonl and the media they point to) or explicit files "
        "train=PATH,test=PATH. Every problem and warning is printed as file:line: field: message (warnings: "
        "duplicate records, test records also in train, a domain contradicting the catalogue or the path, "
        "masks without foreground, classes taken from the answers, records contradicting their dataset's multi-label "
        "declaration); the exit code is 1 when there is a problem, "
        "0 with warnings only.",
        formatter_class=_Formatter,
    )
    validate.add_argument("dir", metavar="DIR | train=PATH,test=PATH", help="folder with train.jsonl and test.jsonl, "
                          "or explicit files")
    validate.add_argument("--allow-outside-data", action="store_true",
                          help="let media paths resolve outside the folder of their JSONL file")
    probe = dsub.add_parser(
        "probe", help="how much each modality and their union explain: a linear probe per task, and the MDE",
        description="Fit a logistic-regression probe per task on each modality's features, on every combination "
        "of modalities and on nothing (the training split), score the validation split (the test split when there is "
        "none) with the suite's metrics, and "
        "print the minimum detectable effect of a paired comparison per domain (see README, Suites and data).",
        formatter_class=_Formatter,
    )
    probe.add_argument("--suite", required=True, metavar=_choices("suite"), help="suite whose data and metrics to use")
    probe.add_argument("--data", type=Path, default=None,
                       help="data folder in the export format (default: the suite's generated SynthCLIMB, cached)")
    probe.add_argument("--profile", default="quick", metavar=_choices("profile"), help="suite profile of the generated data")
    probe.add_argument("--seed-sd", type=float, default=0.03,
                       help="assumed seed-to-seed sd of one algorithm's score (training noise) for the MDE")
    probe.add_argument("--n-seeds", default="1,4", help="comma-separated numbers of seeds to give the MDE for")
    probe.add_argument("--out", type=Path, default=None, help="also write the probe and MDE rows as JSON here")
    add_score_parser(sub)
    add_tune_parser(sub)
    add_tuned_option(run)
    _add_completers(parser)
    return parser


def _add_calibrate_parser(sub: Any, run: argparse.ArgumentParser) -> None:
    cal = sub.add_parser(
        "calibrate", help="can this profile rank estimators? reference estimators vs controls, on the validation split",
        formatter_class=_Formatter, description=CALIBRATE_DESCRIPTION,
    )
    for action in run._actions:  # the sweep flags of `run`, shared (the algorithms are the calibration's own)
        if action.dest not in ("help", "algos", "baseline", "resume"):
            cal._add_action(action)
    cal.add_argument("--reference", default="grpo,rloo",
                     help="comma-separated reference estimators: the standard ones the suite must let learn")


CALIBRATE_DESCRIPTION = """Train the reference estimators (default grpo and rloo) and the controls control:zero (no
signal), control:shuffle (no information) and control:negate (the wrong sign) at the profile's seeds,
then test on the validation split, overall primary metric, Holm across the tests: is each reference
above control:zero, and control:negate below it? The verdict says whether the profile can rank
estimators and how large an effect between two estimators it detects (80% power). It is written to
<out>/calibration.json and calibration.md and kept in the cache, where every report of the same
suite, data, config and code shows it in one line. Finished jobs come from the job cache, as in run."""
SOURCE_HELP = ("an output folder of `rlbench-med run`, an MLflow experiment (its latest sweep) or a sweep run id; "
               "NAME=SOURCE names it in the tables")
COMPARE_DESCRIPTION = """One report across several sweeps of the same suite (output folders and/or MLflow sweeps), with
the statistics of `report`, paired by seed. Sweeps of one setting (the same runner config, and the
same results wherever two ran the same algorithm and seed) are pooled: an algorithm's seeds come
from every sweep that ran it. Otherwise every algorithm is named by its sweep, e.g. `grpo (s1)` and
`grpo (s2)`, and compared with the baseline of its own sweep and with itself in the first sweep.
Sweeps of other suites, or evaluated on other test records, are refused with the reason."""
LEADERBOARD_DESCRIPTION = """Algorithms x suites: each suite's primary metric (overall), the mean over seeds with its 95%
interval, beside `base` and the trivial floors. Rows are sorted by mean rank over the suites. With two
suites or more: the interquartile mean over suites and seeds and the probability of improvement of
each pair, with stratified-bootstrap intervals (--figure adds the performance profiles)."""


def _add_format(parser: argparse.ArgumentParser) -> None:
    from rlbench_med.reports.formats import FORMATS

    parser.add_argument("--format", default="text", choices=FORMATS,
                        help="text: the terminal summary; md, html, csv, latex: only the tables, on stdout, for a "
                        "paper (csv: the first table, numbers unformatted; latex: booktabs)")


def _project_errors() -> tuple[type[BaseException], ...]:
    from rlbench_med.registry import RegistryError
    from rlbench_med.reports.results import ResultsError
    from rlbench_med.reports.stats import ComparisonError
    from rlbench_med.reports.tracking import TrackingError
    from rlbench_med.runners.sweep import SweepError
    from rlbench_med.suites import DataError
    from rlbench_med.suites.media import MediaError
    from rlbench_med.typed_config import ConfigError

    return (ConfigError, RegistryError, DataError, SweepError, ResultsError, TrackingError, ComparisonError, MediaError)


def _console() -> Any:
    """The terminal's console; when the output is not a terminal, an 80-column one (``$COLUMNS`` if set):
    tables are split by columns to fit it, text lines are never cut."""
    from rich.console import Console

    return Console(emoji=False)  # ":zero:" in control:zero is a label, not an emoji code


def _one_line(exc: BaseException) -> str:
    from rlbench_med.suites import DataError

    if isinstance(exc, DataError):
        first = f" (first: {exc.problems[0]})" if exc.problems else ""
        return (f"{len(exc.problems)} problem(s) in data {exc.root}{first}; "
                f"run `rlbench-med data validate {exc.root}` to see all")
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def configure_environment() -> None:
    """Process-wide settings, made before MLflow or numba is imported (Ray workers inherit them).

    MLflow's telemetry is off unless the user sets ``MLFLOW_DISABLE_TELEMETRY=false``; numba's
    compiled K-means is cached under the rlbench-med cache (``NUMBA_CACHE_DIR``), not inside the
    installed package.
    """
    from rlbench_med.runners.base import cache_dir

    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines about creating the store's tables
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    configure_environment()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # when MLflow was imported before main() (tests)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from rlbench_med.runners.sweep import interrupt_on_signals, signal_of

    errors = _project_errors()
    try:
        with interrupt_on_signals():
            if args.command == "run":
                return cmd_run(args)
            if args.command == "calibrate":
                return cmd_calibrate(args)
            if args.command == "list":
                return cmd_list(args)
            if args.command == "report":
                return cmd_report(args)
            if args.command == "compare":
                return cmd_compare(args)
            if args.command == "leaderboard":
                return cmd_leaderboard(args)
            if args.command == "ui":
                return cmd_ui(args)
            if args.command == "score":
                return cmd_score(args)
            if args.command == "tune":
                return cmd_tune(args)
            if args.command == "completion":
                return cmd_completion(args)
            return cmd_data(args)
    except errors as exc:
        print(f"rlbench-med: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a full disk, a file where a folder is needed, ...: one line, no traceback
        where = Path(getattr(args, "out", None) or ".")
        print(f"rlbench-med: error: {_write_error(exc, where)}; the command's inputs are unchanged", file=sys.stderr)
        return EXIT_JOB_FAILED
    except KeyboardInterrupt as exc:
        print("rlbench-med: interrupted", file=sys.stderr)
        return 128 + signal_of(exc)


# --------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from rlbench_med.runners import sweep

    algos = sweep.parse_algos(args.algos) if args.algos is not None else None  # '' is refused, not the default
    return _sweep_command(args, algos, args.baseline, resume=args.resume)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """A sweep of the references and the controls, then the calibration of its validation predictions."""
    from rlbench_med.algorithms.controls import is_control
    from rlbench_med.reports.calibration import CONTROLS, calibrate
    from rlbench_med.runners import sweep
    from rlbench_med.runners.sweep.calibration import calibration_key, store_calibration
    from rlbench_med.typed_config import ConfigError

    references = sweep.parse_algos(args.reference)
    if any(is_control(r) for r in references):
        raise ConfigError(f"--reference {args.reference!r}: the controls are trained anyway; name estimators")

    def after(plan: Any, outcome: Any) -> int:
        if not outcome.results_csv.exists():
            return EXIT_JOB_FAILED
        found = calibrate(plan.out_dir, plan.primary_metric, references)
        doc = {**found.to_json(), "profile": plan.profile}
        (plan.out_dir / "calibration.json").write_text(json.dumps(doc, indent=1, default=str))
        (plan.out_dir / "calibration.md").write_text(found.markdown())
        key = calibration_key(plan)
        if key is not None and not outcome.failures:
            store_calibration(key, doc)
        print(found.markdown().split("\n\n", 2)[1].replace("**", ""))
        for q in found.questions:
            print(f"  {q.algo} − {q.baseline} ({q.family}): {q.diff:+.3f} [{q.low:+.3f}, {q.high:+.3f}]: {q.words}")
        print(f"calibration: {plan.out_dir / 'calibration.md'} (and calibration.json)")
        return EXIT_JOB_FAILED if outcome.failures else EXIT_OK

    return _sweep_command(args, (*references, *CONTROLS), references[0], resume=False, after=after)


def _sweep_command(args: argparse.Namespace, algos: tuple[str, ...] | None, baseline_arg: str | None, *,
                   resume: bool, after: Any = None) -> int:
    """Plan, run and report a sweep (``run``; ``calibrate`` with ``after``, called once the sweep ended)."""
    from rlbench_med.reports.progress import RichProgress
    from rlbench_med.reports.render import print_terminal_table
    from rlbench_med.reports.tracking import experiment_name, open_store
    from rlbench_med.runners import sweep

    tuned = tuned_record(args)
    plan = sweep.build_plan(run_request(args, algos, baseline_arg, resume=resume, tuned=tuned))
    if tuned is not None:
        from rlbench_med.runners.sweep.tuning import check_tuned

        check_tuned(plan, tuned, args.tuned)
    if not args.dry_run:
        sweep.preflight(plan)
    # The store is checked (and, for a real run, created and written once) before anything goes to --out.
    open_store(plan.tracking_uri, None if args.dry_run else experiment_name(plan.suite.name))
    console = _console()
    print(plan.render(), flush=True)
    if args.dry_run:
        if plan.data_problems:
            where = plan.data_source.describe()
            print(f"rlbench-med: error: {plan.data_problems} problem(s) in data {where}, found without opening its "
                  f"media; a run would refuse it: run `rlbench-med data validate {where}` to see them",
                  file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    from rlbench_med.api import run_plan

    try:
        outcome, reports = run_plan(plan, RichProgress(console, log_every=args.log_every), calibration=after is None,
                                    extra_sections=tuned_sections(tuned, getattr(args, "tuned", None), plan.report_baseline))
    except OSError as exc:  # a full disk, a file where a folder is needed, ...: what was written stays
        print(f"rlbench-med: error: {_write_error(exc, plan.out_dir)}; kept: {_kept(plan)}", file=sys.stderr)
        return EXIT_JOB_FAILED
    for report in reports:
        print_terminal_table(report, console, where=f"{report.html} (and report.md, comparisons.csv, figures/)")
    for failure in outcome.failures:
        print(f"job {failure.job.algo} seed {failure.job.seed} failed: {failure.error}", file=sys.stderr)
    reused = sum(r.reused_from is not None for r in outcome.results)
    print(f"results: {outcome.results_csv}  ({outcome.wall_s:.1f} s, {len(outcome.results)} job(s) done"
          + (f", {reused} reused from the job cache" if reused else "") + ")")
    if outcome.report_interrupted:
        print(f"rlbench-med: interrupted while building the report; results.csv is complete: rebuild the report with "
              f"`rlbench-med report --results {plan.out_dir}`", file=sys.stderr)
    elif outcome.interrupted:
        print("rlbench-med: interrupted; finished jobs are kept in results.csv (rerun with --resume)", file=sys.stderr)
    if outcome.interrupted:
        return 128 + (outcome.signum or signal.SIGINT)
    if after is not None:
        return after(plan, outcome)
    return EXIT_JOB_FAILED if outcome.failures else EXIT_OK


def run_request(args: argparse.Namespace, algos: tuple[str, ...] | None = None, baseline: str | None = None, *,
                resume: bool = False, tuned: Any = None) -> Any:
    """The command's flags over the ``--config`` experiment file, as a :class:`~rlbench_med.runners.sweep.SweepRequest`
    (``algos``: parsed ``--algos``, or what ``calibrate`` trains; ``tuned``: the record of ``run --tuned``,
    whose chosen algorithms run when ``--algos`` is not given)."""
    from rlbench_med.runners import sweep
    from rlbench_med.runners.sweep.experiment import merge_request, read_experiment

    experiment = read_experiment(args.config) if args.config is not None else None
    if algos is None and tuned is not None:
        algos = tuple(tuned.chosen)
    return merge_request(
        experiment, suite=args.suite, algos=algos,
        seeds=sweep.parse_seeds(args.seeds) if args.seeds is not None else None,
        profile=args.profile, runner=args.runner, executor=args.executor, ray_address=args.ray_address,
        data=args.data, out=args.out, overrides=sweep.parse_set(args.sets), plugins=tuple(args.plugin),
        resume=resume or None, allow_outside_data=args.allow_outside_data, reuse=not args.no_reuse,
        baseline=baseline, tuned=tuned.tuned_settings() if tuned is not None else None,
    )


#: errno values of a full disk, a quota, and a file-size limit (``ulimit -f``).
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _write_error(exc: OSError, where: Path) -> str:
    """``cannot write PATH: reason``, naming the file when the error does (else ``where``)."""
    path = exc.filename or where
    why = exc.strerror or type(exc).__name__
    if exc.errno in SPACE_ERRNOS:
        why += " (the disk is full, or a quota or file-size limit is reached)"
    return f"cannot write {path}: {why}"


def _kept(plan: Any) -> str:
    """What an interrupted run left in its output folder, and the command that goes on from there."""
    from rlbench_med.runners.base import ResultsError, read_results

    results = plan.out_dir / "results.csv"
    try:
        done = {(r["algo"], r["seed"]) for r in read_results(results)} if results.exists() else set()
    except (ResultsError, OSError):
        done = set()
    finished = [j for j in plan.jobs if (j.algo, j.seed) in done]
    what = (f"{results} with {len(finished)} of {len(plan.jobs)} job(s) and their predictions" if done
            else "no job's results")
    if len(finished) == len(plan.jobs):
        return f"{what}; once there is room, build the report with `rlbench-med report --results {plan.out_dir}`"
    return f"{what}; once there is room, finish with `rlbench-med run --resume --out {plan.out_dir}` (same flags)"


def cmd_list(args: argparse.Namespace) -> int:
    from rlbench_med.registry import load_plugin

    for plugin in args.plugin:
        load_plugin(plugin)
    if args.what == "settings":
        return cmd_list_settings(args)
    if args.what == "algos":
        from rlbench_med.algorithms import list_algorithms, list_controls

        sections = [("", list_algorithms()),
                    ("controls (yardsticks for `rlbench-med calibrate`; never defaults):", list_controls())]
    elif args.what == "rewards":
        from rlbench_med.suites.rewards import list_rewards

        sections = [("", list_rewards())]
    else:
        from rlbench_med.suites import get_suite, list_suites

        sections = [("", [(name, get_suite(name).description) for name in list_suites()])]
    width = max(len(n) for _, items in sections for n, _ in items)
    for heading, items in sections:
        if heading and items:
            print(f"\n{heading}")
        for name, description in items:
            print(f"{name:<{width}}  {description}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# discoverability: `list settings`, choices in --help, shell completion
# --------------------------------------------------------------------------------------------
def add_list_parser(sub: Any) -> None:
    lst = sub.add_parser(
        "list", help="list registered algorithms, suites, rewards, or every setting with its meaning",
        formatter_class=_Formatter,
        description="algos, suites, rewards: the registered names with a line each. settings: every setting "
        "`run --set` (and the experiment file) takes, with its type, default, allowed values and meaning: the "
        "runner's (--runner), then the sweep's (data.*, primary_metric); with --suite, the suite profile's "
        "values beside the defaults.",
    )
    lst.add_argument("what", choices=("algos", "suites", "rewards", "settings"), help="what to list")
    lst.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE", help="load a plugin first")
    lst.add_argument("--runner", default="local", metavar=_choices("runner"), help="settings: whose runner settings")
    lst.add_argument("--suite", default=None, metavar=_choices("suite"),
                     help="settings: show this suite profile's values and generator sizes")
    lst.add_argument("--profile", default="quick", metavar=_choices("profile"), help="settings: the suite's profile")


def cmd_list_settings(args: argparse.Namespace) -> int:
    """Every setting: name, type, default (and the suite profile's value), allowed values, help."""
    import textwrap

    from rlbench_med.runners.base import RUNNERS
    from rlbench_med.runners.sweep.settings import sweep_setting_docs
    from rlbench_med.typed_config import ConfigError, describe_settings

    runner = RUNNERS.get(args.runner)
    profile_run: dict[str, Any] = {}
    sizes = None
    if args.suite is not None:
        from rlbench_med.suites import get_suite

        suite = get_suite(args.suite)
        if args.profile not in suite.profiles:
            raise ConfigError(f"--profile {args.profile!r}: suite {suite.name} has profiles {', '.join(suite.profiles)}")
        profile_run = dict(suite.run_overrides(args.profile))
        sizes = suite.data_params(args.profile) if suite.data != "none" else {}
    sections = [(f"runner settings ({runner.name}: {runner.config_cls.__name__})", describe_settings(runner.config_cls)),
                ("sweep settings (data: generated SynthCLIMB only; report)", sweep_setting_docs(sizes))]
    width = min(100, max(_console().width, 60))
    for title, docs in sections:
        print(f"{title}:")
        for doc in docs:
            line = f"  {doc.name}  {doc.type}, default {doc.default!r}"
            if doc.name in profile_run and profile_run[doc.name] != doc.default:
                line += f"; {args.suite} {args.profile}: {profile_run[doc.name]!r}"
            if doc.allowed:
                line += f"; one of {', '.join(doc.allowed)}"
            print(line)
            print(textwrap.fill(doc.help, width=width, initial_indent="      ", subsequent_indent="      "))
        print()
    print("Set one with `rlbench-med run --set KEY=VALUE`, or under settings: / data: / report: of an experiment "
          "file (`run --config FILE`).")
    return EXIT_OK


def _names(kind: str) -> list[str]:
    """The registered names a flag takes (what --help shows and the shell completes); plugins may add more."""
    if kind == "suite":
        from rlbench_med.suites import list_suites

        return list_suites()
    if kind == "profile":
        from rlbench_med.suites import get_suite, list_suites

        return sorted({p for name in list_suites() for p in get_suite(name).profiles})
    if kind == "runner":
        from rlbench_med.runners.base import RUNNERS
        from rlbench_med.runners.sweep.request import SUITE_RUNNERS

        return [n for n in RUNNERS.names() if n not in SUITE_RUNNERS.values()]
    from rlbench_med.suites.rewards import REWARD_FUNCTIONS

    return REWARD_FUNCTIONS.names()


def _choices(kind: str) -> str:
    """``{a,b,c}``: a flag's metavar naming its registered values. Not argparse ``choices``: a plugin loaded
    by ``--plugin`` may add names after parsing, and the registry's refusal says "did you mean"."""
    return "{" + ",".join(_names(kind)) + "}"


#: Flags (by dest) whose values are registry names, completed by the shell.
_COMPLETED = {"suite": "suite", "profile": "profile", "runner": "runner", "reward": "reward"}


def _add_completers(parser: argparse.ArgumentParser) -> None:
    """Give each registry-named flag an argcomplete completer (its names), recursively over sub-commands."""
    from argcomplete.completers import ChoicesCompleter

    for action in parser._actions:  # argparse exposes no public iterator over its actions
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _add_completers(child)
        elif action.dest in _COMPLETED and action.option_strings:
            action.completer = ChoicesCompleter(_names(_COMPLETED[action.dest]))  # type: ignore[attr-defined]


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (argcomplete sets ``_ARGCOMPLETE``), else return at once."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)


def add_completion_parser(sub: Any) -> None:
    comp = sub.add_parser(
        "completion", help="print the shell code that completes rlbench-med's commands, flags and names",
        formatter_class=_Formatter,
        description="Tab completion of commands, flags, suites, profiles, runners and rewards (argcomplete). "
        "Enable it for the current shell with  eval \"$(rlbench-med completion bash)\"  (or zsh, fish), or "
        "add that line to ~/.bashrc.",
    )
    comp.add_argument("shell", nargs="?", default="bash", choices=("bash", "zsh", "fish", "tcsh"), help="your shell")


def cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete

    sys.stdout.write(argcomplete.shellcode(["rlbench-med"], shell=args.shell))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from rlbench_med.api import calibration_of
    from rlbench_med.reports.report import make_report
    from rlbench_med.reports.results import ResultsError, load_results
    from rlbench_med.reports.sweeps import parent_config
    from rlbench_med.reports.tracking import find_parent_run, latest_sweep, rebuild_results, store_errors
    from rlbench_med.runners.base import FAILED_CSV, read_failed
    from rlbench_med.runners.sweep import ResultsWriter, tracking_uri

    if args.results and (args.experiment or args.run_id):
        print("rlbench-med: error: give --results DIR or --experiment NAME / --run-id ID, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.results:
        rows = load_results(args.results / "results.csv")
        if not rows and not read_failed(args.results / FAILED_CSV):
            raise ResultsError(f"{args.results / 'results.csv'} has no rows (no job of that run finished); nothing to report")
        report = make_report(args.out or args.results, rows=rows, baseline=args.baseline, run_dir=args.results,
                             source=str(args.results / "results.csv"),
                             calibration=calibration_of(args.results, str(rows[0]["suite"]) if rows else ""))
    else:
        uri = tracking_uri()
        with store_errors(uri):
            if args.experiment:
                experiment = args.experiment
                parent = find_parent_run(uri, experiment, args.run_id)
            else:
                skipped: list[str] = []
                try:
                    experiment, parent = latest_sweep(uri, args.run_id, skipped)
                finally:
                    for note in skipped:
                        print(f"rlbench-med: {note}", file=sys.stderr)
                what = f"run {parent.info.run_id}" if args.run_id else f"the latest sweep, run {parent.info.run_id}"
                name = parent.info.run_name or parent.data.tags.get("mlflow.runName", "")
                print(f"rlbench-med: no --experiment given; using experiment {experiment}, {what}"
                      + (f" ({name})" if name else ""), file=sys.stderr)
            out = args.out or Path("reports") / f"{experiment.replace('/', '_')}-report"
            rows, curves = rebuild_results(uri, parent, out)
            parent_config(uri, parent, out)  # config.yaml: the primary metric and the calibration key
        ResultsWriter(out / "results.csv", rows).flush()
        report = make_report(out, rows=rows, curves=curves, baseline=args.baseline,
                             calibration=calibration_of(out, experiment.removeprefix("rlbench-med/")),
                             source=f"MLflow {uri}, experiment {experiment}, run {parent.info.run_id}")
    _print_report(report, args.format)
    return EXIT_OK


def _print_report(report: Any, fmt: str, kept: bool = True) -> None:
    """The terminal summary (``text``), or only the report's paper tables in ``fmt`` on stdout (and where the
    report's files are, when they are ``kept``)."""
    from rlbench_med.reports.formats import render
    from rlbench_med.reports.render import paper_tables, print_terminal_table

    for algo, seed, reason in report.failed:  # (failed.csv of the folder; a sweep's run printed them as they failed)
        print(f"job {algo} seed {seed} failed: {reason}", file=sys.stderr)
    if fmt == "text":
        print_terminal_table(report, _console(), where=str(report.html))
        return
    sys.stdout.write(render(paper_tables(report), fmt, label=f"tab:{report.suite}"))
    if kept:
        print(f"report: {report.html}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from rlbench_med.reports.compare import compare_sweeps
    from rlbench_med.reports.sweeps import load_sweeps
    from rlbench_med.reports.tracking import store_errors
    from rlbench_med.runners.sweep import tracking_uri

    uri = tracking_uri()
    with tempfile.TemporaryDirectory(prefix="rlbench-compare-") as scratch:
        with store_errors(uri):
            sweeps = load_sweeps(args.sources, uri, Path(scratch))
        out = args.out or Path("reports") / f"compare-{sweeps[0].suite}-{time.strftime('%Y%m%d-%H%M%S')}"
        if args.format != "text" and args.out is None:
            out = Path(scratch) / "report"  # only the tables are asked for: no report folder is left behind
        for sweep in sweeps:
            print(f"{sweep.name}: {sweep.origin}", file=sys.stderr)
        report = compare_sweeps(sweeps, out, baseline=args.baseline)
        _print_report(report, args.format, kept=args.format == "text" or args.out is not None)
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    import tempfile

    from rlbench_med.reports import figures
    from rlbench_med.reports.formats import render, rich_parts
    from rlbench_med.reports.leaderboard import across_tables, board_table, make_board
    from rlbench_med.reports.sweeps import load_sweeps
    from rlbench_med.reports.tracking import TrackingError, latest_sweeps, store_errors
    from rlbench_med.runners.sweep import tracking_uri

    uri = tracking_uri()
    sources = list(args.sources)
    if not sources:
        skipped: list[str] = []
        with store_errors(uri):
            sources = [run.info.run_id for run in latest_sweeps(uri, skipped)]
        for note in skipped:
            print(f"rlbench-med: {note}", file=sys.stderr)
        if not sources:
            which = "with a finished job " if skipped else ""
            raise TrackingError(f"no rlbench-med sweep {which}in {uri}; run `rlbench-med run` first or give output folders")
    with tempfile.TemporaryDirectory(prefix="rlbench-leaderboard-") as scratch:
        with store_errors(uri):
            sweeps = load_sweeps(sources, uri, Path(scratch))
        for sweep in sweeps:
            print(f"{sweep.suite}: {sweep.name} = {sweep.origin}", file=sys.stderr)
        board = make_board(sweeps, Path(scratch))
    tables = [board_table(board), *across_tables(board)]
    if args.figure is not None:
        fig = figures.performance_profiles(board.runs())
        if fig is not None:
            print(f"figure: {figures.save(fig, args.figure)}", file=sys.stderr)
    if args.format == "text":
        console = _console()
        for table in tables:
            for part in rich_parts(table, console.width):
                console.print(part, soft_wrap=True)
        for note in board.notes:
            console.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
        return EXIT_OK
    sys.stdout.write(render(tables, args.format, label="tab:leaderboard"))
    for note in board.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from rlbench_med.runners.sweep import tracking_uri

    uri = tracking_uri()
    command = ui_command(uri, args.port, args.workers)
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    # Browsing runs needs no server-side job workers (they start several extra processes).
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # MLflow's server imports a module Starlette has deprecated; the warning is MLflow's to act on, not the user's.
    os.environ["PYTHONWARNINGS"] = ",".join(
        w for w in (os.environ.get("PYTHONWARNINGS"), "ignore:starlette.middleware.wsgi is deprecated") if w)
    # Replace this process with the server, so Ctrl-C and SIGTERM reach it directly.
    os.execv(sys.executable, command)
    return EXIT_OK  # not reached


def ui_command(uri: str, port: int, workers: int) -> list[str]:
    """MLflow's server with the rlbench-med app (its UI opens experiments on their training runs), on
    127.0.0.1 only. The hosts it answers are given explicitly: MLflow's default would print a hint to
    use ``--host 0.0.0.0``, a flag ``rlbench-med ui`` does not have."""
    from rlbench_med.reports.ui import APP_NAME

    hosts = f"127.0.0.1:{port},localhost:{port},127.0.0.1,localhost"
    return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--backend-store-uri", uri, "--registry-store-uri", uri,
            "--allowed-hosts", hosts, "--app-name", APP_NAME]


def cmd_data(args: argparse.Namespace) -> int:
    from rlbench_med.suites import DataSource, check_data, get_suite, synth

    if args.data_command == "probe":
        return cmd_probe(args)
    if args.data_command == "validate":
        try:
            source = DataSource.parse(args.dir, allow_outside=args.allow_outside_data)
        except ValueError as exc:
            print(f"rlbench-med: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if source.folder is not None and not source.folder.is_dir():
            print(f"{args.dir}:0: dir: no such folder; give a folder holding train.jsonl and test.jsonl")
            return EXIT_JOB_FAILED
        check = check_data(source)
        for finding in check.findings():
            print(finding)
        counts = "; ".join(
            f"{split} " + ", ".join(f"{d} {n}" for d, n in sorted(per.items())) for split, per in check.records.items()
        )
        print(f"{source.describe()}: {len(check.problems)} problem(s), {len(check.warnings)} warning(s); "
              f"records per domain: {counts}", file=sys.stderr if check.problems else sys.stdout)
        return EXIT_JOB_FAILED if check.problems else EXIT_OK
    suite = get_suite(args.suite)
    if args.profile not in suite.profiles:
        from rlbench_med.typed_config import ConfigError

        raise ConfigError(f"--profile {args.profile!r}: suite {suite.name} has profiles {', '.join(suite.profiles)}")
    from rlbench_med.runners.sweep.settings import DataSettings

    settings = DataSettings(seed=args.seed, **({} if args.imbalance is None else {"imbalance": args.imbalance}))
    try:
        summary = synth.generate(suite.name, args.out, seed=settings.seed, profile=args.profile,
                                 imbalance=settings.imbalance)
    except FileExistsError as exc:
        print(f"rlbench-med: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    counts = summary.get("counts") or {}
    sizes = ", ".join(f"{split} {sum(per.values())}" for split, per in counts.items() if isinstance(per, dict))
    print(f"wrote {suite.name} ({args.profile}, seed {args.seed}) to {args.out}" + (f": {sizes} samples" if sizes else ""))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# score: any model's responses -> reward components, metrics, report
# --------------------------------------------------------------------------------------------
SCORE_DESCRIPTION = """Score a model's responses to the test records of a data folder, as a run evaluates its own
policies: per-record reward components (accuracy, iou, format, length, total) in scores.jsonl,
the suite's metrics in results.csv (algo = the responses file's stem, seed 0), predictions and the
report.

Responses: one JSON object per line, {"id": ID, "response": TEXT} or {"index": N, "response": TEXT}.
"id" matches the id field of a test record; "index" is the record's 0-based position among the
records of test.jsonl (its line number - 1 when the file has no blank lines). Every test record
needs exactly one response (or pass --allow-missing). Bad lines are reported as
file:line: field: message (exit 2)."""


def add_score_parser(sub: Any) -> None:
    score = sub.add_parser("score", help="score any model's responses to a data folder's test records",
                           description=SCORE_DESCRIPTION, formatter_class=_Formatter)
    score.add_argument("--data", type=Path, required=True, help="data folder (train.jsonl, test.jsonl) the responses answer")
    score.add_argument("--responses", type=Path, required=True, help="JSONL of {id or index, response}")
    score.add_argument("--reward", default="paper", metavar=_choices("reward"),
                       help="reward function: paper (the paper's components as this project defines them), "
                       "release (the QoQ-Med release's medical_compute_score) or one a --plugin registers")
    score.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                       help="import a module or .py file that registers a reward function; repeatable")
    score.add_argument("--reward-weights", default="auto",
                       help="auto (the reward's own), paper (0.6,0.2,0.1,0.1) or 'acc,iou,format,length' numbers")
    score.add_argument("--box-frame", default="original",
                       help="frame of the responses' box coordinates: original (image pixels, this project's "
                       "prompts) or release (the release's processed image, for a model trained by the QoQ-Med release)")
    score.add_argument("--algo", default=None, help="algo name in results.csv (default: the responses file's stem)")
    score.add_argument("--suite", default=None,
                       help="suite name in results.csv (default: the one in DIR/synth.json, else the folder's name)")
    score.add_argument("--allow-missing", action="store_true",
                       help="score the answered test records only (the summary line says how many)")
    score.add_argument("--out", type=Path, default=None,
                       help="output folder (default: reports/score-<responses stem>-<timestamp>/)")


def cmd_score(args: argparse.Namespace) -> int:
    import time

    from rlbench_med.reports.render import print_terminal_table
    from rlbench_med.reports.score import ScoreError, score_responses, write_score
    from rlbench_med.suites.rewards import BOX_FRAMES, reward_settings_problem
    from rlbench_med.typed_config import ConfigError

    from rlbench_med.registry import load_plugin

    for plugin in args.plugin:
        load_plugin(plugin)
    problem = reward_settings_problem(args.reward, args.reward_weights, "max")
    if problem is not None:
        raise ConfigError(f"--{problem[0].replace('_', '-')}: {problem[1]}")
    if args.box_frame not in BOX_FRAMES:
        raise ConfigError(f"--box-frame: {args.box_frame!r} is not one of {', '.join(BOX_FRAMES)}")
    try:
        outcome = score_responses(args.data, args.responses, reward=args.reward, weights=args.reward_weights,
                                  box_frame=args.box_frame, algo=args.algo, suite=args.suite,
                                  allow_missing=args.allow_missing)
    except ScoreError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"rlbench-med: error: {len(exc.problems)} problem(s) in {args.responses}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or Path("reports") / f"score-{args.responses.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        paths, report = write_score(outcome, out)
    except FileExistsError as exc:
        print(f"rlbench-med: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print_terminal_table(report, _console(), where=str(report.html))
    print(f"scored {len(outcome.scores)} of {outcome.n_records} test records with reward={args.reward}: "
          f"{paths['scores']}, {paths['results']}")
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    import json

    from rlbench_med.runners import sweep
    from rlbench_med.runners.sweep.datacache import ensure_data
    from rlbench_med.suites import get_suite
    from rlbench_med.suites.power import mde_rows, render_mde
    from rlbench_med.reports.formats import Table, cells, rich_parts
    from rlbench_med.suites.probe import order_violations, probe_data, probe_rows
    from rlbench_med.typed_config import ConfigError

    try:
        seed_counts = [int(k) for k in args.n_seeds.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(f"--n-seeds {args.n_seeds!r}: give comma-separated whole numbers, e.g. 1,4") from None
    if not seed_counts or min(seed_counts) < 1:
        raise ConfigError(f"--n-seeds {args.n_seeds!r}: every number of seeds must be >= 1")
    if args.seed_sd < 0:
        raise ConfigError(f"--seed-sd {args.seed_sd}: must be >= 0")
    suite = get_suite(args.suite)
    if suite.data == "none":
        raise ConfigError(f"suite {suite.name} has no data to probe")
    plan = sweep.build_plan(sweep.SweepRequest(suite=suite.name, profile=args.profile, data=args.data))
    data_dir = ensure_data(plan)
    print(f"probe of {suite.name} on {data_dir}: logistic regression per task on each input set's features "
          "(training split), the test split scored with the suite's metrics", flush=True)
    from rlbench_med.suites.data import load_data
    from rlbench_med.suites.metrics import DESCRIPTIVE_METRICS

    result = probe_data(load_data(plan.data_source))  # the suite's own records, as its runs see them
    ordered = [suite.primary_metric, *(m for m in suite.metrics if m != suite.primary_metric)]
    metrics = [m for m in ordered if m not in DESCRIPTIVE_METRICS and any(r["metric"] == m for r in result.rows)]
    console = _console()
    for metric in metrics:
        header, rows = probe_rows(result, metric)
        table = Table(f"probe: {metric} on the test split, per input set", header, cells(rows), keys=2,
                      footer=int(rows[-1][0] == "overall"))
        for part in rich_parts(table, console.width):
            console.print(part, soft_wrap=True)
    violations = order_violations(result, metrics[0])
    union = result.inputs[-1]
    order = f"{union} > each modality > none" if len(result.modalities) > 1 else f"{union} > none"
    print(f"order on {metrics[0]} ({order}, every domain): "
          + ("holds" if not violations else "VIOLATED: " + "; ".join(violations)))
    mde = mde_rows(list(result.records.values()), metrics, seed_counts, args.seed_sd)
    print(render_mde(mde, args.seed_sd))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"suite": suite.name, "data": str(data_dir), "modalities": list(result.modalities),
                   "inputs": list(result.inputs), "rows": result.rows, "order_violations": violations, "mde": mde}
        args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# tune: every algorithm tuned with the same budget on the validation split; run --tuned
# --------------------------------------------------------------------------------------------
TUNE_DESCRIPTION = """Give every algorithm the same tuning budget: N trials of the same settings (trial 0 is the
shared setting `run` uses, the others Ray Tune's random search of --space), each trained at the
same seeds and scored on the validation split's overall primary metric with the report's own
metrics. The test split is neither answered nor scored. Writes validation.csv, trials.csv,
tune.json, tuned/<algo>.yaml (one file per algorithm that `run --config` accepts), report.md and
report.html; `rlbench-med run --tuned DIR` then trains every algorithm at its tuned setting beside
the shared one and scores the test split once. Exit codes as for run."""
SPACE_HELP = ("comma-separated settings to search: NAME (its default range), NAME=LOW:HIGH[:log|:linear] or "
              "NAME=A|B|C, e.g. lr,kl_coef=0.01:0.3,n_rollouts=4|8 (defaults: lr log 1e-4..1e-2, kl_coef log "
              "1e-3..0.3, temperature 0.7..1.3, clip_low, clip_high, n_rollouts, epochs, ...; see README)")


def add_tune_parser(sub: Any) -> None:
    """``rlbench-med tune``: the flags of ``run`` that apply, and the budget, space and search seed."""
    from rlbench_med.runners.sweep.tuning import DEFAULT_SPACE, TUNE_SEED_OFFSET

    tune = sub.add_parser("tune", help="tune every algorithm with the same budget on the validation split",
                          description=TUNE_DESCRIPTION, formatter_class=_Formatter)
    tune.add_argument("--suite", required=True, help="suite name (see `rlbench-med list suites`)")
    tune.add_argument("--algos", default=None, help="comma-separated estimator specs, as for run (default: the suite's)")
    tune.add_argument("--budget", type=_positive_int, required=True, metavar="N",
                      help="trials per algorithm, trial 0 (the shared setting) included")
    tune.add_argument("--space", default=DEFAULT_SPACE, help=SPACE_HELP)
    tune.add_argument("--search-seed", type=int, default=0, help="seed of the random search (the same trials for it)")
    tune.add_argument("--seeds", default=None,
                      help=f"training seeds of every trial (default: the profile's plus {TUNE_SEED_OFFSET}, so that "
                      "run --tuned, at the profile's seeds, does not repeat the trial that won)")
    tune.add_argument("--profile", default="quick", help="suite profile, as for run")
    tune.add_argument("--runner", default="local", help="runner; it must leave the test split out of a job (local)")
    tune.add_argument("--executor", default="local", choices=("local", "ray"), help="as for run")
    tune.add_argument("--ray-address", default=None, help="as for run")
    tune.add_argument("--data", default=None, metavar="DIR | train=PATH,test=PATH", help="as for run")
    tune.add_argument("--allow-outside-data", action="store_true", help="as for run")
    tune.add_argument("--out", type=Path, default=None, help="output folder (default: reports/tune-<suite>-<timestamp>/)")
    tune.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                      help="override one setting of every trial, as for run")
    tune.add_argument("--config", type=Path, default=None, help="YAML file of runner config fields, as for run")
    tune.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE", help="as for run")
    tune.add_argument("--resume", action="store_true",
                      help="continue the tune in --out (default: the latest reports/tune-<suite>-*)")
    tune.add_argument("--dry-run", action="store_true", help="print the trials and the plan, and stop")
    tune.add_argument("--no-reuse", action="store_true", help="train every trial, even one the job cache holds")
    tune.add_argument("--log-every", type=_positive_int, default=None, metavar="N", help="as for run")


def add_tuned_option(run: argparse.ArgumentParser) -> None:
    """``run --tuned DIR``."""
    run.add_argument("--tuned", type=Path, default=None, metavar="DIR",
                     help="the output folder of `rlbench-med tune`: every algorithm (default: the tuned ones) also "
                     "trains at its tuned setting, labelled '<algo> (tuned)', and the report compares both")


def tuned_record(args: argparse.Namespace) -> Any:
    """The tune record of ``run --tuned DIR`` (None without the flag)."""
    if getattr(args, "tuned", None) is None:  # (calibrate has no --tuned)
        return None
    from rlbench_med.runners.sweep.tuning import read_record

    return read_record(args.tuned)


def tuned_sections(record: Any, folder: Path | None, baseline: str) -> Any:
    """The report's tuning section builder for ``run --tuned`` (None without it)."""
    if record is None:
        return None
    from rlbench_med.reports.tuning import tuned_sections as build

    return build(record, folder, baseline)


def cmd_tune(args: argparse.Namespace) -> int:
    from rlbench_med.reports.progress import RichProgress
    from rlbench_med.reports.tracking import MLflowSweepTracking, experiment_name, open_store
    from rlbench_med.reports.tuning import finish_tune, log_tune_summary, summary_lines
    from rlbench_med.runners import sweep
    from rlbench_med.runners.sweep.tuning import tune_plan

    request = run_request(args, sweep.parse_algos(args.algos) if args.algos is not None else None, resume=args.resume)
    tune = tune_plan(request, budget=args.budget, space=args.space, search_seed=args.search_seed)
    plan = tune.plan
    if not args.dry_run:
        sweep.preflight(plan)
    open_store(plan.tracking_uri, None if args.dry_run else experiment_name(plan.suite.name))
    console = _console()
    print(tune.render(), flush=True)
    if args.dry_run:
        return EXIT_OK
    tracking = MLflowSweepTracking(plan.tracking_uri, role="tune")

    def build_report(outcome: sweep.SweepOutcome) -> list[Path]:
        tune.record.data_fingerprint = plan.data_fingerprint()
        _, files = finish_tune(plan.out_dir, tune.record)
        log_tune_summary(plan.tracking_uri, tracking.parent_id, tune.record)
        return files

    try:
        outcome = sweep.run_sweep(plan, tracking, RichProgress(console, log_every=args.log_every), build_report)
    except OSError as exc:
        print(f"rlbench-med: error: {_write_error(exc, plan.out_dir)}; finished trials are kept in "
              f"{plan.results_csv}: finish with `rlbench-med tune ... --resume --out {plan.out_dir}`", file=sys.stderr)
        return EXIT_JOB_FAILED
    for failure in outcome.failures:
        print(f"trial {failure.job.algo} seed {failure.job.seed} failed: {failure.error}", file=sys.stderr)
    if tune.record.chosen:
        for line in summary_lines(tune.record):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        print(f"tuned settings: {plan.out_dir / 'tuned'}; report: {plan.out_dir / 'report.html'}; next: "
              f"rlbench-med run --suite {plan.suite.name} --profile {plan.profile} --tuned {plan.out_dir}")
    print(f"validation: {plan.results_csv}  ({outcome.wall_s:.1f} s, {len(outcome.results)} job(s) done)")
    if outcome.interrupted:
        print(f"rlbench-med: interrupted; finished trials are kept (rerun with --resume --out {plan.out_dir})",
              file=sys.stderr)
        return 128 + (outcome.signum or signal.SIGINT)
    return EXIT_JOB_FAILED if outcome.failures or not tune.record.chosen else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
