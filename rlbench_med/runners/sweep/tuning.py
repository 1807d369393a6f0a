"""Equal-budget tuning: the search space, the trials, and the tuned settings a tune leaves behind.

``rlbench-med tune --suite S --algos a,b --budget N [--space lr,kl_coef]`` gives every algorithm the
same ``N`` trials: the **same settings** (one draw of the space shared by every algorithm, so no
algorithm is luckier in its candidates), trained at the same seeds and scored on the validation
split. Trial 0 is the shared setting itself (what ``run`` trains every algorithm with); trials 1 to
``N - 1`` are Ray Tune's random search of the space (its variant generator, seeded by
``--search-seed``), each value rounded to 3 significant digits.

A tune is a sweep (:func:`tune_plan`): each trial is a variant of the shared config (label
``<algo>[trial<k>]``), every job answers the validation split only (``Job.score_test`` False, so no
test record is answered or scored and no results.csv is written; the rows go to validation.csv),
and the sweep's guarantees hold as they are: the job cache, one MLflow child run per trial and seed
under the tune's parent run, failed trials in failed.csv, ``--resume``, signals.

Its seeds default to the profile's plus :data:`TUNE_SEED_OFFSET`: a trial's validation score is
partly the luck of its training seed, and ``run --tuned`` at the same seed would carry the luck
that made the trial win into the test comparison.

What a finished tune leaves (:class:`TuneRecord`, written by ``reports/tuning.py`` once the trials
are scored): ``tune.json`` (the protocol, every trial's validation score, each algorithm's choice)
and ``tuned/<algo>.yaml`` per algorithm, a flat mapping of runner fields that ``run --config``
accepts: the tune's own ``--config``/``--set`` keys and the chosen trial's setting.
``run --tuned DIR`` trains each algorithm at its own tuned setting beside the shared one
(:func:`tuned_differences` refuses a run whose suite, data or shared config differ from the tune's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rlbench_med.runners.base import RunnerSpec, safe_name
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.planner import build_plan, default_out_dir, latest_out_dir
from rlbench_med.runners.sweep.experiment import read_experiment
from rlbench_med.runners.sweep.request import SweepError, SweepRequest
from rlbench_med.typed_config import ConfigError, convert, to_plain_dict

#: Tuning seeds are the profile's plus this (the final run's are the profile's: module docstring).
TUNE_SEED_OFFSET = 1000
#: What ``--space`` searches when it is not given.
DEFAULT_SPACE = "lr,kl_coef"
#: Most trials per algorithm (a typo such as 1000 for 10 is refused before anything is planned).
MAX_BUDGET = 500
#: Significant digits a drawn value keeps (0.0012520653 -> 0.00125): settings that read as written.
DIGITS = 3
RECORD = "tune.json"
TUNED_DIR = "tuned"
_FORMAT = 1


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``log`` (log-uniform on [low, high]), ``linear`` (uniform) or ``choice``
    (one of ``values``). ``integer``: a whole-number field (bounds inclusive)."""

    name: str
    kind: Literal["log", "linear", "choice"]
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()
    integer: bool = False

    def describe(self) -> str:
        """``lr: log-uniform on [0.0001, 0.01]``, ``n_rollouts: one of 4, 8, 16``."""
        if self.kind == "choice":
            return f"{self.name}: one of {', '.join(str(v) for v in self.values)}"
        scale = "log-uniform" if self.kind == "log" else "uniform"
        whole = " (whole numbers)" if self.integer else ""
        return f"{self.name}: {scale} on [{self.low:g}, {self.high:g}]{whole}"

    def domain(self) -> Any:
        """The Ray Tune search domain of this dimension."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.integer:  # Ray Tune's integer bounds exclude the upper one
            return (tune.lograndint if self.kind == "log" else tune.randint)(int(self.low), int(self.high) + 1)
        return (tune.loguniform if self.kind == "log" else tune.uniform)(self.low, self.high)

    def rounded(self, value: Any) -> Any:
        """A drawn value as the trial's setting: floats to :data:`DIGITS` significant digits, ints as ints."""
        if self.kind == "choice" or self.integer:
            return value if self.kind == "choice" else int(value)
        return float(f"{float(value):.{DIGITS}g}")

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"name": self.name, "kind": self.kind, "values": list(self.values)}
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "integer": self.integer}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Dimension:
        return cls(str(doc["name"]), doc["kind"], float(doc.get("low", 0.0)), float(doc.get("high", 0.0)),
                   tuple(doc.get("values", ())), bool(doc.get("integer", False)))


#: The searched range of each setting when ``--space`` names it alone: log scales for rates and
#: coefficients that matter by their order of magnitude, linear ones for ratios near a known value.
DEFAULT_DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension("lr", "log", 1e-4, 1e-2),
    Dimension("kl_coef", "log", 1e-3, 0.3),
    Dimension("temperature", "linear", 0.7, 1.3),
    Dimension("clip_low", "linear", 0.1, 0.3),
    Dimension("clip_high", "linear", 0.2, 0.4),
    Dimension("n_rollouts", "choice", values=(4, 8, 16)),
    Dimension("prompts_per_step", "choice", values=(16, 32, 64)),
    Dimension("epochs", "choice", values=(1, 2)),
    Dimension("minibatches", "choice", values=(1, 2, 4)),
    Dimension("encoder_lr_scale", "log", 0.1, 1.0),
    Dimension("adam_beta1", "linear", 0.8, 0.95),
    Dimension("adam_beta2", "choice", values=(0.95, 0.999)),
    Dimension("lr_schedule", "choice", values=("constant", "cosine")),
    Dimension("warmup_ratio", "linear", 0.0, 0.1),
    Dimension("min_lr_ratio", "linear", 0.0, 0.5),
    Dimension("kl_mode", "choice", values=("loss", "reward")),
    Dimension("vf_coef", "linear", 0.25, 1.0),
    Dimension("critic_lr", "log", 1e-4, 1e-2),
)}


def parse_space(text: str, runner: RunnerSpec) -> tuple[Dimension, ...]:
    """``--space``: comma-separated settings, each ``name`` (its default range,
    :data:`DEFAULT_DIMENSIONS`), ``name=LOW:HIGH`` (the default's scale, else linear),
    ``name=LOW:HIGH:log`` / ``:linear``, or ``name=A|B|C`` (a choice). Names must be the runner's
    ``tunable`` fields. Raises :class:`ConfigError` naming the item at fault."""
    hints = typing.get_type_hints(runner.config_cls)
    out: dict[str, Dimension] = {}
    for item in [p.strip() for p in text.split(",") if p.strip()]:
        name, eq, body = (x.strip() for x in item.partition("="))
        if name not in hints:
            raise ConfigError(f"--space {item!r}: {name!r} is not a setting of the {runner.name} runner; tunable: "
                              f"{', '.join(sorted(runner.tunable)) or 'none'}")
        if name not in runner.tunable:
            raise ConfigError(f"--space {item!r}: {name} is not tunable: it changes the shared base, the evaluation, "
                              f"the reward or the number of steps; tunable: {', '.join(sorted(runner.tunable))}")
        if name in out:
            raise ConfigError(f"--space: {name} given twice")
        out[name] = _dimension(item, name, body if eq else None, hints[name])
    if not out:
        raise ConfigError(f"--space {text!r}: name at least one setting, e.g. --space {DEFAULT_SPACE}")
    return tuple(out.values())


def _dimension(item: str, name: str, body: str | None, annotation: Any) -> Dimension:
    default = DEFAULT_DIMENSIONS.get(name)
    if body is None:
        if default is None:
            raise ConfigError(f"--space {item!r}: {name} has no default range; give one, e.g. {name}=LOW:HIGH or "
                              f"{name}=A|B")
        return default
    if "|" in body or typing.get_origin(annotation) is Literal:
        values = tuple(dict.fromkeys(convert(v.strip(), annotation, f"--space {name}") for v in body.split("|")
                                     if v.strip()))
        if not values:
            raise ConfigError(f"--space {item!r}: give the choices as A|B|C")
        return Dimension(name, "choice", values=values)
    parts = [p.strip() for p in body.split(":")]
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "linear")):
        raise ConfigError(f"--space {item!r}: expected {name}=LOW:HIGH, {name}=LOW:HIGH:log, {name}=LOW:HIGH:linear "
                          f"or {name}=A|B|C")
    if annotation not in (int, float):
        raise ConfigError(f"--space {item!r}: {name} is not a number; give its choices as {name}=A|B")
    low, high = (float(convert(p, annotation, f"--space {name}")) for p in parts[:2])
    kind = parts[2] if len(parts) == 3 else (default.kind if default is not None and default.kind != "choice"
                                             else "linear")
    if not low < high:
        raise ConfigError(f"--space {item!r}: LOW must be below HIGH")
    if kind == "log" and low <= 0:
        raise ConfigError(f"--space {item!r}: a log scale needs LOW > 0 (or say :linear)")
    return Dimension(name, kind, low, high, integer=annotation is int)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Trial:
    """One setting every algorithm trains with: ``setting`` overrides the shared config (trial 0: none)."""

    index: int
    setting: dict[str, Any]

    @property
    def label(self) -> str:
        """The variant name: ``trial<k>`` (results label ``<algo>[trial<k>]``)."""
        return f"trial{self.index}"

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.setting.items()) or "the shared setting"


def draw_trials(space: Sequence[Dimension], budget: int, seed: int) -> list[Trial]:
    """Trial 0 (the shared setting) and ``budget - 1`` settings from Ray Tune's random search of ``space``
    (its variant generator with ``numpy.random.RandomState(seed)``): the same list for the same arguments."""
    if not 1 <= budget <= MAX_BUDGET:
        raise ConfigError(f"--budget {budget}: give a number of trials per algorithm from 1 to {MAX_BUDGET}")
    trials = [Trial(0, {})]
    if budget == 1:
        return trials
    import importlib.util

    import numpy as np

    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--budget {budget}: the search draws its trials with Ray Tune: pip install 'rlbench-med[ray]' "
                          "(--budget 1 trains the shared setting alone)")
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.RandomState(seed)
    param_space = {d.name: d.domain() for d in space}
    for index in range(1, budget):
        ((_, drawn),) = list(generate_variants(param_space, random_state=rng))
        trials.append(Trial(index, {d.name: d.rounded(drawn[d.name]) for d in space}))
    return trials


def tune_seeds(profile_seeds: Sequence[int]) -> tuple[int, ...]:
    """The default tuning seeds: the profile's plus :data:`TUNE_SEED_OFFSET`."""
    return tuple(s + TUNE_SEED_OFFSET for s in profile_seeds)


# --------------------------------------------------------------------------------------------
# the plan of a tune
# --------------------------------------------------------------------------------------------
@dataclass
class TunePlan:
    """A tune: the sweep that trains its trials, and the protocol it follows."""

    plan: Plan
    record: TuneRecord
    trials: list[Trial]

    def render(self) -> str:
        """The tune's protocol, then the sweep's plan."""
        r = self.record
        lines = [f"rlbench-med tune: {len(r.algos)} algorithm(s) x {r.budget} trial(s) x {len(r.seeds)} seed(s), "
                 f"scored on the validation split's overall {r.primary_metric}",
                 f"  space      {'; '.join(Dimension.from_dict(d).describe() for d in r.space)}",
                 f"  search     trial0 = the shared setting; Ray Tune random search (seed {r.search_seed}) for the "
                 "others; every algorithm trains the same settings",
                 f"  seeds      {','.join(map(str, r.seeds))} (a later `run --tuned` trains the profile's seeds)",
                 "  trials"]
        lines += [f"    {t.label}: {t.describe()}" for t in self.trials]
        return "\n".join(lines) + "\n" + self.plan.render()


def tune_plan(request: SweepRequest, *, budget: int, space: str, search_seed: int) -> TunePlan:
    """Plan a tune of ``request`` (its algorithms, seeds, data and config): every algorithm trains the
    same trials at the request's seeds (default :func:`tune_seeds`), the test split left out.

    Raises ConfigError/SweepError/RegistryError with a one-line reason.
    """
    from rlbench_med.runners.base import RUNNERS
    from rlbench_med.runners.sweep.request import SUITE_RUNNERS
    from rlbench_med.suites import get_suite

    for plugin in request.plugins:  # (build_plan loads them too; the suite and runner may come from one)
        from rlbench_med.registry import load_plugin

        load_plugin(plugin)
    suite = get_suite(request.suite)
    if suite.name in SUITE_RUNNERS:
        raise ConfigError(f"suite {suite.name} times the estimators; it trains nothing to tune")
    if suite.variants:
        raise ConfigError(f"suite {suite.name} runs every algorithm in variants ({', '.join(suite.variants)}); tune "
                          "the suite they vary (e.g. climb_vision) instead")
    runner = RUNNERS.get(request.runner)
    dims = parse_space(space, runner)
    trials = draw_trials(dims, budget, search_seed)
    seeds = request.seeds if request.seeds is not None else tune_seeds(suite.seeds(request.profile))
    out = request.out
    if out is None:  # reports/tune-<suite>-<timestamp>; --resume: the latest one
        out = latest_out_dir(f"tune-{suite.name}") if request.resume else default_out_dir(f"tune-{suite.name}")
        if out is None:
            raise SweepError(f"--resume: no earlier tune of {suite.name} under reports/; pass --out DIR")
    plan = build_plan(dataclasses.replace(request, seeds=tuple(seeds), out=out, score_test=False,
                                          variants={t.label: t.setting for t in trials}))
    plan.command = "tune"
    repeated = _repeated(trials)
    if repeated:
        plan.notes.append(f"{repeated}: the same setting twice (a choice-only space with few values); each still "
                          "counts against the budget")
    record = TuneRecord(
        suite=suite.name, profile=request.profile, runner=runner.name, primary_metric=plan.primary_metric,
        budget=budget, search_seed=search_seed, space=[d.as_dict() for d in dims], seeds=list(seeds),
        algos=[str(a) for a in (request.algos or suite.default_algos)],
        trials=[{"trial": t.index, "label": t.label, "setting": t.setting} for t in trials],
        config=plan.config_dict(), data_settings=plan.data_settings.as_dict(),
        overrides=_shared_overrides(request, plan),
    )
    return TunePlan(plan, record, trials)


def _repeated(trials: Sequence[Trial]) -> str:
    seen: dict[str, str] = {}
    out = []
    for t in trials:
        key = json.dumps(t.setting, sort_keys=True)
        if key in seen:
            out.append(f"{t.label} repeats {seen[key]}")
        seen.setdefault(key, t.label)
    return "; ".join(out)


def _shared_overrides(request: SweepRequest, plan: Plan) -> dict[str, Any]:
    """The tune's ``--config`` and ``--set`` keys (``--set`` winning), runner fields as the resolved
    config holds them (typed), sweep settings (``data.*``, ``primary_metric``) as given."""
    given = dict(read_experiment(request.config_file).settings) if request.config_file else {}
    given.update(request.overrides)
    fields = {f.name for f in dataclasses.fields(plan.config)}
    resolved = to_plain_dict(plan.config)
    return {k: resolved[k] if k in fields else v for k, v in given.items()}


# --------------------------------------------------------------------------------------------
# tune.json and the tuned settings
# --------------------------------------------------------------------------------------------
@dataclass
class TuneRecord:
    """``tune.json``: the protocol of a tune and, once its trials are scored, each algorithm's choice.

    ``scores[algo][trial label]``: the validation score of a trial (mean over the tune's seeds; None
    when a seed of it did not finish); ``chosen[algo]``: the trial with the best score (ties: the
    lowest trial, so the shared setting wins a tie), for every algorithm with a scored trial:
    ``trial``, ``setting``, ``score``, ``file`` and the sensitivity figures ``reports/tuning.py``
    computes.
    """

    suite: str
    profile: str
    runner: str
    primary_metric: str
    budget: int
    search_seed: int
    space: list[dict[str, Any]]
    seeds: list[int]
    algos: list[str]
    trials: list[dict[str, Any]]
    config: dict[str, Any]
    data_settings: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    validation_records: int = 0
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def setting_of(self, label: str) -> dict[str, Any]:
        """The setting of trial ``label``."""
        return next(dict(t["setting"]) for t in self.trials if t["label"] == label)

    def tuned_settings(self) -> dict[str, dict[str, Any]]:
        """``{algo: setting}`` of every algorithm's chosen trial (what ``run --tuned`` trains)."""
        return {algo: dict(c["setting"]) for algo, c in self.chosen.items()}

    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, **dataclasses.asdict(self)}, indent=1, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> TuneRecord:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc}); it is the record `rlbench-med tune` wrote") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ConfigError(f"{where}: not a tune record of format {_FORMAT}; tune again")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in doc and f.default is dataclasses.MISSING and
                         f.default_factory is dataclasses.MISSING)
        if missing:
            raise ConfigError(f"{where}: lacks {', '.join(missing)}; tune again")
        return cls(**{k: v for k, v in doc.items() if k in names})


def tuned_file(algo: str) -> str:
    """``tuned/<algo>.yaml`` (``algo`` made file-name safe)."""
    return f"{TUNED_DIR}/{safe_name(algo)}.yaml"


def write_record(record: TuneRecord, out_dir: Path) -> Path:
    """Write ``tune.json`` and, for every chosen algorithm, ``tuned/<algo>.yaml``: the tune's own
    ``--config``/``--set`` keys and the chosen trial's setting, a flat mapping ``run --config``
    accepts (a YAML comment says where it comes from). Each file is written atomically."""
    out_dir = Path(out_dir)
    for algo, choice in record.chosen.items():
        name = tuned_file(algo)
        choice["file"] = name
        body = {**record.overrides, **choice["setting"]}
        header = (f"# {algo}: its tuned setting on {record.suite} ({record.profile}), trial {choice['trial']} of "
                  f"{record.budget} by `rlbench-med tune`: validation {record.primary_metric} {choice['score']:.4f}, "
                  f"mean over seeds {','.join(map(str, record.seeds))}.\n# Train with it: rlbench-med run --suite "
                  f"{record.suite} --profile {record.profile} --algos {algo} --config {(out_dir / name).resolve()}\n"
                  f"# (every tuned algorithm: run --tuned {out_dir.resolve()}).\n")
        _write_atomically(out_dir / name, header + yaml.safe_dump(body, sort_keys=False))
    return _write_atomically(out_dir / RECORD, record.to_json())


def _write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_record(folder: Path) -> TuneRecord:
    """The finished tune in ``folder`` (``--tuned DIR``); ConfigError with a one-line reason otherwise."""
    path = Path(folder) / RECORD
    if not path.is_file():
        raise ConfigError(f"--tuned {folder}: no {RECORD} there; give the output folder of `rlbench-med tune`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--tuned {folder}: cannot read {path} ({type(exc).__name__})") from None
    record = TuneRecord.from_json(text, str(path))
    if not record.chosen:
        raise ConfigError(f"--tuned {folder}: the tune chose no setting (no trial finished); resume it with "
                          f"`rlbench-med tune ... --resume --out {folder}`")
    return record


def tuned_differences(plan: Plan, record: TuneRecord) -> list[str]:
    """What makes ``plan`` (a ``run --tuned``) another setting than the tune's, each in a phrase: the
    suite, the profile, the runner, the headline metric, the data or the shared config. Settings
    tuned for one setting say nothing about another."""
    out = []
    for what, now, then in (("suite", plan.suite.name, record.suite), ("profile", plan.profile, record.profile),
                            ("runner", plan.runner.name, record.runner),
                            ("primary_metric", plan.primary_metric, record.primary_metric)):
        if now != then:
            out.append(f"{what} {then} in the tune, {now} here")
    if plan.data_settings.as_dict() != record.data_settings:
        out.append(f"data settings {record.data_settings} in the tune, {plan.data_settings.as_dict()} here")
    elif record.data_fingerprint is not None and plan.data_fingerprint() not in (None, record.data_fingerprint):
        out.append(f"other data ({plan.data_dir})")
    now_config = plan.config_dict()
    keys = sorted(k for k in {*record.config, *now_config} if record.config.get(k) != now_config.get(k))
    if keys:
        shown = ", ".join(f"{k} {record.config.get(k)!r} in the tune, {now_config.get(k)!r} here" for k in keys[:3])
        out.append(f"the shared config differs ({shown}{', ...' if len(keys) > 3 else ''}); pass the tune's --config "
                   "and --set")
    return out


def check_tuned(plan: Plan, record: TuneRecord, folder: Path) -> None:
    """Refuse (SweepError, one line) a ``run --tuned`` whose setting is not the tune's; note tuning seeds
    it trains again (their test scores would carry the trials' selection)."""
    differences = tuned_differences(plan, record)
    if differences:
        raise SweepError(f"--tuned {folder}: this run is not the setting the tune chose for: "
                         + "; ".join(differences))
    shared = sorted(set(plan.seeds) & set(record.seeds))
    if shared:
        plan.notes.append(f"seed(s) {','.join(map(str, shared))} also trained the tune's trials: the tuned runs at "
                          "them repeat the trials that won on validation, luck of the seed included")

