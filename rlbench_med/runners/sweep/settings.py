"""Settings of a sweep that are not the runner's: the generated data, the report's headline metric
and how many jobs run at once.

``--set`` (and ``--config``) keys are routed by name: ``data.<field>`` sets :class:`DataSettings`
(SynthCLIMB's generator: they key the data cache, so another value generates other data),
``primary_metric`` sets :class:`ReportSettings` and ``workers`` :class:`ExecutorSettings`; every
other key is a runner config field.

    rlbench-med run --suite climb_vision --set data.imbalance=0      # every domain the same size
    rlbench-med run --suite climb_vision --set data.seed=3           # another draw of SynthCLIMB
    rlbench-med run --suite climb_vision --set primary_metric=exact  # the report's headline metric
    rlbench-med run --suite climb_vision --set workers=1             # jobs one after another
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlbench_med.suites.synth import DEFAULT_IMBALANCE
from rlbench_med.typed_config import ConfigError, SettingDoc, apply_overrides, describe_settings, knob, to_plain_dict

DATA_PREFIX = "data."
REPORT_KEYS = frozenset({"primary_metric"})
EXECUTOR_KEYS = frozenset({"workers"})


@dataclass(frozen=True)
class DataSettings:
    """SynthCLIMB's generator settings (``--set data.<field>=value``)."""

    imbalance: float = knob(
        DEFAULT_IMBALANCE,
        "exponent compressing the catalogue's domain sizes: 0 gives every domain the same size, 1 the "
        "catalogue's own skew (CT:ultrasound 1481:1); the default keeps CT:ultrasound at about 55:1",
    )
    seed: int = knob(0, "seed of the generated data (images, labels, splits); every algorithm and seed share it")
    sizes: tuple[tuple[str, Any], ...] = knob(
        (), "overrides of the profile's generator sizes, e.g. data.min_domain_train=346 (sorted (name, value) pairs)"
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.imbalance, (int, float)) and math.isfinite(self.imbalance) and 0 <= self.imbalance <= 1):
            raise ConfigError(f"data.imbalance: must be a number in [0, 1] (0: balanced domains), got {self.imbalance!r}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"data.seed: must be an integer in [0, 2**63), got {self.seed!r}")

    @property
    def is_default(self) -> bool:
        return self == DataSettings()

    def cache_suffix(self) -> str:
        """Part of the data cache folder name: ``seed<seed>``, then ``-imb<x>`` and ``-<size><v>`` when set (``.`` as ``p``)."""
        suffix = f"seed{self.seed}"
        if self.imbalance != DEFAULT_IMBALANCE:
            suffix += f"-imb{self.imbalance:g}"
        suffix += "".join(f"-{k}{v:g}" for k, v in self.sizes)
        return suffix.replace(".", "p")  # no dots: a name + "." is the generator's temporary folder

    def as_dict(self) -> dict[str, Any]:
        return {"imbalance": self.imbalance, "seed": self.seed, **dict(self.sizes)}


@dataclass(frozen=True)
class ReportSettings:
    """What the report leads with (``--set primary_metric=...``)."""

    primary_metric: str = knob(
        "", "metric the report leads with and compares first; empty: the suite's (f1_strict for label suites)"
    )

    def as_dict(self) -> dict[str, Any]:
        return to_plain_dict(self)


@dataclass(frozen=True)
class ExecutorSettings:
    """How the local executor runs a sweep's jobs (``--set workers=N``); no job's results depend on it."""

    workers: int = knob(
        0, "jobs of the local executor run side by side, each in its own worker process with its cpu_threads "
        "threads: 0 (default) runs as many as this machine's cores allow, 1 runs them one after another in "
        "the sweep's own process, N at most N at once",
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.workers, int) and 0 <= self.workers <= 1024):
            raise ConfigError(f"workers: must be an integer from 0 (one per free core) to 1024, got {self.workers!r}")


def _size(key: str, raw: Any, default: Any) -> Any:
    kind = float if isinstance(default, float) else int
    try:
        value = kind(str(raw).strip())
    except ValueError:
        raise ConfigError(f"data.{key}: expected {'a number' if kind is float else 'an integer'}, got {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"data.{key}: must be positive, got {raw!r}")
    return value


def split_settings(
    values: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(runner keys, data keys without the prefix, report keys, executor keys)`` of a
    ``--set``/``--config`` mapping."""
    runner: dict[str, Any] = {}
    data: dict[str, Any] = {}
    report: dict[str, Any] = {}
    executor: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(DATA_PREFIX):
            data[key[len(DATA_PREFIX):]] = value
        elif key in REPORT_KEYS:
            report[key] = value
        elif key in EXECUTOR_KEYS:
            executor[key] = value
        else:
            runner[key] = value
    return runner, data, report, executor


def resolve_settings(
    sources: list[tuple[str, Mapping[str, Any]]], *, suite_primary: str, sizes: Mapping[str, Any] | None = None
) -> tuple[DataSettings, ReportSettings, ExecutorSettings]:
    """Apply the data, report and executor keys of ``[(what, mapping), ...]`` in order.

    ``sizes`` are the suite profile's generator sizes: ``data.<name>`` for one of them overrides it
    (converted to the type of the profile's value, which must be positive).
    """
    from rlbench_med.suites.metrics import DESCRIPTIVE_METRICS, METRICS

    sizes = dict(sizes or {})
    data, report = DataSettings(), ReportSettings(primary_metric=suite_primary or "f1_strict")
    executor = ExecutorSettings()
    for what, values in sources:
        _, d, r, e = split_settings(values)
        size_keys = {k: v for k, v in d.items() if k in sizes and k not in ("imbalance", "seed")}
        rest = {k: v for k, v in d.items() if k not in size_keys}
        if "sizes" in rest:  # set one size at a time, by its name
            raise ConfigError(f"{what} data: unknown key 'sizes'; give data.<size>=value, sizes: {', '.join(sorted(sizes))}")
        if rest:
            try:
                data = apply_overrides(data, rest, what=f"{what} data")
            except ConfigError as exc:
                extra = f" or a generator size of this suite: {', '.join(sorted(sizes))}" if sizes else ""
                raise ConfigError(f"{exc}{extra}") from None
        if size_keys:
            merged = dict(data.sizes)
            for key, raw in size_keys.items():
                merged[key] = _size(key, raw, sizes[key])
            data = DataSettings(data.imbalance, data.seed, tuple(sorted(merged.items())))
        if r:
            report = apply_overrides(report, r, what=what)
        if e:
            executor = apply_overrides(executor, e, what=what)
    metric = report.primary_metric
    allowed = [m for m in METRICS if m not in DESCRIPTIVE_METRICS]
    if metric not in allowed:
        from rlbench_med.registry import did_you_mean

        raise ConfigError(f"primary_metric: {metric!r} is not a metric that scores answers.{did_you_mean(metric, allowed)} "
                          f"Use one of {', '.join(allowed)}")
    return data, report, executor


def sweep_setting_docs(sizes: Mapping[str, Any] | None = None) -> list[SettingDoc]:
    """The sweep's own settings for ``rlbench-med list settings``: ``data.<key>`` (with ``sizes``, a suite
    profile's generator sizes, one ``data.<size>`` each) and the report's ``primary_metric``."""
    from rlbench_med.suites.metrics import DESCRIPTIVE_METRICS, METRICS

    docs = [d for d in describe_settings(DataSettings, DATA_PREFIX) if d.name != DATA_PREFIX + "sizes"]
    for name, value in sorted((sizes or {}).items()):
        docs.append(SettingDoc(f"{DATA_PREFIX}{name}", type(value).__name__, value, (),
                               "a generator size of the suite profile (> 0); keys the data cache"))
    if sizes is None:
        docs.append(SettingDoc(f"{DATA_PREFIX}<size>", "int or float", None, (),
                               "one of a suite profile's generator sizes, e.g. data.min_domain_train (list settings "
                               "--suite S names them)"))
    scoring = tuple(m for m in METRICS if m not in DESCRIPTIVE_METRICS)
    (report,) = describe_settings(ReportSettings)
    docs.append(dataclasses.replace(report, allowed=scoring))
    return docs
