"""Build a sweep's report from results.csv (+ predictions files, + MLflow curves when given).

``make_report(out_dir)`` computes the :class:`Report` record (table, the paper's numbers, paired
comparisons, figures) and writes ``report.md``, ``report.html`` and ``figures/*.png`` into
``out_dir``. Anything that cannot be computed is said in the report's notes, never skipped
silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlbench_med.registry import RegistryError
from rlbench_med.reports import figures as F
from rlbench_med.reports.paper import paper_caption, paper_numbers
from rlbench_med.reports.render import html_report, markdown_report
from rlbench_med.reports.results import ResultTable, build_table, load_results, predictions_path
from rlbench_med.reports.stats import Comparison, ComparisonError, paired_bootstrap, read_predictions

Curves = Mapping[tuple[str, int], Mapping[str, Sequence[tuple[int, float]]]]


@dataclass
class Report:
    suite: str
    source: str
    baseline: str
    out_dir: Path
    table: ResultTable
    paper: dict[str, dict[tuple[str, str], float]]
    paper_caption: str | None
    comparisons: dict[str, list[Comparison]]
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    markdown: Path | None = None
    html: Path | None = None


def _suite_variants(suite: str) -> dict[str, Any]:
    from rlbench_med.suites import get_suite

    try:
        return dict(getattr(get_suite(suite), "variants", {}) or {})
    except RegistryError:
        return {}


def compare_to_baseline(
    out_dir: Path, table: ResultTable, baseline: str, *, n_boot: int = 2000, seed: int = 0
) -> tuple[dict[str, list[Comparison]], list[str]]:
    """Paired bootstrap of every algorithm against ``baseline`` from the predictions files."""
    notes: list[str] = []
    if not any(m in table.metrics for m in ("acc", "f1", "iou")):
        return {}, notes
    if baseline not in table.algos:
        notes.append(
            f"No paired comparison: the baseline {baseline!r} is not in this run "
            f"(pass --baseline one of: {', '.join(table.algos)})."
        )
        return {}, notes

    def load(algo: str) -> dict[int, list[dict[str, Any]]]:
        out = {}
        for s in table.seeds.get(algo, []):
            path = predictions_path(out_dir, algo, s)
            if path is None:
                notes.append(f"{algo} seed {s}: no predictions file in {out_dir / 'predictions'}; seed left out of its comparison.")
                continue
            out[s] = read_predictions(path)
        return out

    base = load(baseline)
    comparisons: dict[str, list[Comparison]] = {}
    for algo in table.algos:
        if algo == baseline:
            continue
        try:
            comparisons[algo] = paired_bootstrap(load(algo), base, n_boot=n_boot, seed=seed)
        except ComparisonError as exc:
            notes.append(f"{algo} vs {baseline}: no comparison ({exc}).")
    return comparisons, notes


def make_report(
    out_dir: Path,
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    curves: Curves | None = None,
    baseline: str = "grpo",
    source: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    run_dir: Path | None = None,
) -> Report:
    """Compute and write the report into ``out_dir``.

    ``run_dir`` (default ``out_dir``) is the run's output folder: its ``predictions/`` feed the
    paired comparison, and its results.csv is read when ``rows`` is not given.
    """
    out_dir = Path(out_dir)
    run_dir = Path(run_dir) if run_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows) if rows is not None else load_results(run_dir / "results.csv")
    table = build_table(rows)
    suite = table.suite
    variants = _suite_variants(suite) if "," not in suite and suite else {}
    paper = {a: n for a in table.algos if (n := paper_numbers(suite, a, variants))}
    comparisons, notes = compare_to_baseline(run_dir, table, baseline, n_boot=n_boot, seed=seed)
    report = Report(
        suite=suite, source=source or f"{out_dir / 'results.csv'}", baseline=baseline, out_dir=out_dir, table=table,
        paper=paper, paper_caption=paper_caption(suite), comparisons=comparisons, notes=notes,
    )
    fig_dir = out_dir / "figures"
    candidates = [
        (f"Per-domain difference vs {baseline}", "difference_vs_baseline.png", F.difference_bars(comparisons, baseline)),
        ("Held-out F1 learning curves", "curves_f1.png", F.learning_curves(curves or {}, "f1", table.algos)),
        ("Training reward learning curves", "curves_reward.png", F.learning_curves(curves or {}, "reward", table.algos)),
        ("Advantage time per step", "advantage_time.png", F.advantage_time(curves or {}, table.algos)),
        ("Advantage time vs batch size and history length", "runtime_scaling.png", F.runtime_scaling(rows)),
    ]
    for title, name, fig in candidates:
        if fig is not None:
            report.figures.append((title, F.save(fig, fig_dir / name)))
    if curves is None:
        report.notes.append("Learning curves and advantage timings come from MLflow; none were given for this report.")
    report.markdown = out_dir / "report.md"
    report.markdown.write_text(markdown_report(report))
    report.html = out_dir / "report.html"
    report.html.write_text(html_report(report))
    return report
