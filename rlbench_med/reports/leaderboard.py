"""``rlbench-med leaderboard``: algorithms x suites on each suite's primary metric, with intervals and floors.

Per suite, the sweeps given for it are combined as ``compare`` combines them (same test records
required); each algorithm's cell is its overall primary metric, the mean over its seeds, with a
95% interval of that mean computed as the comparisons compute theirs
(:func:`.stats.estimate` applied to the score instead of a difference):

- with ``S >= 2`` seeds: ``mean ± t(nu) sqrt(var(seed values)/S + c)``, ``c`` the evaluation noise the
  seeds share (the covariance of their bootstrap replicates), ``nu`` by Satterthwaite;
- with one seed (and for ``base`` and the floors, which do not depend on the training seed): the
  percentile bootstrap over the evaluation records, evaluation-sample uncertainty only;

clipped to the metric's range (:data:`UNIT_METRICS` lie in [0, 1]: with two seeds a t-interval
easily reaches past it, and a score below 0 says nothing).

Rows: trained algorithms by their mean rank over the suites they ran (rank 1 = best in a
suite), then ``base`` and the floors; input ablations (mimic_fusion's ``@text`` ...) stay in the
suite's own report. In each column the best trained algorithm is bold only where it is
significantly better than every other trained algorithm of the suite (paired by seed, Holm across
those tests); ``†`` marks an algorithm some floor beats, ``‡`` one that ``base`` (its starting
policy) beats.

Across suites (:mod:`.across_suites`, rliable's recommendations): the interquartile mean of each
algorithm's runs over suites and seeds with a stratified-bootstrap interval, the probability that
one algorithm's run beats another's, and performance profiles (a figure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlbench_med.reports.across_suites import Aggregate, iqm_over_suites, probability_of_improvement
from rlbench_med.reports.compare import check_comparable, combine, primary_of, write_combined
from rlbench_med.reports.formats import Cell, Table
from rlbench_med.reports.report import DEFAULT_PRIMARY, load_runs, resolve_primary, run_seeds
from rlbench_med.reports.results import ResultTable, build_table, is_reference, split_label
from rlbench_med.reports.stats import EVALUATION_ONLY, ComparisonError, EvaluationSet, compare, estimate
from rlbench_med.reports.sweeps import Sweep
from rlbench_med.reports.testing import holm_family
from rlbench_med.runners.base import BASE
from rlbench_med.suites.floors import FLOOR_RANDOM, is_floor


#: Metrics whose values lie in [0, 1] (scores, not counts or times).
UNIT_METRICS = frozenset({"acc", "f1", "exact", "f1_strict", "acc_release", "iou"})


@dataclass(frozen=True)
class Score:
    """One algorithm's overall primary metric on one suite: mean over seeds with a 95% interval."""

    mean: float
    low: float
    high: float
    n_seeds: int
    method: str

    def text(self) -> str:
        return "–" if math.isnan(self.mean) else f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass
class Column:
    suite: str
    metric: str
    n: int  # test records
    scores: dict[str, Score]
    sweeps: list[str]
    runs: dict[str, list[float]] = field(default_factory=dict)  # trained algorithm -> per-seed values
    best: str | None = None  # the trained algorithm significantly better than every other, if any


@dataclass
class Board:
    columns: list[Column]
    notes: list[str] = field(default_factory=list)

    def runs(self) -> dict[str, dict[str, list[float]]]:
        """``{trained algorithm: {suite: per-seed overall primary metric}}``."""
        out: dict[str, dict[str, list[float]]] = {}
        for col in self.columns:
            for algo, values in col.runs.items():
                out.setdefault(algo, {})[col.suite] = values
        return out

    def algos(self) -> list[str]:
        """Trained algorithms by mean rank over the suites they ran, then base, then the floors."""
        ranks: dict[str, list[int]] = {}
        for col in self.columns:
            trained = sorted((a for a in col.scores if not is_reference(a)), key=lambda a: -col.scores[a].mean)
            for rank, algo in enumerate(trained, start=1):
                ranks.setdefault(algo, []).append(rank)
        refs = list(dict.fromkeys(a for col in self.columns for a in col.scores if is_reference(a)))
        order = sorted(ranks, key=lambda a: (float(np.mean(ranks[a])), a))
        return order + [a for a in refs if not is_floor(a)] + [a for a in refs if is_floor(a)]


def score(evalset: EvaluationSet, algo: str, seeds: Sequence[int], metric: str, level: float = 0.95) -> Score:
    """Mean over ``seeds`` of ``algo``'s overall ``metric`` with its interval (module docstring);
    ``floor:random``'s draws are averaged into one value first."""
    cell = ("overall", metric)
    seeds = [s for s in seeds if (algo, s) in evalset and cell in evalset.point((algo, s))]
    if not seeds:
        return Score(float("nan"), float("nan"), float("nan"), 0, "")
    values = np.array([evalset.point((algo, s))[cell] for s in seeds])
    boot = np.stack([evalset.replicates((algo, s))[cell] for s in seeds])
    if split_label(algo).name == FLOOR_RANDOM:  # draws, not seeds: one value
        values, boot = np.array([values.mean()]), boot.mean(0, keepdims=True)
    est = estimate(values, boot)
    low, high = est.interval(1 - level)
    if metric in UNIT_METRICS:
        low, high = max(low, 0.0), min(high, 1.0)
    return Score(est.diff, low, high, int(values.size), est.method)


def significant_best(evalset: EvaluationSet, table: ResultTable, metric: str, scores: dict[str, Score]) -> str | None:
    """The trained algorithm with the best mean when, paired by seed, it is significantly better than
    every other trained algorithm of the suite (Holm across those tests), else None."""
    trained = [a for a in scores if not is_reference(a) and scores[a].n_seeds]
    if len(trained) < 2:
        return None
    top = max(trained, key=lambda a: scores[a].mean)
    cells = []
    for other in trained:
        if other == top:
            continue
        try:
            found = compare(evalset, top, table.seeds.get(top, []), other, table.seeds.get(other, []), metrics={metric})
        except ComparisonError:
            return None
        cell = next((c for c in found if c.domain == "overall"), None)
        if cell is None:
            return None
        cells.append(cell)
    tested = holm_family(cells, "leaderboard")
    return top if all(c.significant and c.diff > 0 for c in tested) else None


def suite_column(sweeps: Sequence[Sweep], scratch: Path, *, n_boot: int = 2000, seed: int = 0) -> tuple[Column, list[str]]:
    """One suite's column from its sweeps (combined as ``compare`` does)."""
    check_comparable(sweeps)
    combined = combine(sweeps)
    notes = list(combined.notes)
    folder = scratch / f"leaderboard-{combined.suite}"
    write_combined(combined, folder)
    table = build_table(combined.rows)
    metric = resolve_primary(table, primary_of(sweeps, notes) or DEFAULT_PRIMARY)
    shown = [a for a in table.algos if not split_label(a).inputs]
    if len(shown) < len(table.algos):
        notes.append("input ablations (e.g. @text) are left out of the leaderboard; rlbench-med report shows them")
    # Only what results.csv scores on the metric (the box floors score iou alone, not a label metric).
    table.algos = [a for a in shown if table.cell(a, "overall", metric) is not None]
    runs = load_runs(folder, table, notes)
    scores: dict[str, Score] = {}
    best = None
    if runs:
        evalset = EvaluationSet.from_runs(runs, n_boot=n_boot, seed=seed)
        for algo in table.algos:
            s = score(evalset, algo, run_seeds(table, algo), metric)
            if s.n_seeds:
                scores[algo] = s
        best = significant_best(evalset, table, metric, scores)
    for algo in table.algos:  # no predictions (e.g. a runner that writes none): the mean over seeds alone
        c = table.cell(algo, "overall", metric)
        if algo not in scores and c is not None:
            scores[algo] = Score(c.mean, float("nan"), float("nan"), c.n_seeds, "no predictions: no interval")
    n = table.n.get(("overall", metric), 0)
    per_seed = {a: [float(r["value"]) for r in sorted(combined.rows, key=lambda r: int(r["seed"]))
                    if r["algo"] == a and r["domain"] == "overall" and r["metric"] == metric]
                for a in table.algos if not is_reference(a)}
    column = Column(combined.suite, metric, n, scores, [s.name for s in sweeps], {a: v for a, v in per_seed.items() if v},
                    best)
    return column, [f"{combined.suite}: {x}" for x in notes]


def make_board(sweeps: Sequence[Sweep], scratch: Path, *, n_boot: int = 2000, seed: int = 0) -> Board:
    """Group the sweeps by suite (in the order first given) and build one column per suite."""
    by_suite: dict[str, list[Sweep]] = {}
    for s in sweeps:
        by_suite.setdefault(s.suite, []).append(s)
    board = Board([])
    for group in by_suite.values():
        column, notes = suite_column(group, scratch, n_boot=n_boot, seed=seed)
        board.columns.append(column)
        board.notes += notes
    return board


def board_table(board: Board) -> Table:
    """Rows = algorithms, columns = suites: ``mean [95% interval]`` of each suite's primary metric."""
    header = ["Algorithm", *[f"{c.suite} {c.metric} (n={c.n})" for c in board.columns]]
    rows = []
    for algo in board.algos():
        row = [Cell(algo)]
        for col in board.columns:
            s = col.scores.get(algo)
            if s is None:
                row.append(Cell("–"))
                continue
            beaten = not is_reference(algo) and any(col.scores[f].mean > s.mean for f in col.scores if is_floor(f))
            below_base = not is_reference(algo) and any(col.scores[b].mean > s.mean for b in col.scores
                                                         if split_label(b).name == BASE)
            row.append(Cell(s.text() + (" †" if beaten else "") + (" ‡" if below_base else ""), best=algo == col.best,
                            mark=beaten or below_base,
                            numbers=(("", s.mean), ("ci_low", s.low), ("ci_high", s.high), ("seeds", float(s.n_seeds)))))
        rows.append(row)
    seeds = sorted({s.n_seeds for c in board.columns for a, s in c.scores.items() if not is_reference(a)})
    how = (f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''}" if len(seeds) == 1
           else f"{seeds[0]} to {seeds[-1]} seeds (see the CSV's seeds columns)") if seeds else "no trained algorithm"
    one_seed = any(s.method in EVALUATION_ONLY for c in board.columns for a, s in c.scores.items() if not is_reference(a))
    note = (f"Overall primary metric of each suite: mean over {how} with its 95% interval (t over seeds with the "
            "evaluation noise the seeds share, Satterthwaite degrees of freedom; for base and the floors a bootstrap "
            "over the evaluation records only"
            + ("; one seed: evaluation noise only" if one_seed else "") + "). Bold: the suite's best trained "
            "algorithm, where significantly better than every other (paired by seed, Holm). †: a floor scores higher. "
            "‡: base (the starting policy) scores higher.")
    return Table("rlbench-med leaderboard", header, rows, keys=1, notes=[note])


def across_tables(board: Board, n_boot: int = 2000) -> list[Table]:
    """The interquartile mean over suites and seeds of each trained algorithm, and the probability of
    improvement of each pair (:mod:`.across_suites`); nothing with a single suite."""
    runs = board.runs()
    if len(board.columns) < 2 or not runs:
        return []
    algos = [a for a in board.algos() if a in runs]
    suites = [c.suite for c in board.columns]
    iqm_rows = []
    for algo in algos:
        agg = iqm_over_suites(runs[algo], n_boot)
        missing = [s for s in suites if s not in runs[algo]]
        iqm_rows.append([Cell(algo), Cell(agg.text(), numbers=_numbers(agg)),
                         Cell(str(sum(len(v) for v in runs[algo].values()))),
                         Cell(", ".join(missing) or "–")])
    iqm = Table("interquartile mean over suites and seeds", ["Algorithm", "IQM [95% CI]", "runs", "suites missing"],
                iqm_rows, keys=1, notes=[
                    "IQM: the mean of the middle 50% of an algorithm's runs (every seed of every suite it ran, primary "
                    "metrics as they are); 95% interval from a stratified bootstrap (runs resampled within each suite); "
                    "no interval with one seed per suite."])
    poi_rows = []
    for x in algos:
        row = [Cell(x)]
        for y in algos:
            agg = probability_of_improvement(runs[x], runs[y], n_boot) if x != y else None
            row.append(Cell(agg.text() if agg else "–", numbers=_numbers(agg) if agg else ()))
        poi_rows.append(row)
    poi = Table("probability of improvement P(row > column)", ["Algorithm", *algos], poi_rows, keys=1, notes=[
        "P(X > Y): the chance that a run of X scores above a run of Y on the same suite (ties count 1/2), averaged "
        "over the suites both ran, with its stratified-bootstrap 95% interval; 0.5 is no difference."])
    return [iqm, poi]


def _numbers(agg: Aggregate) -> tuple[tuple[str, float], ...]:
    return (("", agg.value), ("ci_low", agg.low), ("ci_high", agg.high))
