"""A tune's trials scored on the validation split, each algorithm's choice and sensitivity, the tune's
report, and the tuning section of a ``run --tuned`` report.

Scores come from the trials' validation predictions (``<out>/predictions/validation/``) through the
report's own statistics: :class:`~rlbench_med.reports.stats.EvaluationSet` (the metrics of
``suites/metrics.py``, one bootstrap shared by every run). A trial's score is its overall primary
metric, the mean over the tune's seeds; a trial missing a seed (a failed job) has none, so every
score rests on the same seeds. ``base`` and the floors are read from the tune's validation.csv
(their validation rows). Nothing here opens a test prediction or a results.csv.

Sensitivity, per algorithm: the range (best - worst) and the standard deviation of its trials'
scores, beside the evaluation noise of one score (the bootstrap sd of the chosen trial's score over
the validation records), and two paired differences on those records with the report's intervals
(:func:`~rlbench_med.reports.stats.compare`): chosen - trial 0 (the tuning gain) and chosen -
worst. Both pairs are picked by looking at the same scores, so their intervals are optimistic; with
one seed they cover evaluation noise only, not the training seed's.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlbench_med.reports.formats import Table, cells, html_page
from rlbench_med.reports.render import Section, comparison_cell, sections_html, sections_markdown
from rlbench_med.reports.results import is_reference
from rlbench_med.reports.stats import Comparison, ComparisonError, EvaluationSet, compare, read_predictions
from rlbench_med.runners.base import FAILED_CSV, VALIDATION, predictions_dir, read_failed, read_results
from rlbench_med.runners.sweep.plan import tuned_label, variant_label
from rlbench_med.runners.sweep.tuning import Dimension, TuneRecord, write_record

TRIALS_CSV = "trials.csv"


@dataclass(frozen=True)
class TrialScore:
    """One trial of one algorithm on the validation split: ``score`` (mean over the tune's seeds, None
    when a seed did not finish) and ``se``, the bootstrap sd of the score over the validation records."""

    trial: int
    label: str  # the run's label, e.g. grpo[trial1]
    setting: dict[str, Any]  # the searched settings' values (trial 0: the shared config's)
    score: float | None
    se: float = float("nan")


@dataclass
class AlgoTuning:
    """An algorithm's trials, its choice and how much the setting moved its score."""

    algo: str
    trials: list[TrialScore]
    gain: Comparison | None = None  # chosen - trial 0, overall primary (None: trial 0 was chosen)
    spread: Comparison | None = None  # chosen - worst (None: fewer than two scored trials)

    @property
    def scored(self) -> list[TrialScore]:
        return [t for t in self.trials if t.score is not None]

    @property
    def best(self) -> TrialScore | None:
        """The highest score; a tie goes to the lowest trial (the shared setting first)."""
        return max(self.scored, key=lambda t: (t.score, -t.trial)) if self.scored else None

    @property
    def worst(self) -> TrialScore | None:
        return min(self.scored, key=lambda t: (t.score, t.trial)) if self.scored else None

    @property
    def range(self) -> float:
        """Best minus worst score; nan without a scored trial."""
        scores = [t.score for t in self.scored]
        return max(scores) - min(scores) if scores else float("nan")  # type: ignore[type-var,operator]

    @property
    def sd(self) -> float:
        """Sample sd (ddof 1) of the trials' scores; nan with fewer than two."""
        values = [t.score for t in self.scored]
        return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


@dataclass
class TuneScores:
    record: TuneRecord
    algos: dict[str, AlgoTuning]
    references: dict[str, float]  # base and floors: overall primary on the validation split
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _interval(c: Comparison | None) -> dict[str, float] | None:
    return None if c is None else {"diff": c.diff, "low": c.low, "high": c.high, "n_seeds": c.n_seeds}


def score_tune(out_dir: Path, record: TuneRecord, *, n_boot: int = 2000, seed: int = 0) -> TuneScores:
    """Score every trial of ``record`` from the validation predictions in ``out_dir`` (module docstring)."""
    out_dir = Path(out_dir)
    primary, cell = record.primary_metric, ("overall", record.primary_metric)
    index_path = predictions_dir(out_dir, VALIDATION) / "index.json"
    index: dict[str, str] = json.loads(index_path.read_text()) if index_path.is_file() else {}
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for algo in record.algos:
        for trial in record.trials:
            label = variant_label(algo, trial["label"])
            for s in record.seeds:
                rel = index.get(f"{label}|{s}")
                if rel is not None:
                    runs[(label, s)] = read_predictions(out_dir / rel)
    notes: list[str] = []
    evalset = EvaluationSet.from_runs(runs, n_boot=n_boot, seed=seed) if runs else None
    if evalset is not None:
        record.validation_records = evalset.n_samples["overall"]
        for (label, s), why in evalset.excluded.items():
            notes.append(f"{label} seed {s}: not scored ({why}).")
    searched = [Dimension.from_dict(d).name for d in record.space]
    scores: dict[str, AlgoTuning] = {}
    for algo in record.algos:
        trials = []
        for trial in record.trials:
            label = variant_label(algo, trial["label"])
            setting = {name: trial["setting"].get(name, record.config.get(name)) for name in searched}
            keys = [(label, s) for s in record.seeds]
            if evalset is None or not all(k in evalset for k in keys):
                trials.append(TrialScore(trial["trial"], label, setting, None))
                continue
            score = float(np.mean([evalset.point(k)[cell] for k in keys]))
            replicates = np.mean([evalset.replicates(k)[cell] for k in keys], axis=0)
            trials.append(TrialScore(trial["trial"], label, setting, score, float(np.nanstd(replicates, ddof=1))))
        tuning = AlgoTuning(algo, trials)
        best, worst, default = tuning.best, tuning.worst, trials[0]
        if evalset is not None and best is not None:
            tuning.gain = _overall(evalset, best, default, record, primary)
            tuning.spread = _overall(evalset, best, worst, record, primary)
        scores[algo] = tuning
    references: dict[str, float] = {}
    validation_csv = out_dir / "validation.csv"
    if validation_csv.is_file():
        for row in read_results(validation_csv):
            if is_reference(row["algo"]) and (row["domain"], row["metric"]) == cell:
                references[row["algo"]] = float(row["value"])
    failed = [(str(r["algo"]), int(r["seed"]), str(r["error"])) for r in read_failed(out_dir / FAILED_CSV)]
    return TuneScores(record, scores, references, failed, notes)


def _overall(evalset: EvaluationSet, a: TrialScore, b: TrialScore | None, record: TuneRecord,
             primary: str) -> Comparison | None:
    """``a - b`` on the overall primary metric, paired by seed; None when ``b`` is ``a`` or missing."""
    if b is None or b.score is None or b.trial == a.trial:
        return None
    try:
        found = compare(evalset, a.label, record.seeds, b.label, record.seeds, metrics={primary})
    except ComparisonError:
        return None
    return next((c for c in found if c.domain == "overall"), None)


def choose(scores: TuneScores) -> None:
    """Fill ``record.scores`` and ``record.chosen`` (the best trial per algorithm, with its sensitivity)."""
    record = scores.record
    record.scores = {algo: {t.label: t.score for t in tuning.trials} for algo, tuning in scores.algos.items()}
    record.chosen = {}
    for algo, tuning in scores.algos.items():
        best = tuning.best
        if best is None:
            continue
        record.chosen[algo] = {
            "trial": best.trial, "setting": dict(record.trials[best.trial]["setting"]), "score": best.score,
            "se": best.se, "default_score": tuning.trials[0].score, "worst_score": min(t.score for t in tuning.scored),
            "range": tuning.range, "sd": tuning.sd, "trials_scored": len(tuning.scored),
            "gain": _interval(tuning.gain), "spread": _interval(tuning.spread),
        }


def finish_tune(out_dir: Path, record: TuneRecord, *, n_boot: int = 2000,
                seed: int = 0) -> tuple[TuneScores, list[Path]]:
    """Score the trials, choose, and write ``tune.json``, ``tuned/<algo>.yaml``, ``trials.csv``,
    ``report.md`` and ``report.html`` into ``out_dir``; returns the scores and the files written."""
    out_dir = Path(out_dir)
    scores = score_tune(out_dir, record, n_boot=n_boot, seed=seed)
    choose(scores)
    written = [write_record(record, out_dir)]
    written += [out_dir / c["file"] for c in record.chosen.values()]
    written.append(write_trials_csv(out_dir / TRIALS_CSV, scores))
    secs = tune_sections(scores, out_dir)
    title = f"rlbench-med tune: {record.suite} ({record.profile})"
    (out_dir / "report.md").write_text("\n".join([f"# {title}", *sections_markdown(secs)]).rstrip() + "\n")
    (out_dir / "report.html").write_text(html_page(title, "\n".join([f"<h1>{title}</h1>", *sections_html(secs)])))
    return scores, [*written, out_dir / "report.md", out_dir / "report.html"]


def write_trials_csv(path: Path, scores: TuneScores) -> Path:
    """``trials.csv``: algo, trial, each searched setting, score, se, chosen (one row per algorithm x trial)."""
    names = [Dimension.from_dict(d).name for d in scores.record.space]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["algo", "trial", *names, "score", "se", "chosen"])
        for algo, tuning in scores.algos.items():
            chosen = scores.record.chosen.get(algo, {}).get("trial")
            for t in tuning.trials:
                writer.writerow([algo, t.trial, *(t.setting.get(n) for n in names),
                                 "" if t.score is None else t.score, "" if t.score is None else t.se,
                                 t.trial == chosen])
    return path


# --------------------------------------------------------------------------------------------
# words and tables
# --------------------------------------------------------------------------------------------
def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _diff(c: Mapping[str, float] | None) -> str:
    if c is None:
        return "–"
    return f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"


def protocol_line(record: TuneRecord) -> str:
    """The protocol in one paragraph (both reports)."""
    space = "; ".join(Dimension.from_dict(d).describe() for d in record.space)
    seeds = ",".join(map(str, record.seeds))
    records = f" ({record.validation_records} records)" if record.validation_records else ""
    return (f"Every algorithm had the same budget: {record.budget} trial(s), the same settings for each ({space}): "
            f"trial 0 is the shared setting, the others Ray Tune's random search of that space (seed "
            f"{record.search_seed}). Each trial trained at seed(s) {seeds} and was scored on the validation split's "
            f"overall `{record.primary_metric}`{records}, the mean over those seeds; the best trial is each "
            "algorithm's tuned setting (a tie goes to the shared setting). No test record was answered while tuning.")


def sensitivity_line(algo: str, chosen: Mapping[str, Any]) -> str:
    """What the spread of one algorithm's trials says, in words."""
    spread, gain = chosen.get("spread"), chosen.get("gain")
    head = (f"`{algo}`: {chosen['trials_scored']} trial(s) scored: shared setting {_num(chosen['default_score'])}, "
            f"best {_num(chosen['score'])} (trial {chosen['trial']}), worst {_num(chosen['worst_score'])}; range "
            f"{_num(chosen['range'])}, sd over trials {_num(chosen['sd'])}, evaluation noise of one score "
            f"{_num(chosen['se'])}.")
    if spread is None:
        words = " One scored trial: nothing says how much the setting matters."
    elif spread["low"] > 0:
        words = (f" The setting matters beyond evaluation noise: best − worst {_diff(spread)} on the same records "
                 "(the pair is picked as the extremes, so the interval is optimistic).")
    else:
        words = (f" No trial is detectably better than another on these records (best − worst {_diff(spread)} "
                 "includes 0): at this budget, tuning found no setting that matters for it.")
    if gain is None:
        return head + words + " The shared setting scored best: it is its tuned setting."
    return head + words + f" Chosen − shared on validation: {_diff(gain)} (picked on these records: optimistic)."


def tune_sections(scores: TuneScores, out_dir: Path) -> list[Section]:
    """The tune's report: protocol, the choice of each algorithm, sensitivity, every trial, references."""
    record = scores.record
    primary = record.primary_metric
    out = [Section(2, "Protocol", [protocol_line(record)], [], [])]
    if scores.failed:
        out.append(Section(2, "Failed trials", ["A trial missing a seed has no score; it is left out of the choice."],
                           [], [f"`{algo}` seed {s}: {why}" for algo, s, why in scores.failed]))
    rows = []
    for algo in scores.algos:
        chosen = record.chosen.get(algo)
        if chosen is None:
            rows.append([algo, "none (no trial scored)", "–", "–", "–", "–"])
            continue
        setting = ", ".join(f"{k}={v}" for k, v in chosen["setting"].items()) or "the shared setting"
        rows.append([algo, f"trial {chosen['trial']}: {setting}", f"{_num(chosen['score'])} ± {_num(chosen['se'])}",
                     _num(chosen["default_score"]), _diff(chosen["gain"]), chosen["file"]])
    choice = Table(f"validation {primary} (overall) of each algorithm's chosen trial",
                   ["Algorithm", "Chosen", "Score ± se", "Shared (trial 0)", "Chosen − shared", "File"], cells(rows))
    out.append(Section(2, "Tuned settings", [
        f"Score: overall `{primary}` on the validation split, mean over seeds {','.join(map(str, record.seeds))}; se: "
        "its bootstrap sd over the validation records. Train the tuned settings with `rlbench-med run --tuned "
        f"{out_dir}` (each algorithm at its own setting, beside the shared one, at the profile's seeds; the test "
        "split scored once)."], [choice], []))
    out.append(Section(2, "Sensitivity", [
        "How far each algorithm's validation score moved over the same settings. An algorithm whose score moves "
        "much more than another's gains more from tuning: a comparison at one shared setting can then favour the "
        "algorithm that setting happens to suit."], [],
        [sensitivity_line(algo, record.chosen[algo]) for algo in scores.algos if algo in record.chosen]))
    names = [Dimension.from_dict(d).name for d in record.space]
    trial_rows = [[algo, str(t.trial), *(str(t.setting.get(n)) for n in names), _num(t.score)]
                  for algo, tuning in scores.algos.items() for t in tuning.trials]
    out.append(Section(2, "Every trial", [], [Table(f"validation {primary} (overall) per trial",
                                                    ["Algorithm", "Trial", *names, "Score"], cells(trial_rows),
                                                    keys=2)], []))
    if scores.references:
        out.append(Section(3, "Where the scores sit", [
            f"Overall validation `{primary}` of the shared starting policy and of the trivial floors."], [],
            [f"`{name}`: {_num(value)}" for name, value in scores.references.items()]))
    if scores.notes:
        out.append(Section(2, "Notes", [], [], list(scores.notes)))
    return out


def tuned_sections(record: TuneRecord, folder: Path, baseline: str) -> Any:
    """The ``run --tuned`` report's section builder (``make_report(extra_sections=...)``): the tuning
    protocol, each algorithm's setting and sensitivity, and the test comparison at the tuned settings
    beside the one at the shared setting."""

    def build(report: Any) -> list[Section]:
        primary = report.primary
        algos = [a for a in record.algos if a in record.chosen and a in report.table.algos]
        rows = []
        for algo in algos:
            c = record.chosen[algo]
            setting = ", ".join(f"{k}={v}" for k, v in c["setting"].items()) or "the shared setting"
            rows.append([algo, f"trial {c['trial']}: {setting}", _num(c["score"]), _num(c["default_score"]),
                         _num(c["range"])])
        settings = Table(f"tuned settings (validation {primary}, overall)",
                         ["Algorithm", "Tuned setting", "Tuned", "Shared", "Range over trials"], cells(rows))

        def cell(a: str, b: str) -> Comparison | None:
            return report.comparison(a, b).get(("overall", primary))

        pairs = [(a, baseline) for a in algos if a != baseline and baseline in algos]
        compared = [[f"{a} − {b}", comparison_cell(cell(tuned_label(a), tuned_label(b))), comparison_cell(cell(a, b))]
                    for a, b in pairs]
        compared += [[f"{a}: tuned − shared", comparison_cell(cell(tuned_label(a), a)), "–"] for a in algos]
        table = Table(f"test {primary} (overall): the comparison at the tuned settings and at the shared one",
                      ["Comparison", "Tuned settings", "Shared setting"], cells(compared))
        bullets = []
        for a, b in pairs:
            tuned, shared = cell(tuned_label(a), tuned_label(b)), cell(a, b)
            if tuned is None or shared is None:
                continue
            same = (tuned.diff > 0) == (shared.diff > 0)
            noise = tuned.low <= 0 <= tuned.high or shared.low <= 0 <= shared.high
            bullets.append(f"`{a}` − `{b}`: {tuned.diff:+.3f} at the tuned settings, {shared.diff:+.3f} at the shared "
                           "one: " + ("the same direction" if same else "the direction flips")
                           + ("; an interval includes 0, so the direction is within the noise" if noise else ""))
        bullets += [sensitivity_line(a, record.chosen[a]) for a in algos]
        return [Section(2, "Tuned against the shared setting", [
            protocol_line(record) + f" Tune: {folder}.",
            "This run trained each algorithm twice at its seeds, at the shared setting (`grpo`) and at its tuned one "
            "(`grpo (tuned)`), and scored the test split once. The tuned comparison asks which estimator is better "
            "when each gets the same tuning budget; the shared one, which is better at one setting chosen for none "
            "of them."], [settings, table], bullets)]

    return build


def summary_lines(record: TuneRecord) -> list[str]:
    """The terminal summary of a finished tune: each algorithm's choice and spread, one line each."""
    out = []
    for algo in record.algos:
        c = record.chosen.get(algo)
        if c is None:
            out.append(f"{algo}: no trial scored (see failed.csv); no tuned setting")
            continue
        setting = ", ".join(f"{k}={v}" for k, v in c["setting"].items()) or "the shared setting"
        out.append(f"{algo}: trial {c['trial']} ({setting}), validation {record.primary_metric} {_num(c['score'])} "
                   f"(shared {_num(c['default_score'])}; range over {c['trials_scored']} trial(s) {_num(c['range'])}, "
                   f"evaluation noise {_num(c['se'])})")
    return out


def log_tune_summary(uri: str, parent_id: str | None, record: TuneRecord) -> None:
    """The tune's parent run gets each algorithm's chosen validation score and range, ``tune/<algo>/...``."""
    from rlbench_med.reports.tracking import MLflowTracker, metric_key

    if parent_id is None:
        return
    metrics = {}
    for algo, c in record.chosen.items():
        for name in ("score", "default_score", "range"):
            value = c.get(name)
            if value is not None and math.isfinite(value):
                metrics[metric_key(f"tune/{algo}/{name}")] = float(value)
    MLflowTracker(uri, parent_id).log_metrics(metrics, step=0)
