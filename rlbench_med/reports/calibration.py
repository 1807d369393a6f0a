"""Calibration: can a suite's profile tell a working estimator from one that does nothing?

``rlbench-med calibrate --suite S`` trains reference estimators (default :data:`REFERENCES`,
``grpo`` and ``rloo``) and the three controls (:mod:`rlbench_med.algorithms.controls`) at the
profile's seeds, then asks of the **validation** split (every choice reads it; the test split is
left to the comparisons the calibration is for), on the suite's primary metric, overall:

1. does each reference beat ``control:zero`` (one-sided: greater)?
2. does ``control:negate`` fall below ``control:zero`` (one-sided: ``control:zero`` greater)?

The answers are one family of tests, Holm-corrected across them
(:func:`~rlbench_med.reports.verdicts.judge_pairs`). The profile **can rank estimators** when every
one is significant. Its sensitivity is then the minimum detectable effect (80% power, 5% two-sided)
of a comparison between two trained estimators at these seeds, from the noise of the references'
own comparison (the first against the second; with one reference, against ``control:shuffle``):
"this profile can rank estimators whose effects exceed X". Reported beside them, as exploratory
intervals: ``control:shuffle`` against ``control:zero`` (what the noise of RL updates alone does)
and the references against each other; and every run's mean (sd over seeds) with ``base`` and the
floors.

A calibration is a :class:`Calibration`, written as ``calibration.json`` and ``calibration.md`` in
the sweep's folder and kept in the cache under the key of its data, config and code
(:mod:`rlbench_med.runners.sweep.calibration`), where every report of the same settings finds it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlbench_med.reports.classes import given_up
from rlbench_med.reports.classes import rule as given_up_rule
from rlbench_med.reports.report import load_runs, run_seeds
from rlbench_med.reports.results import build_table, load_results, split_label
from rlbench_med.reports.stats import EvaluationSet, mean_std
from rlbench_med.reports.testing import EXPLORATORY, PRIMARY
from rlbench_med.reports.verdicts import Pair, judge_pairs, minimum_detectable
from rlbench_med.runners.base import BASE, VALIDATION
from rlbench_med.suites.floors import BOX_FLOORS, is_floor
from rlbench_med.suites.power import GREATER, TWO_SIDED

#: The standard estimators a suite must let learn.
REFERENCES = ("grpo", "rloo")
ZERO, SHUFFLE, NEGATE = "control:zero", "control:shuffle", "control:negate"
CONTROLS = (ZERO, SHUFFLE, NEGATE)


class CalibrationError(ValueError):
    """A folder that cannot be calibrated (a reference or control missing); the message says what to run."""


@dataclass(frozen=True)
class Question:
    """One calibration comparison on the primary metric, overall: ``algo − baseline``."""

    algo: str
    baseline: str
    diff: float
    low: float
    high: float
    p_adjusted: float
    significant: bool
    mde: float
    words: str
    family: str


@dataclass
class Calibration:
    """What a calibration found (module docstring)."""

    suite: str
    metric: str
    seeds: list[int]
    references: list[str]
    questions: list[Question]
    scores: dict[str, list[float]]  # label -> [mean, sd over its runs, runs] on the validation split
    can_rank: bool
    detectable: float
    verdict: str
    out_dir: str
    split: str = VALIDATION
    #: Classes a reference or control gave up on the validation split (:mod:`.classes`), one line each.
    given_up: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))

    @property
    def tests(self) -> list[Question]:
        """The questions the verdict rests on (references above ``control:zero``, ``control:negate`` below)."""
        return [q for q in self.questions if q.family != EXPLORATORY]

    def line(self) -> str:
        """One line for the reports of the same suite, data, config and code."""
        shown = "; ".join(f"{q.algo} − {q.baseline} {q.diff:+.3f} [{q.low:+.3f}, {q.high:+.3f}]" for q in self.tests)
        return (f"Calibration of these settings ({self.created}, {self.split} split, {len(self.seeds)} seeds, "
                f"{self.out_dir}): {self.verdict} ({shown}).")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Calibration:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in doc.items() if k in known}
        fields["questions"] = [Question(**q) for q in doc["questions"]]
        return cls(**fields)

    def markdown(self) -> str:
        """``calibration.md``: the verdict, the tests and the scores, with the rules in words."""
        lines = [f"# rlbench-med calibration: {self.suite}", "",
                 f"**{self.verdict[0].upper()}{self.verdict[1:]}.**", "",
                 f"Validation split, overall `{self.metric}`, seeds {', '.join(map(str, self.seeds))}; {self.created}; "
                 f"sweep `{self.out_dir}`. A profile can rank estimators when every reference is significantly above "
                 "`control:zero` and `control:negate` significantly below it (one-sided tests, Holm across them). "
                 "Its sensitivity is the minimum detectable effect (80% power, 5% two-sided) of a comparison between "
                 "two trained estimators with the noise of the references' own comparison.", "",
                 "| comparison | family | diff | interval | p (Holm) | MDE | verdict |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for q in self.questions:
            p = f"{q.p_adjusted:.2g}" if q.p_adjusted == q.p_adjusted else ""
            lines.append(f"| {q.algo} − {q.baseline} | {q.family} | {q.diff:+.3f} | [{q.low:+.3f}, {q.high:+.3f}] | {p} "
                         f"| {q.mde:.3f} | {q.words} |")
        lines += ["", f"| run | mean {self.metric} | sd | runs (seeds; floor:random: draws) |", "| --- | --- | --- | --- |"]
        for label, (mean, sd, n) in self.scores.items():
            lines.append(f"| {label} | {mean:.3f} | {sd:.3f} | {int(n)} |")
        lines += ["", "### Classes given up", "", given_up_rule(self.split), ""]
        lines += [f"- {line}" for line in self.given_up] or ["- none"]
        return "\n".join(lines) + "\n"


def calibrate(out_dir: Path, metric: str, references: Sequence[str] = REFERENCES, *, n_boot: int = 2000,
              seed: int = 0) -> Calibration:
    """The calibration of a sweep's folder that ran ``references`` and the controls (module docstring)."""
    out_dir = Path(out_dir)
    # The full input only: an input ablation (``grpo@text``) answers no validation split.
    table = build_table([r for r in load_results(out_dir / "results.csv") if not split_label(str(r["algo"])).inputs])
    missing = [a for a in (*references, *CONTROLS) if a not in table.algos]
    if missing:
        raise CalibrationError(f"{out_dir}: no results of {', '.join(missing)}; calibrate trains the references and "
                               f"the controls ({', '.join(CONTROLS)})")
    notes: list[str] = []
    runs = load_runs(out_dir, table, notes, split=VALIDATION)
    if notes:
        raise CalibrationError(notes[0])
    evalset = EvaluationSet.from_runs(runs, n_boot=n_boot, seed=seed)
    seeds = sorted(set.intersection(*(set(table.seeds[a]) for a in (*references, *CONTROLS))))
    tests = [Pair(ref, seeds, ZERO, seeds, alternative=GREATER) for ref in references]
    tests.append(Pair(ZERO, seeds, NEGATE, seeds, alternative=GREATER))
    between = Pair(references[0], seeds, references[1] if len(references) > 1 else SHUFFLE, seeds)
    explore = [Pair(SHUFFLE, seeds, ZERO, seeds, alternative=TWO_SIDED), between]
    found = [*((v, PRIMARY) for v in judge_pairs(evalset, tests, metric)),
             *((v, EXPLORATORY) for v in judge_pairs(evalset, explore, metric, family=EXPLORATORY))]
    questions = [Question(v.comparison.algo, v.comparison.baseline, v.comparison.diff, v.comparison.low,
                          v.comparison.high, v.comparison.p_adjusted, v.comparison.significant, v.mde, v.words, family)
                 for v, family in found]
    detectable = minimum_detectable(found[-1][0].comparison)
    can_rank = all(q.significant for q in questions if q.family != EXPLORATORY)
    if can_rank:
        verdict = (f"this profile can rank estimators whose effects on {metric} exceed {detectable:.3f} "
                   f"with {len(seeds)} seeds")
    else:
        failed = "; ".join(f"{q.algo} − {q.baseline}: {q.words}" for q in questions
                           if q.family != EXPLORATORY and not q.significant)
        verdict = f"this profile cannot rank estimators on {metric} with {len(seeds)} seeds ({failed})"
    floors = [a for a in table.algos if is_floor(a) and (metric == "iou" or a not in BOX_FLOORS)]
    labels = [*references, *CONTROLS, *(a for a in table.algos if a == BASE), *floors]
    scores = run_scores(evalset, {label: run_seeds(table, label) for label in labels}, metric)
    return Calibration(suite=table.suite, metric=metric, seeds=seeds, references=list(references),
                       questions=questions, scores=scores, can_rank=can_rank,
                       detectable=detectable if math.isfinite(detectable) else float("nan"), verdict=verdict,
                       out_dir=str(out_dir),
                       given_up=[g.line() for g in given_up(runs, {a: BASE for a in (*references, *CONTROLS)})])


def run_scores(evalset: Any, seeds: Mapping[str, Sequence[int]], metric: str) -> dict[str, list[float]]:
    """``{label: [mean, sd, runs]}`` of each label's overall ``metric`` over its seeds; a label none of
    whose runs has the metric (a label floor on ``iou``) is left out."""
    scores = {}
    for label, label_seeds in seeds.items():
        points = [evalset.point((label, s)) for s in label_seeds if (label, s) in evalset]
        values = [p[("overall", metric)] for p in points if ("overall", metric) in p]
        if values:
            mean, sd, n = mean_std(values)
            scores[label] = [mean, sd, float(n)]
    return scores


def calibration_line(doc: Mapping[str, Any] | None, suite: str) -> str:
    """The report's line: the stored calibration of the same settings, or that none exists."""
    if doc is None:
        return (f"Calibration: none for this suite's data, config and code; `rlbench-med calibrate --suite {suite}` "
                "measures whether these settings can rank estimators.")
    return Calibration.from_json(doc).line()
