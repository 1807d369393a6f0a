"""A sweep: one suite x algorithms x seeds, planned, then run by an executor into one output folder.

Read in this order:

- :mod:`.request`: what the user asked for (``SweepRequest``) and the flag parsing / config
  resolution (runner defaults < suite profile < ``--config`` < ``--set``);
- :mod:`.experiment`: the experiment file (``run --config``, ``<out>/experiment.yaml``): its schema,
  reading it, merging it with the flags, writing it back;
- :mod:`.planner`: ``build_plan(request)`` resolves everything into a :class:`~.plan.Plan` without
  running anything; ``Plan.render()`` is what ``rlbench-med run`` prints first. :mod:`.plan`
  holds ``Plan`` below every module that reads it, so the sweep's imports run one way;
- :mod:`.lifecycle`: ``run_sweep(plan, tracking, progress, report)``, the whole life of a sweep
  in one place (data, runs opened, shared work, jobs, report, runs closed in every exit path);
- :mod:`.signals`: SIGINT and SIGTERM handled alike until exit;
- :mod:`.datacache`: ``--data`` validated or SynthCLIMB generated into the cache;
- :mod:`.executors`: the ``local`` (sequential, in-process) and ``ray`` executors;
- :mod:`.outcome`: the sweep's outcome and how a finished or failed job is recorded;
- :mod:`.results`: results.csv, config.yaml and predictions/index.json in the output folder;
- :mod:`.tracking` and :mod:`.progress`: the protocols the CLI implements (MLflow, rich).
"""

from rlbench_med.runners.sweep.datacache import DATA_SEED, data_cache_path, ensure_data
from rlbench_med.runners.sweep.lifecycle import LOCK_NAME, run_sweep
from rlbench_med.runners.sweep.outcome import JobFailure, SweepOutcome
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.planner import (
    build_plan,
    default_out_dir,
    latest_out_dir,
    preflight,
)
from rlbench_med.runners.sweep.progress import NullProgress, Progress
from rlbench_med.runners.sweep.request import (
    EXECUTORS,
    SFT,
    SUITE_RUNNERS,
    SweepError,
    SweepRequest,
    parse_algos,
    parse_seeds,
    parse_set,
    resolve_config,
)
from rlbench_med.runners.sweep.experiment import EXPERIMENT_FILE, Experiment, merge_request, read_experiment
from rlbench_med.runners.sweep.results import (
    ResultsWriter,
    read_results,
    save_config,
    write_predictions_index,
)
from rlbench_med.runners.sweep.signals import Interrupted, interrupt_on_signals, signal_of
from rlbench_med.runners.sweep.tracking import (
    ChildRun,
    NullSweepTracking,
    SweepTracking,
    absolute_uri,
    tracking_uri,
)

__all__ = [
    "DATA_SEED",
    "EXECUTORS",
    "LOCK_NAME",
    "SFT",
    "SUITE_RUNNERS",
    "ChildRun",
    "Interrupted",
    "JobFailure",
    "NullProgress",
    "NullSweepTracking",
    "Plan",
    "Progress",
    "ResultsWriter",
    "SweepError",
    "SweepOutcome",
    "SweepRequest",
    "SweepTracking",
    "absolute_uri",
    "build_plan",
    "data_cache_path",
    "default_out_dir",
    "ensure_data",
    "interrupt_on_signals",
    "latest_out_dir",
    "preflight",
    "parse_algos",
    "parse_seeds",
    "parse_set",
    "read_experiment",
    "merge_request",
    "Experiment",
    "EXPERIMENT_FILE",
    "read_results",
    "resolve_config",
    "run_sweep",
    "save_config",
    "signal_of",
    "tracking_uri",
    "write_predictions_index",
]
