"""Renderers of a :class:`~rlbench_med.reports.report.Report`: Markdown, self-contained HTML, terminal.

Pure functions of the report record; nothing here computes a number.
"""

from __future__ import annotations

import base64
import html
import math
from typing import TYPE_CHECKING

from rlbench_med.reports.results import METRIC_TITLES, ResultTable

if TYPE_CHECKING:
    from rich.console import Console

    from rlbench_med.reports.report import Report

LOWER_IS_BETTER = {"advantage_ms"}


def _title(domain: str, metric: str) -> str:
    return f"{domain} {METRIC_TITLES.get(metric, metric)}"


def _signed(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:+.3f}"


def metric_groups(table: ResultTable) -> list[tuple[str, ...]]:
    """Tables to print: (acc, f1) in the paper's Table-2 layout, then IoU, then any other metric."""
    groups: list[tuple[str, ...]] = []
    main = tuple(m for m in ("acc", "f1") if m in table.metrics)
    if main:
        groups.append(main)
    groups += [(m,) for m in table.metrics if m not in ("acc", "f1")]
    return groups


def table_cells(table: ResultTable, metrics: tuple[str, ...] | None = None) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows of ``(text, is_best)`` cells: rows = algorithms, columns = domains x metrics."""
    cols = [(d, m) for d, m in table.columns() if metrics is None or m in metrics]
    header = ["Algorithm"] + [_title(d, m) for d, m in cols]
    best = {(d, m): table.best(d, m, higher_is_better=m not in LOWER_IS_BETTER) for d, m in cols}
    rows = []
    for algo in table.algos:
        row = [(algo, False)]
        for d, m in cols:
            c = table.cell(algo, d, m)
            row.append((c.format() if c else "–", algo in best[(d, m)]))
        rows.append(row)
    return header, rows


def paper_cells(report: Report) -> tuple[list[str], list[list[str]]] | None:
    cols = [(d, m) for d, m in report.table.columns() if m in ("acc", "f1")]
    rows = []
    for algo in report.table.algos:
        numbers = report.paper.get(algo) or {}
        if numbers:
            rows.append([algo] + [f"{numbers[(d, m)]:.3f}" if (d, m) in numbers else "–" for d, m in cols])
    if not rows:
        return None
    return ["Algorithm"] + [_title(d, m) for d, m in cols], rows


def comparison_cells(report: Report, algo: str) -> tuple[list[str], list[list[str]]]:
    """Per-domain rows: Δ acc and Δ F1 with CI (``*`` when the CI excludes 0), the paper's Δ and agreement."""
    comps = report.comparisons[algo]
    metrics = [m for m in ("acc", "f1", "iou") if any(c.metric == m for c in comps)]
    domains = [d for d in report.table.domains if any(c.domain == d for c in comps)]
    paper_a, paper_b = report.paper.get(algo) or {}, report.paper.get(report.baseline) or {}
    header = ["Domain"]
    for m in metrics:
        header.append(f"Δ {METRIC_TITLES.get(m, m)} [95% CI]")
        if m in ("acc", "f1") and paper_a and paper_b:
            header += [f"paper Δ {METRIC_TITLES[m]}", "same sign"]
    by = {(c.domain, c.metric): c for c in comps}
    rows = []
    for d in domains:
        row = [d]
        for m in metrics:
            c = by.get((d, m))
            row.append(f"{_signed(c.diff)} [{_signed(c.low)}, {_signed(c.high)}]{' *' if c.significant else ''}" if c else "–")
            if m in ("acc", "f1") and paper_a and paper_b:
                if (d, m) in paper_a and (d, m) in paper_b and c:
                    pd = paper_a[(d, m)] - paper_b[(d, m)]
                    row += [_signed(pd), "tie" if c.diff == 0 or pd == 0 else ("yes" if (pd > 0) == (c.diff > 0) else "no")]
                else:
                    row += ["–", "–"]
        rows.append(row)
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(report: Report) -> str:
    out = [f"# rlbench-med report: {report.suite}", ""]
    out += [f"- Source: {report.source}", f"- Algorithms: {', '.join(report.table.algos)}"]
    out += [f"- Seeds: {', '.join(f'{a}: {len(s)}' for a, s in report.table.seeds.items())}"]
    out += ["", "## Results", "", "Mean ± std over seeds (sample std); the best mean of each column is in bold."]
    for group in metric_groups(report.table):
        header, rows = table_cells(report.table, group)
        out += ["", _md_table(header, [[f"**{t}**" if best else t for t, best in r] for r in rows])]
    paper = paper_cells(report)
    if paper:
        out += ["", "## The paper's numbers", "", f"{report.paper_caption}.", "", _md_table(*paper)]
    if report.comparisons or report.notes:
        out += ["", f"## Paired comparison vs {report.baseline}", ""]
    if report.comparisons:
        out.append(
            "Difference of seed means (algorithm − baseline) with a 95% bootstrap CI resampling seeds and "
            "evaluation samples; `*` marks a CI that excludes 0."
            + (" The paper's difference and whether the sign agrees are beside it." if paper else "")
        )
    for algo in report.comparisons:
        out += ["", f"### {algo} − {report.baseline}", "", _md_table(*comparison_cells(report, algo))]
    for note in report.notes:
        out += ["", f"> {note}"]
    if report.figures:
        out += ["", "## Figures", ""]
        for title, path in report.figures:
            out += [f"### {title}", "", f"![{title}]({path.relative_to(report.out_dir).as_posix()})", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f2f2f2} td.best{font-weight:bold;background:#e8f4e8}
.paper{color:#555} .note{color:#a40} img{max-width:100%;border:1px solid #eee}
"""


def _html_table(header: list[str], rows: list[list[tuple[str, bool]]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=best' if b else ''}>{html.escape(t)}</td>" for t, b in r) + "</tr>" for r in rows
    )
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(report: Report) -> str:
    """One self-contained HTML page (figures embedded as base64 PNG)."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>rlbench-med: {e(report.suite)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>rlbench-med report: {e(report.suite)}</h1>",
             f"<p>Source: {e(report.source)}<br>Seeds: "
             f"{e(', '.join(f'{a}: {len(s)}' for a, s in report.table.seeds.items()))}</p>",
             "<h2>Results</h2><p>Mean ± std over seeds; the best mean of each column is highlighted.</p>"]
    for group in metric_groups(report.table):
        header, rows = table_cells(report.table, group)
        parts.append(_html_table(header, rows, "results"))
    paper = paper_cells(report)
    if paper:
        parts.append(f"<h2>The paper's numbers</h2><p class='paper'>{e(report.paper_caption or '')}.</p>")
        parts.append(_html_table(paper[0], [[(t, False) for t in r] for r in paper[1]], "paper"))
    if report.comparisons or report.notes:
        parts.append(f"<h2>Paired comparison vs {e(report.baseline)}</h2>")
    if report.comparisons:
        parts.append("<p>Difference of seed means with a 95% bootstrap CI resampling seeds and evaluation samples; "
                     "* marks a CI that excludes 0.</p>")
    for algo in report.comparisons:
        h, r = comparison_cells(report, algo)
        parts.append(f"<h3>{e(algo)} − {e(report.baseline)}</h3>")
        parts.append(_html_table(h, [[(t, t.endswith(' *')) for t in row] for row in r], "comparison"))
    for note in report.notes:
        parts.append(f"<p class='note'>{e(note)}</p>")
    if report.figures:
        parts.append("<h2>Figures</h2>")
        for title, path in report.figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def print_terminal_table(table: ResultTable, console: Console, where: str | None = None) -> None:
    """Rich table: rows = domains, columns = each algorithm's metrics (mean ± std over seeds)."""
    from rich.table import Table

    t = Table(title=f"{table.suite}: mean ± std over seeds (best in bold)")
    t.add_column("domain", no_wrap=True)
    for algo in table.algos:
        for m in table.metrics:
            t.add_column(f"{algo} {METRIC_TITLES.get(m, m)}", justify="right", no_wrap=True)
    for d in table.domains:
        cells = []
        for algo in table.algos:
            for m in table.metrics:
                c = table.cell(algo, d, m)
                best = algo in table.best(d, m, higher_is_better=m not in LOWER_IS_BETTER)
                text = c.format(compact=True) if c else "–"
                cells.append(f"[bold]{text}[/bold]" if best else text)
        before_overall = len(table.domains) > 1 and table.domains[-1] == "overall" and d == table.domains[-2]
        t.add_row(d, *cells, end_section=before_overall)
    console.print(t)
    if where:
        console.print(f"report: {where}")
