"""Build a sweep's report from results.csv (+ predictions files, + MLflow curves when given).

``make_report(out_dir)`` computes the :class:`Report` record (table, the paper's numbers, paired
comparisons, floors, hedging, figures) and writes ``comparisons.csv``, ``report.md``,
``report.html`` and ``figures/*.png`` into ``out_dir``. Anything that cannot be computed is said in
the report's notes, never skipped silently.

What is compared (``reports/stats.py`` gives the intervals, ``reports/testing.py`` the testing
plan, ``reports/verdicts.py`` the words): every trained algorithm against the ``--baseline``
algorithm (paired by seed), against ``base`` (the shared starting policy) and against each floor;
an input ablation ``algo@text`` against ``baseline@text`` and ``base@text``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rlbench_med.registry import RegistryError
from rlbench_med.reports import figures as F
from rlbench_med.reports.classes import GivenUp, given_up
from rlbench_med.reports.paper import paper_caption, paper_numbers
from rlbench_med.reports.render import html_report, markdown_report, sections
from rlbench_med.reports.results import (
    Label,
    ResultTable,
    build_table,
    is_reference,
    load_results,
    predictions_path,
    split_label,
)
from rlbench_med.reports.stats import (
    Comparison,
    ComparisonError,
    EvaluationSet,
    compare,
    read_predictions,
    write_comparisons,
)
from rlbench_med.reports.testing import apply_plan, best_floor
from rlbench_med.reports.verdicts import Verdict, minimum_detectable, verdict
from rlbench_med.runners.base import BASE, FAILED_CSV, TEST, predictions_dir, read_failed
from rlbench_med.suites.floors import (
    BOX_FLOORS,
    FLOOR_ALL,
    FLOOR_RANDOM,
    FLOOR_SEED,
    RANDOM_DRAWS,
    is_floor,
    random_draws,
)
from rlbench_med.suites.metrics import DESCRIPTIVE_METRICS, compute_metrics

Curves = Mapping[tuple[str, int], Mapping[str, Sequence[tuple[int, float]]]]

DEFAULT_PRIMARY = "f1_strict"
#: The hedging rule: an f1 gain over a baseline while naming at least this many more labels per answer.
HEDGE_LABELS = 0.2


@dataclass
class Report:
    suite: str
    source: str
    baseline: str
    primary: str
    out_dir: Path
    table: ResultTable
    paper: dict[str, dict[tuple[str, str], float]]
    paper_caption: str | None
    comparisons: list[Comparison]
    truth_labels: dict[str, float] = field(default_factory=dict)
    hedging: list[str] = field(default_factory=list)
    given_up: list[GivenUp] = field(default_factory=list)  # classes a trained policy stopped answering
    floor_beats: set[tuple[str, str, str]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    markdown: Path | None = None
    html: Path | None = None
    comparisons_csv: Path | None = None
    detectable: list[Detectable] = field(default_factory=list)
    #: Rows scored from responses of models trained elsewhere (``rlbench-med score``), not training runs.
    scored: bool = False
    #: Jobs of the sweep that failed and have no results (``failed.csv``): ``(algo, seed, reason)``.
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    best_floor: str | None = None
    #: One line: the latest calibration of the same suite, data, config and code, or that none exists.
    calibration: str = ""
    #: Sections a caller adds after the headline (``run --tuned``: the tuning protocol and both comparisons).
    extra_sections: list[Any] = field(default_factory=list)

    def pairs(self) -> list[tuple[str, str]]:
        """``(algo, baseline)`` of every comparison, in report order."""
        return list(dict.fromkeys((c.algo, c.baseline) for c in self.comparisons))

    def comparison(self, algo: str, baseline: str) -> dict[tuple[str, str], Comparison]:
        """``{(domain, metric): Comparison}`` of one pair."""
        return {(c.domain, c.metric): c for c in self.comparisons if c.algo == algo and c.baseline == baseline}

    def verdict(self, algo: str, baseline: str) -> Verdict | None:
        """The words of one pair's test on the overall primary metric (None when it was not compared)."""
        c = self.comparison(algo, baseline).get(("overall", self.primary))
        return verdict(c) if c is not None else None


def _suite_variants(suite: str) -> dict[str, Any]:
    from rlbench_med.suites import get_suite

    try:
        return dict(getattr(get_suite(suite), "variants", {}) or {})
    except RegistryError:
        return {}


def primary_metric_of(run_dir: Path, suite: str) -> str:
    """The sweep's ``primary_metric`` (config.yaml), else the suite's, else ``f1_strict``."""
    saved = Path(run_dir) / "config.yaml"
    if saved.is_file():
        metric = (yaml.safe_load(saved.read_text()) or {}).get("primary_metric")
        if metric:
            return str(metric)
    from rlbench_med.suites import get_suite

    try:
        return get_suite(suite).primary_metric
    except RegistryError:
        return DEFAULT_PRIMARY


def comparison_pairs(table: ResultTable, baseline: str) -> list[tuple[str, str, bool]]:
    """``(algo, baseline, constant_baseline)`` of every comparison the report makes (module docstring).

    In a report combining sweeps (``rlbench-med compare``), an algorithm of sweep ``s`` is compared
    with the baseline and ``base`` of the same sweep where they differ between sweeps, and with the
    same algorithm of the first sweep that ran it (the sweeps' difference, paired by seed).
    """
    def same_group(label: str, name: str) -> str | None:
        parts = split_label(label)
        for candidate in (Label(name, parts.inputs, parts.sweep), Label(name, parts.inputs)):
            if str(candidate) in table.algos:
                return str(candidate)
        return None

    pairs: list[tuple[str, str, bool]] = []
    for algo in table.trained:
        paired = same_group(algo, baseline)
        if paired is not None and paired != algo:
            pairs.append((algo, paired, False))
    first: dict[tuple[str, str], str] = {}
    # A label without a sweep comes first (stable otherwise): ``grpo (tuned)`` of ``run --tuned`` is
    # compared with ``grpo``, whichever of the two finished first.
    for algo in sorted(table.trained, key=lambda a: split_label(a).sweep != ""):
        parts = split_label(algo)
        earlier = first.setdefault((parts.name, parts.inputs), algo)
        if earlier != algo:
            pairs.append((algo, earlier, False))
    for algo in table.trained:
        base = same_group(algo, BASE)
        if base is not None:
            pairs.append((algo, base, True))
    for algo in table.trained:
        for floor in table.floors:
            pairs.append((algo, floor, True))
    return pairs


def load_runs(run_dir: Path, table: ResultTable, notes: list[str],
              split: str = TEST) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """``{(algo, seed): prediction records}`` of ``split`` of every run of ``table`` in ``run_dir``, with
    ``floor:random``'s draws derived from ``floor:all``'s answers; a missing file goes to ``notes``."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    randoms = [a for a in table.algos if split_label(a).name == FLOOR_RANDOM]
    for algo in table.algos:
        if algo in randoms:
            continue
        for seed in table.seeds.get(algo, []):
            path = predictions_path(run_dir, algo, seed, split)
            if path is None:
                notes.append(f"{algo} seed {seed}: no predictions file in {predictions_dir(run_dir, split)}; left out "
                             "of its comparisons.")
                continue
            runs[(algo, seed)] = read_predictions(path)
    for random in randoms:  # its draws come from floor:all's answers (of the same sweep)
        every = (str(replace(split_label(random), name=FLOOR_ALL)), FLOOR_SEED)
        if every in runs:
            for k, draw in enumerate(random_draws(runs[every], RANDOM_DRAWS)):
                runs[(random, k)] = draw
    return runs


def run_seeds(table: ResultTable, label: str) -> list[int]:
    """The seeds of ``label``'s runs in :func:`load_runs`' result: ``floor:random``'s are its draws."""
    return list(range(RANDOM_DRAWS)) if split_label(label).name == FLOOR_RANDOM else table.seeds.get(label, [])


def resolve_primary(table: ResultTable, metric: str) -> str:
    """``metric`` when the table has it, else the first of the default headline, ``f1`` and ``iou`` it has."""
    if metric in table.metrics:
        return metric
    return next((m for m in (DEFAULT_PRIMARY, "f1", "iou") if m in table.metrics), metric)


def floor_means(table: ResultTable, metric: str) -> dict[str, float]:
    """Each floor's overall ``metric`` in the table (the floors that score it)."""
    return {f: c.mean for f in table.floors if (c := table.cell(f, "overall", metric)) is not None}


def compare_all(
    run_dir: Path, table: ResultTable, baseline: str, primary: str, *, n_boot: int = 2000, seed: int = 0,
) -> tuple[list[Comparison], dict[str, float], list[str], dict[tuple[str, int], list[dict[str, Any]]]]:
    """Every comparison of :func:`comparison_pairs` from the predictions files, tested by the plan
    (:func:`~rlbench_med.reports.testing.apply_plan`); also the truth's labels per answer, the notes and
    the prediction records read (:func:`load_runs`; none for a suite without label or box metrics)."""
    notes: list[str] = []
    if not any(m in table.metrics for m in ("acc", "f1", "iou")):
        return [], {}, notes, {}
    if all(split_label(a).name != baseline for a in table.algos):
        notes.append(
            f"No comparison with a baseline algorithm: the baseline {baseline!r} is not in this run "
            f"(pass --baseline one of: {', '.join(table.trained) or '(none)'})."
        )
    runs = load_runs(Path(run_dir), table, notes)
    if not runs:
        return [], {}, notes, runs
    evalset = EvaluationSet.from_runs(runs, n_boot=n_boot, seed=seed)
    for (algo, s), why in evalset.excluded.items():
        notes.append(f"{algo} seed {s}: not compared ({why}).")
    reference = next(iter(runs.values()))
    truth = compute_metrics({**r, "predicted": r["labels"]} for r in reference)
    truth_labels = {r["domain"]: float(r["value"]) for r in truth if r["metric"] == "labels"}
    comparisons: list[Comparison] = []
    for algo, base, constant in comparison_pairs(table, baseline):
        try:
            comparisons += compare(evalset, algo, table.seeds.get(algo, []), base, run_seeds(table, base),
                                   constant_baseline=constant,
                                   metrics={"iou"} if split_label(base).name in BOX_FLOORS else None)
        except ComparisonError as exc:
            notes.append(f"{algo} vs {base}: no comparison ({exc}).")
    floor = best_floor(comparisons, primary, floor_means(table, primary))
    return apply_plan(comparisons, primary, floor), truth_labels, notes, runs


def hedging_warnings(table: ResultTable, report_pairs: Sequence[tuple[str, str]], truth: Mapping[str, float],
                     comparisons: Sequence[Comparison] = ()) -> list[str]:
    """Plain-language warnings where an ``f1`` gain comes with :data:`HEDGE_LABELS` or more labels per answer.

    A gain is one the evaluation can tell from noise: where ``comparisons`` hold the cell's ``f1``
    interval, its lower end must be above 0 (a +0.006 inside the noise is no gain to explain)."""
    lows = {(c.algo, c.baseline, c.domain): c.low for c in comparisons if c.metric == "f1"}
    out: list[str] = []
    for algo, base in report_pairs:
        if is_floor(base):
            continue
        hits = []
        for domain in table.domains:
            fa, fb = table.cell(algo, domain, "f1"), table.cell(base, domain, "f1")
            la, lb = table.cell(algo, domain, "labels"), table.cell(base, domain, "labels")
            if not (fa and fb and la and lb):
                continue
            low = lows.get((algo, base, domain))
            if fa.mean > fb.mean and la.mean - lb.mean >= HEDGE_LABELS and (low is None or low > 0):
                hits.append((domain, fa.mean - fb.mean, la.mean, lb.mean))
        if not hits:
            continue
        overall = next((h for h in hits if h[0] == "overall"), None)
        where = ", ".join(h[0] for h in hits if h[0] != "overall")
        head = hits[0] if overall is None else overall
        t = truth.get(head[0])
        out.append(
            f"{algo} vs {base}: its f1 gain ({head[1]:+.3f} on {head[0]}) comes with {head[2]:.2f} labels per answer "
            f"against {head[3]:.2f}" + (f" (the truth has {t:.2f})" if t is not None else "")
            + (f"; also in {where}" if where and overall is not None else "")
            + ". Part of the gain may be paid by hedging, which the paper's f1 rewards and f1_strict and exact do not."
        )
    return out


@dataclass(frozen=True)
class Detectable:
    """The minimum detectable effect (80% power) of the test one comparison cell ran, with its own noise."""

    algo: str
    baseline: str
    domain: str
    metric: str
    mde: float
    seeds: int


def detectable_effects(comparisons: Sequence[Comparison], metric: str) -> list[Detectable]:
    """The MDE of every comparison of two trained algorithms on ``metric``
    (:func:`~rlbench_med.reports.verdicts.minimum_detectable`: the test's method, level and sides,
    seed spread and shared evaluation noise; with one seed, evaluation noise only)."""
    out = []
    for c in comparisons:
        if c.metric != metric or is_reference(c.baseline):
            continue
        mde = minimum_detectable(c)
        if mde == mde:
            out.append(Detectable(c.algo, c.baseline, c.domain, c.metric, mde, c.n_seeds))
    return out


def floor_wins(table: ResultTable) -> set[tuple[str, str, str]]:
    """``(algo, domain, metric)`` cells where some floor's value beats the trained algorithm's mean."""
    out: set[tuple[str, str, str]] = set()
    for algo in table.trained:
        for domain in table.domains:
            for metric in table.metrics:
                if metric in DESCRIPTIVE_METRICS:
                    continue
                c = table.cell(algo, domain, metric)
                if c is None:
                    continue
                if any((f := table.cell(floor, domain, metric)) and f.mean > c.mean for floor in table.floors):
                    out.add((algo, domain, metric))
    return out


def make_report(
    out_dir: Path,
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    curves: Curves | None = None,
    baseline: str = "grpo",
    primary: str | None = None,
    source: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    run_dir: Path | None = None,
    notes: Sequence[str] = (),
    calibration: str = "",
    extra_sections: Callable[[Report], Sequence[Any]] | None = None,
    scored: bool = False,
) -> Report:
    """Compute and write the report into ``out_dir``.

    ``calibration`` is the one line about the suite's calibration (:mod:`.calibration`) the report shows.

    ``run_dir`` (default ``out_dir``) is the run's output folder: its ``predictions/`` feed the
    comparisons, its config.yaml names the primary metric (unless ``primary`` is given), its
    results.csv is read when ``rows`` is not given, and its failed.csv names the jobs that failed
    (the report lists them with their reasons, also when no job finished). ``notes`` (e.g. how
    ``compare`` combined its sweeps) lead the report's notes. ``extra_sections(report)``: sections
    (:class:`~rlbench_med.reports.render.Section`) built from the computed record, placed after the
    headline. ``scored``: the rows score responses of models trained elsewhere (``rlbench-med score``),
    so the report speaks of responses, not seeds and training.
    """
    out_dir = Path(out_dir)
    run_dir = Path(run_dir) if run_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows) if rows is not None else load_results(run_dir / "results.csv")
    failed = read_failed(run_dir / FAILED_CSV)
    table = build_table(rows)
    suite = table.suite or ", ".join(dict.fromkeys(str(r["suite"]) for r in failed))  # no job finished
    primary = resolve_primary(table, primary or primary_metric_of(run_dir, suite))
    variants = _suite_variants(suite) if "," not in suite and suite else {}
    paper = {a: n for a in table.algos if (n := paper_numbers(suite, a, variants))}
    comparisons, truth, compare_notes, runs = compare_all(run_dir, table, baseline, primary, n_boot=n_boot, seed=seed)
    report = Report(
        suite=suite, source=source or f"{out_dir / 'results.csv'}", baseline=baseline, primary=primary,
        out_dir=out_dir, table=table, paper=paper, paper_caption=paper_caption(suite), comparisons=comparisons,
        truth_labels=truth, notes=[*notes, *compare_notes], floor_beats=floor_wins(table),
        failed=[(str(r["algo"]), int(r["seed"]), str(r["error"])) for r in failed],
        best_floor=best_floor(comparisons, primary, floor_means(table, primary)), calibration=calibration,
        scored=scored,
    )
    report.hedging = hedging_warnings(table, [(a, b) for a, b in report.pairs()], truth, report.comparisons)
    base_of = {a: b for a, b in report.pairs() if split_label(b).name == BASE}
    report.given_up = given_up(runs, base_of)
    report.detectable = detectable_effects(comparisons, primary)
    report.comparisons_csv = write_comparisons(out_dir / "comparisons.csv", comparisons)
    fig_dir = out_dir / "figures"
    vs_baseline = {f"{a} − {b}": [c for c in comparisons if c.algo == a and c.baseline == b]
                   for a, b in report.pairs() if not is_reference(b)}
    candidates = [
        (f"Per-domain difference vs {baseline}", "difference_vs_baseline.png",
         F.difference_bars(vs_baseline, (primary, "f1"))),
        (f"Validation {primary} learning curves", "curves_validation.png",
         F.learning_curves(curves or {}, primary, table.trained)),
        ("Training reward learning curves", "curves_reward.png", F.learning_curves(curves or {}, "reward", table.trained)),
        ("Training diagnostics", "training_diagnostics.png", F.training_diagnostics(curves or {}, table.trained)),
        ("Advantage time per step", "advantage_time.png", F.advantage_time(curves or {}, table.trained)),
        ("Advantage time vs batch size and history length", "runtime_scaling.png", F.runtime_scaling(rows)),
    ]
    for title, name, fig in candidates:
        if fig is not None:
            report.figures.append((title, F.save(fig, fig_dir / name)))
    if curves is None:
        report.notes.append("Learning curves and advantage timings come from MLflow; none were given for this report.")
    if extra_sections is not None:
        report.extra_sections = list(extra_sections(report))
    secs = sections(report)
    report.markdown = out_dir / "report.md"
    report.markdown.write_text(markdown_report(report, secs))
    report.html = out_dir / "report.html"
    report.html.write_text(html_report(report, secs))
    return report
