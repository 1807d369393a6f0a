"""The experiment file: one YAML document that states a whole sweep, nested by section.

``rlbench-med run --config FILE`` accepts it whole; the command's own flags (``--suite``,
``--algos``, ``--seeds``, ...) override the file's values and ``--set key=value`` overrides its
settings. Every run writes one back as ``<out>/experiment.yaml``, so
``rlbench-med run --config OUT/experiment.yaml`` runs the same sweep again: the same jobs with the
same job-cache keys (they are reused from the job cache, or trained again with ``--no-reuse``).

Schema (every key optional except ``suite``, which ``--suite`` may give instead)::

    suite: climb_vision              # rlbench-med list suites
    profile: quick                   # quick | full
    algos: [drpo, grpo]              # estimator specs or sft (a list, or "drpo,grpo")
    seeds: [0, 1, 2, 3]              # a list, or "0-3"
    runner: local                    # local | openrlhf
    executor: local                  # local | ray
    ray_address: null                # an existing Ray cluster (executor ray)
    plugins: [my_estimator.py]       # modules or .py files that register estimators, rewards, ...
    settings:                        # runner settings (rlbench-med list settings)
      steps: 20
      lr: 0.001
    algo_settings:                   # runner settings of one algorithm, over `settings`
      drpo: {lr: 0.0003}
    data:
      source: null                   # a folder, "train=PATH,test=PATH[,classes=PATH]", or null: SynthCLIMB
      allow_outside: false           # media paths may leave the data folder
      seed: 0                        # SynthCLIMB's generator settings (data.<key> of --set)
      imbalance: 0.55
      min_domain_train: 346          # one of the profile's generator sizes
    report:
      primary_metric: f1_strict      # the metric the report leads with
      baseline: grpo                 # what every other algorithm is compared against

Relative paths (``data.source``, plugin files) are relative to the file's folder; the file a run
writes holds absolute ones. ``settings`` and the generator keys of ``data`` take the values
``--set`` takes (``--set steps=20``, ``--set data.seed=3``, ``--set primary_metric=exact``), so one
spelling works in both places. A file without any of the keys above (``steps: 20`` alone) is read
as its ``settings``: the flat form older versions accepted; a run's ``config.yaml`` is read the same
way (its ``config`` mapping).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rlbench_med.registry import did_you_mean
from rlbench_med.runners.sweep.request import (
    EXECUTORS,
    SweepRequest,
    parse_algos,
    parse_seeds,
    read_yaml,
)
from rlbench_med.runners.sweep.settings import DATA_PREFIX, REPORT_KEYS
from rlbench_med.typed_config import ConfigError

if TYPE_CHECKING:
    from rlbench_med.runners.sweep.plan import Plan

#: The file every run writes into its output folder.
EXPERIMENT_FILE = "experiment.yaml"
#: Top-level keys of an experiment file.
TOP_KEYS = ("suite", "profile", "algos", "seeds", "runner", "executor", "ray_address", "plugins", "settings",
            "algo_settings", "data", "report")
#: Keys of the ``data`` section that are not generator settings.
DATA_KEYS = ("source", "allow_outside")
#: Keys of the ``report`` section besides the report settings of ``--set`` (``primary_metric``).
REPORT_EXTRA_KEYS = ("baseline",)


@dataclass(frozen=True)
class Experiment:
    """An experiment file, read; ``None`` where the file leaves a value to the flags or the suite.

    ``settings`` is flat, keyed as ``--set`` keys are: runner fields, ``data.<key>`` and
    ``primary_metric`` (values as the file gives them; the plan converts and checks them).
    """

    suite: str | None = None
    profile: str | None = None
    algos: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    runner: str | None = None
    executor: str | None = None
    ray_address: str | None = None
    plugins: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    algo_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    data: str | None = None
    allow_outside_data: bool = False
    baseline: str | None = None
    path: Path | None = None


class _Reader:
    """Reads the YAML document with each mapping key's line, so every error says ``FILE:LINE: key: ...``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.doc, self.lines = read_yaml(self.path)

    def error(self, where: tuple[str, ...], message: str) -> ConfigError:
        line = self.lines.get(where)
        at = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"--config {at}: {'.'.join(where)}: {message}")

    def mapping(self, where: tuple[str, ...], value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping of keys to values, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}

    def text(self, where: tuple[str, ...], value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.error(where, f"expected a string, got {type(value).__name__}")
        return str(value)

    def unknown(self, where: tuple[str, ...], keys: Mapping[str, Any], known: tuple[str, ...], hint: str) -> None:
        for key in keys:
            if key not in known:
                raise self.error((*where, key), f"unknown key.{did_you_mean(key, known)} {hint}")


def read_experiment(path: Path) -> Experiment:
    """Read an experiment file (module docstring); raise :class:`ConfigError` naming ``FILE:LINE: key``."""
    reader = _Reader(path)
    doc = reader.doc
    if doc is None:
        return Experiment(path=reader.path)
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping (an experiment file), got {type(doc).__name__}")
    doc = {str(k): v for k, v in doc.items()}
    if isinstance(doc.get("config"), dict):
        # A run's config.yaml: its resolved runner config (experiment.yaml beside it states the whole sweep).
        return Experiment(settings=dict(doc["config"]), path=reader.path)
    if not set(doc) & set(TOP_KEYS):
        return Experiment(settings=doc, path=reader.path)  # the flat form: runner settings only
    reader.unknown((), doc, TOP_KEYS, "an experiment file has " + ", ".join(TOP_KEYS)
                   + "; runner settings go under settings:")
    base = reader.path.parent

    def local(value: str) -> str:
        """A path relative to the file's folder (a module name or an existing absolute path is kept)."""
        candidate = Path(value).expanduser()
        return str(candidate if candidate.is_absolute() else (base / candidate).resolve())

    algos = doc.get("algos")
    if algos is not None:
        if isinstance(algos, list) and all(isinstance(a, str) for a in algos):
            algos = parse_algos(",".join(algos)) if algos else ()
        elif isinstance(algos, str):
            algos = parse_algos(algos)
        else:
            raise reader.error(("algos",), "expected a list of algorithm specs, e.g. [drpo, grpo]")
        if not algos:
            raise reader.error(("algos",), "empty; give at least one algorithm, or leave the key out (the suite's)")
    seeds = doc.get("seeds")
    if seeds is not None:
        if isinstance(seeds, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            seeds = parse_seeds(",".join(map(str, seeds)))
        elif isinstance(seeds, (str, int)) and not isinstance(seeds, bool):
            seeds = parse_seeds(str(seeds))
        else:
            raise reader.error(("seeds",), "expected a list of integers or a range like '0-3'")
    executor = reader.text(("executor",), doc.get("executor"))
    if executor is not None and executor not in EXECUTORS:
        raise reader.error(("executor",), f"{executor!r} is not one of {', '.join(EXECUTORS)}.{did_you_mean(executor, EXECUTORS)}")
    plugins = doc.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise reader.error(("plugins",), "expected a list of modules or .py files")

    settings = reader.mapping(("settings",), doc.get("settings"))
    for key in settings:
        if key.startswith(DATA_PREFIX) or key in REPORT_KEYS:
            section = "data" if key.startswith(DATA_PREFIX) else "report"
            raise reader.error(("settings", key), f"belongs under {section}: (the runner's settings go under settings:)")
    data = reader.mapping(("data",), doc.get("data"))
    source = reader.text(("data", "source"), data.pop("source", None))
    allow_outside = data.pop("allow_outside", False)
    if not isinstance(allow_outside, bool):
        raise reader.error(("data", "allow_outside"), "expected true or false")
    for key, value in data.items():
        settings[f"{DATA_PREFIX}{key}"] = value
    report = reader.mapping(("report",), doc.get("report"))
    reader.unknown(("report",), report, (*sorted(REPORT_KEYS), *REPORT_EXTRA_KEYS), "")
    baseline = reader.text(("report", "baseline"), report.pop("baseline", None))
    settings.update(report)

    algo_settings = reader.mapping(("algo_settings",), doc.get("algo_settings"))
    per_algo: dict[str, dict[str, Any]] = {}
    for algo, values in algo_settings.items():
        values = reader.mapping(("algo_settings", algo), values)
        for key in values:
            if key.startswith(DATA_PREFIX) or key in REPORT_KEYS:
                raise reader.error(("algo_settings", algo, key), "an algorithm's settings are runner settings only")
        per_algo[algo] = values
    if algos is not None:
        for algo in per_algo:
            if algo not in algos:
                raise reader.error(("algo_settings", algo), f"not an algorithm of algos ({', '.join(algos)})."
                                   f"{did_you_mean(algo, algos)}")

    return Experiment(
        suite=reader.text(("suite",), doc.get("suite")),
        profile=reader.text(("profile",), doc.get("profile")),
        algos=algos, seeds=seeds,
        runner=reader.text(("runner",), doc.get("runner")),
        executor=executor,
        ray_address=reader.text(("ray_address",), doc.get("ray_address")),
        plugins=tuple(local(p) if p.endswith(".py") else p for p in plugins),
        settings=settings, algo_settings=per_algo,
        data=_relative_to(base, source) if source is not None else None,
        allow_outside_data=allow_outside, baseline=baseline, path=reader.path,
    )


def _relative_to(base: Path, source: str) -> str:
    """A ``data.source`` with its relative paths made relative to ``base`` (the file's folder)."""

    def one(path: str) -> str:
        candidate = Path(path.strip()).expanduser()
        return str(candidate if candidate.is_absolute() else (base / candidate).resolve())

    if "=" not in source:
        return one(source)
    return ",".join(f"{key.strip()}={one(value)}" if eq else key
                    for key, eq, value in (item.partition("=") for item in source.split(",") if item.strip()))


def source_spec(source: Any) -> str:
    """A ``DataSource`` as the ``--data`` value that reads it again (absolute paths)."""
    if source.folder is not None:
        return str(source.folder)
    parts = (("train", source.train), ("test", source.test), ("validation", source.validation),
             ("classes", source.classes))
    return ",".join(f"{key}={path}" for key, path in parts if path is not None)


def merge_request(experiment: Experiment | None, **flags: Any) -> SweepRequest:
    """A :class:`SweepRequest` from an experiment file and the command's flags; a flag that is given
    (not None, not empty) wins over the file. ``flags`` are :class:`SweepRequest` fields; ``plugins``
    of both are loaded (the file's first)."""
    exp = experiment or Experiment()
    given = {k: v for k, v in flags.items() if v is not None}
    suite = given.pop("suite", None) or exp.suite
    if not suite:
        where = f" and {exp.path} has no suite:" if exp.path else ""
        raise ConfigError(f"--suite is required{where}; e.g. --suite climb_vision (rlbench-med list suites)")
    plugins = tuple(dict.fromkeys([*exp.plugins, *given.pop("plugins", ())]))
    values: dict[str, Any] = {
        "suite": suite, "algos": exp.algos, "seeds": exp.seeds, "profile": exp.profile or "quick",
        "runner": exp.runner or "local", "executor": exp.executor or "local", "ray_address": exp.ray_address,
        "data": exp.data, "allow_outside_data": exp.allow_outside_data, "plugins": plugins,
        "config_file": exp.path, "baseline": exp.baseline,
    }
    if given.pop("allow_outside_data", False):
        values["allow_outside_data"] = True
    values.update(given)
    return SweepRequest(**values)


def experiment_of(plan: Plan) -> dict[str, Any]:
    """The experiment file of a planned sweep: what reproduces its jobs (module docstring).

    ``settings`` holds the runner settings the user gave (the file's and ``--set``), with their
    resolved values: the suite profile's and the runner's defaults are left to them, as they were
    in this run, so that a setting the user named (``group_by`` for ``drpo_release``, say) stays named.
    """
    config = plan.config_dict()
    user = [k for k in plan.user_keys if k in config]
    data: dict[str, Any] = {}
    if plan.generates_data:
        data = {"source": None, "seed": plan.data_settings.seed, "imbalance": plan.data_settings.imbalance,
                **dict(plan.data_settings.sizes)}
    elif plan.data_source is not None:
        data = {"source": source_spec(plan.data_source), "allow_outside": plan.data_source.allow_outside}
    doc: dict[str, Any] = {
        "suite": plan.suite.name,
        "profile": plan.profile,
        "algos": list(plan.specs),
        "seeds": list(plan.seeds),
        "runner": plan.requested_runner,
        "executor": plan.executor,
        "ray_address": plan.ray_address,
        "plugins": [str(Path(p).resolve()) if p.endswith(".py") else p for p in plan.plugins],
        "settings": {k: config[k] for k in sorted(user)},
        "algo_settings": {algo: dict(values) for algo, values in plan.algo_settings.items()},
        "data": data,
        "report": {"primary_metric": plan.primary_metric, "baseline": plan.baseline},
    }
    return doc


def write_experiment(plan: Plan) -> Path:
    """Write ``<out>/experiment.yaml`` (:func:`experiment_of`), with a header saying how to use it."""
    from rlbench_med import __version__

    path = plan.out_dir / EXPERIMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# The sweep written to {plan.out_dir} (rlbench-med {__version__}). Run it again with\n"
              f"#   rlbench-med run --config {path}\n"
              "# (its jobs come from the job cache while code, data and settings are unchanged; --no-reuse trains them).\n")
    path.write_text(header + yaml.safe_dump(experiment_of(plan), sort_keys=False), encoding="utf-8")
    return path


def settings_of(request: SweepRequest) -> tuple[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
    """``(label, settings, algo_settings)`` of the request's ``--config`` file (empty without one)."""
    if request.config_file is None:
        return "", {}, {}
    exp = read_experiment(request.config_file)
    return f"--config {request.config_file}", exp.settings, exp.algo_settings


