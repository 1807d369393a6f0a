"""What the user asked for: ``SweepRequest`` and the parsing of the ``run`` flags into a config.

The runner's config is resolved as runner defaults < suite profile ``run`` < ``--config`` YAML <
``--set key=value``; every error is a :class:`~rlbench_med.typed_config.ConfigError` with a
one-line reason naming the flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlbench_med.registry import did_you_mean
from rlbench_med.runners.base import BASE, SFT, RunnerSpec
from rlbench_med.runners.sweep.settings import split_settings
from rlbench_med.typed_config import ConfigError, apply_overrides, convert

EXECUTORS = ("local", "ray")
#: Suites whose jobs are not training runs: they are executed by another runner than ``--runner``.
#: Such suites have no data folder (``data="none"``); their profile's ``data`` sizes configure the runner.
SUITE_RUNNERS = {"runtime": "timing"}


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
    data: Path | str | None = None  # a folder, or "train=PATH,test=PATH[,classes=PATH]"
    out: Path | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    plugins: tuple[str, ...] = ()
    resume: bool = False
    allow_outside_data: bool = False  # let media paths of --data resolve outside its folder
    reuse: bool = True  # take finished jobs from the job cache (--no-reuse: train every job)
    #: False for a tune: every job answers the validation split only; the sweep writes validation.csv.
    score_test: bool = True
    #: ``{label: runner overrides}`` run for every algorithm instead of the suite's variants (a tune's trials).
    variants: Mapping[str, Mapping[str, Any]] | None = None
    #: ``{algo: runner overrides}`` (``run --tuned``): every algorithm also runs with its own setting,
    #: labelled ``<algo> (tuned)``, beside its run at the shared config.
    tuned: Mapping[str, Mapping[str, Any]] | None = None
    baseline: str | None = None  # what the report compares every other algorithm against (None: grpo)


#: Most seeds one sweep takes: a typo such as ``0-1000000`` (for ``0-10``) is refused at once, before
#: anything is planned, instead of planning (and then training) for hours.
MAX_SEEDS = 1000


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` or ``"0-3"`` (inclusive range) -> seeds; raises ConfigError naming the flag.

    At most :data:`MAX_SEEDS` seeds; a range is counted before it is expanded.
    """
    seeds: list[int] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        lo, dash, hi = part.partition("-")
        bounds = (lo, hi) if dash else (part,)
        if not all(b.strip().isdigit() for b in bounds):
            raise ConfigError(f"--seeds: {part!r} is not a non-negative integer or a range like 0-3")
        first, last = (convert(b, int, "--seeds") for b in (bounds[0], bounds[-1]))
        if last < first:
            raise ConfigError(f"--seeds: range {part!r} ends before it starts; write it low-high, e.g. 0-3")
        if len(seeds) + (last - first + 1) > MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r} asks for {len(seeds) + last - first + 1} seeds; a sweep takes at most "
                              f"{MAX_SEEDS} (a typo? e.g. 0-10 for seeds 0 to 10)")
        seeds.extend(range(first, last + 1))
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (YAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice, first on line {seen[key]}", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _key_lines(node: Any, where: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """``{(key, subkey, ...): line}`` of every mapping key under ``node`` (1-based lines)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*where, str(key_node.value))
            out[path] = key_node.start_mark.line + 1
            _key_lines(value_node, path, out)


def read_yaml(path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """A ``--config`` YAML file (each key once) and the line of each mapping key, for messages."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text (a binary file?); give a YAML experiment file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({_yaml_problem(exc)})") from None
    lines: dict[tuple[str, ...], int] = {}
    _key_lines(yaml.compose(text, Loader=yaml.SafeLoader), (), lines)
    return data, lines


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line of a YAML error: its problem and where."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}: {problem}"
    return str(exc).splitlines()[0]


def resolve_config(
    runner: RunnerSpec,
    profile_run: Mapping[str, Any],
    file_settings: tuple[str, Mapping[str, Any]] | None,
    overrides: Mapping[str, str],
) -> tuple[Any, list[str]]:
    """Runner defaults < suite profile ``run`` < the ``--config`` file's settings (``(label, mapping)``)
    < ``--set``; returns (config, sources).

    Profile keys the runner's config does not have are named in the sources (shown in the plan).
    Sweep settings (``data.*``, ``primary_metric``; see :mod:`.settings`) are left out here.
    """
    config = runner.config_cls()
    sources = [f"{runner.name} defaults"]
    known = {f.name for f in dataclasses.fields(config)}
    for label, values in ((file_settings or ("", {})), ("--set", overrides)):
        check_setting_names(split_settings(values)[0], known, label)
    unused = sorted(set(profile_run) - known)
    used = {k: v for k, v in profile_run.items() if k in known}
    if used:
        config = apply_overrides(config, used, what="suite profile")
        sources.append("suite profile" + (f" (not used by this runner: {', '.join(unused)})" if unused else ""))
    elif unused:
        sources.append(f"suite profile (not used by this runner: {', '.join(unused)})")
    if file_settings is not None:
        label, values = file_settings
        config = apply_overrides(config, split_settings(values)[0], what=label)
        sources.append(label)
    runner_overrides = split_settings(overrides)[0]
    if runner_overrides:
        config = apply_overrides(config, runner_overrides, what="--set")
        sources.append("--set")
    return config, sources


def check_setting_names(values: Mapping[str, Any], known: set[str], what: str) -> None:
    """Refuse a runner key that is no field of the runner's config, suggesting the closest setting of any
    kind (a runner field, ``data.<key>``, ``primary_metric``) and where to find them all."""
    from rlbench_med.runners.sweep.settings import DATA_PREFIX, DataSettings, REPORT_KEYS

    for key in values:
        if key not in known:
            others = [*known, *REPORT_KEYS, *(DATA_PREFIX + f.name for f in dataclasses.fields(DataSettings) if f.name != "sizes")]
            raise ConfigError(f"{what}: unknown key {key!r}.{did_you_mean(key, others)} Accepted fields: "
                              f"{', '.join(sorted(known))} (every setting: rlbench-med list settings)")


def parse_set(items: Sequence[str]) -> dict[str, str]:
    """``["steps=10", "lr=1e-3"]`` -> ``{"steps": "10", "lr": "1e-3"}`` (later ones win)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set steps=20")
        out[key.strip()] = value.strip()
    return out


def check_algo(spec: str) -> None:
    """Raise with a one-line reason (did-you-mean) unless ``spec`` is an estimator spec, ``sft`` or ``base``."""
    if spec in (SFT, BASE):
        return
    from rlbench_med.algorithms import make_estimator

    make_estimator(spec)
