"""Renderers of a :class:`~rlbench_med.reports.report.Report`: Markdown, self-contained HTML, terminal,
and the paper tables (``--format md|html|csv|latex``).

Pure functions of the report record; nothing here computes a number. Every table has the
domains as rows, in the one order every table and figure shares (``overall`` last), and one column
per algorithm; :mod:`.formats` splits a table by columns where it would not fit an 80-column
terminal or a 1400-px page. The headline metric comes first, the paper's ``acc``/``f1`` sit in the
section beside the paper's own numbers.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlbench_med.reports.classes import rule as given_up_rule
from rlbench_med.reports.formats import (
    Cell,
    Table,
    cells,
    html_page,
    rich_parts,
    to_html,
    to_markdown,
)
from rlbench_med.reports.results import (
    METRIC_TITLES,
    ResultTable,
    is_reference,
    split_label,
)
from rlbench_med.reports.stats import EVALUATION_ONLY, Comparison
from rlbench_med.reports.testing import MIN_TESTED_RECORDS
from rlbench_med.runners.base import BASE, TEST
from rlbench_med.suites.floors import is_floor
from rlbench_med.suites.metrics import DESCRIPTIVE_METRICS

if TYPE_CHECKING:
    from rich.console import Console

    from rlbench_med.reports.report import Report

LOWER_IS_BETTER = {"advantage_ms"}
PAPER_METRICS = ("acc", "f1")

METRIC_DEFINITIONS = {
    "f1_strict": "on a single-label dataset, macro-F1 where an answer naming more than one label counts as no "
                 "prediction (answering every class scores 0); on a multi-label dataset, the record-wise set F1 "
                 "2|P∩T|/(|P|+|T|) (answering every class scores far below naming the findings) (ours)",
    "exact": "fraction of answers whose label set equals the true set (ours)",
    "labels": "mean number of labels per answer (ours; compare with the truth's)",
    "f1": "macro-F1 over the classes in the ground truth, one-vs-rest on label sets (the paper's)",
    "acc": "balanced accuracy: mean over classes of (sensitivity + specificity) / 2 (the paper's)",
    "iou": "IoU of the predicted boxes with the lesion region, pooled over a domain's records (ours)",
    "acc_release": "per-class accuracy (TP + TN) / N as the QoQ-Med release's evaluation computes it (the release's)",
}


def _title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


def _signed(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:+.3f}"


def input_groups(table: ResultTable) -> list[tuple[str, list[str]]]:
    """``(input set, algorithms)``: the full input first (with base and floors), then each ablation."""
    groups: dict[str, list[str]] = {}
    for algo in table.algos:
        groups.setdefault(split_label(algo).inputs, []).append(algo)
    return [(name or "full", algos) for name, algos in groups.items()]


def seeds_phrase(table: ResultTable, algos: list[str], scored: bool = False) -> str:
    """What a cell is: "mean ± std over N seeds" only when some algorithm ran N >= 2 seeds; for scored
    responses (``rlbench-med score``), the score of one set of responses."""
    trained = [a for a in algos if not is_reference(a)]
    counts = sorted({len(table.seeds.get(a, [])) for a in trained})
    refs = [a for a in algos if is_reference(a)]
    if scored:
        return ("Scored responses: each cell scores one set of responses (a model trained elsewhere; no seeds)."
                + (" Floors are single values." if refs else ""))
    ref_note = (" Base and floors are single values (they do not depend on the training seed)." if refs else "")
    if not counts or counts[-1] <= 1:
        return "One training seed: each cell is one run's value (no spread over seeds)." + ref_note
    how = f"{counts[-1]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"Mean ± sample std over {how} seeds." + ref_note


def significant_best(report: Report, domain: str, metric: str, algos: Sequence[str]) -> set[str]:
    """The best trained algorithm of a cell among ``algos``, when a significant comparison of the report
    puts it above every other trained algorithm there (else nothing: a best mean alone is not bolded)."""
    table = report.table
    trained = [a for a in algos if not is_reference(a) and table.cell(a, domain, metric) is not None]
    best = table.best(domain, metric) & set(trained)
    if len(best) != 1 or metric in DESCRIPTIVE_METRICS:
        return set()
    top = next(iter(best))
    for other in trained:
        if other == top:
            continue
        ahead = report.comparison(top, other).get((domain, metric))
        behind = report.comparison(other, top).get((domain, metric))
        if not ((ahead and ahead.significant and ahead.diff > 0) or (behind and behind.significant and behind.diff < 0)):
            return set()
    return {top}


def metric_cells(report: Report, metric: str, algos: list[str]) -> tuple[list[str], list[list[Cell]]]:
    """Header and rows of one metric: rows = domains (``n`` beside each), columns = ``algos``."""
    table = report.table
    algos = [a for a in algos if any(table.cell(a, d, metric) for d in table.domains)]  # e.g. box floors: iou only
    header = ["Domain", "n", *algos]
    rows: list[list[Cell]] = []
    for domain in table.domains:
        if not any(table.cell(a, domain, metric) for a in algos):
            continue
        best = significant_best(report, domain, metric, algos)
        n = table.n.get((domain, metric))
        row = [Cell(domain), Cell(str(n) if n else "–", numbers=(("", float(n)),) if n else ())]
        for algo in algos:
            c = table.cell(algo, domain, metric)
            text = c.format(compact=True) if c else "–"
            mark = (algo, domain, metric) in report.floor_beats
            numbers = (("", c.mean), ("std", c.std if c.n_seeds > 1 else float("nan")), ("seeds", float(c.n_seeds))) if c else ()
            row.append(Cell(text + (" †" if mark else ""), best=algo in best, mark=mark, numbers=numbers))
        rows.append(row)
    return header, rows


def metric_table(report: Report, metric: str, algos: list[str], caption: str) -> Table:
    """One metric's table (:func:`metric_cells`): domain and ``n`` are its key columns, ``overall`` its footer."""
    header, rows = metric_cells(report, metric, algos)
    return Table(caption, header, rows, keys=2, footer=int(bool(rows) and rows[-1][0].text == "overall"))


def comparison_cell(c: Comparison | None) -> str:
    if c is None:
        return "–"
    star = " *" if c.significant else ""
    return f"{_signed(c.diff)} [{_signed(c.low)}, {_signed(c.high)}]{star}"


def comparison_table(report: Report, metric: str, pairs: list[tuple[str, str]], caption: str = "") -> Table:
    """Rows = domains, columns = ``algo − baseline`` differences on ``metric`` with their interval."""
    header = ["Domain", *[f"{a} − {b}" for a, b in pairs]]
    by = {pair: report.comparison(*pair) for pair in pairs}
    rows = []
    for domain in report.table.domains:
        found = [by[p].get((domain, metric)) for p in pairs]
        if any(found):
            rows.append([Cell(domain), *[Cell(comparison_cell(c), numbers=_interval_numbers(c)) for c in found]])
    return Table(caption or f"{metric}: algorithm − baseline", header, rows, keys=1,
                 footer=int(bool(rows) and rows[-1][0].text == "overall"))


def _interval_numbers(c: Comparison | None) -> tuple[tuple[str, float], ...]:
    return (("", c.diff), ("ci_low", c.low), ("ci_high", c.high), ("p", c.p_value)) if c else ()


def method_note(report: Report, pairs: list[tuple[str, str]]) -> str:
    """How the intervals and stars of ``pairs``' comparisons were made (one paragraph)."""
    chosen = [c for c in report.comparisons if (c.algo, c.baseline) in pairs]
    n = max((c.n_seeds for c in chosen), default=0)
    one_seed = ("percentile bootstrap intervals over the evaluation records (1 seed: evaluation noise only; another "
                "training seed could land elsewhere)")
    if chosen and all(c.method in EVALUATION_ONLY for c in chosen):
        what = one_seed
    else:
        what = (f"paired intervals over {n} seeds: t with Satterthwaite degrees of freedom on the seed spread plus the "
                "evaluation noise the seeds share (a bootstrap over the test records); the evaluation noise alone where "
                "the seeds spread less than it")
        if any(c.method in EVALUATION_ONLY for c in chosen):
            what += f"; comparisons with one seed: {one_seed}"
    return (f"Difference of seed means with {what}. Testing plan, fixed before the numbers: overall {report.primary} is "
            "each comparison's one primary test (Holm across the algorithms facing the same baseline); its domains "
            f"with at least {MIN_TESTED_RECORDS} test records are tested only when the overall test is significant "
            "(Holm across them); other metrics are exploratory: intervals, no test. `*`: significant; a tested cell's "
            "interval is at the level its correction spends on it (95% for a test alone), so it excludes 0 exactly "
            "when starred. All numbers, with each cell's family and adjusted p-value, are in comparisons.csv.")


def learned_lines(report: Report) -> list[str]:
    """Per trained algorithm, in words: its overall headline metric against ``base`` (did it learn?) and
    against the best floor (does it beat every answer that ignores the input?), from the reference
    family's one-sided tests (:mod:`.verdicts`)."""
    table, metric = report.table, report.primary
    bases = {b for _, b in report.pairs() if split_label(b).name == BASE}
    lines = []
    for algo in table.trained:
        cell = table.cell(algo, "overall", metric)
        if cell is None:
            continue
        parts = [f"{algo}: overall {metric} {cell.format(compact=True)}"]
        verdicts = []
        base = next((b for b in bases if report.comparison(algo, b)), None)
        for ref in (r for r in (base, report.best_floor) if r):
            v = report.verdict(algo, ref)
            if v is None:
                continue
            c = v.comparison
            p = f"p_adj={c.p_adjusted:.3g}" if c.p_adjusted == c.p_adjusted else "untested"
            parts.append(f"vs {ref} {comparison_cell(c)} ({p})")
            verdicts.append(v.words)
        if base is None and verdicts and not report.scored:
            verdicts.insert(0, "no base in this report to judge learning")
        if report.best_floor is None and any(table.cell(f, "overall", metric) for f in table.floors):
            verdicts.append("not compared with the floors (see the notes)")
        lines.append("; ".join(parts) + (f". **{'; '.join(verdicts)}**" if verdicts else ""))
    return lines


def detectable_lines(report: Report) -> list[str]:
    """One line per comparison of two trained algorithms: the MDE overall and its range over domains."""
    by: dict[tuple[str, str], dict[str, float]] = {}
    seeds: dict[tuple[str, str], int] = {}
    for d in report.detectable:
        by.setdefault((d.algo, d.baseline), {})[d.domain] = d.mde
        seeds[(d.algo, d.baseline)] = d.seeds
    lines = []
    for (algo, base), per in by.items():
        domains = [v for k, v in per.items() if k != "overall"]
        overall = f"{per['overall']:.3f} overall" if "overall" in per else ""
        spread = f"{min(domains):.3f} to {max(domains):.3f} per domain" if domains else ""
        n = seeds[(algo, base)]
        v = report.verdict(algo, base)
        lines.append(f"{algo} − {base} ({n} seed{'s' if n != 1 else ''}"
                     + ("; evaluation noise only" if n == 1 else "") + "): "
                     + ", ".join(x for x in (overall, spread) if x) + (f". Overall: {v.words}" if v else ""))
    return lines


def paper_cells(report: Report) -> Table | None:
    """The paper's own ``acc``/``f1`` of the algorithms it ran: rows = domains, two columns per algorithm."""
    algos = [a for a in report.table.algos if report.paper.get(a)]
    if not algos:
        return None
    header = ["Domain", *[f"{a} {_title(m)}" for a in algos for m in PAPER_METRICS]]
    rows = []
    for d in report.table.domains:
        values = [report.paper[a].get((d, m)) for a in algos for m in PAPER_METRICS]
        if any(v is not None for v in values):
            rows.append([d, *[f"{v:.3f}" if v is not None else "–" for v in values]])
    return Table("the paper's acc and f1 (not measured here)", header, cells(rows), keys=1,
                 footer=int(bool(rows) and rows[-1][0] == "overall"))


def paper_delta_cells(report: Report, algo: str, baseline: str) -> tuple[list[str], list[list[str]]]:
    """Per domain: our Δ acc / Δ F1 with CI, the paper's Δ and whether the signs agree."""
    ours = report.comparison(algo, baseline)
    pa, pb = report.paper.get(algo) or {}, report.paper.get(baseline) or {}
    header = ["Domain"]
    for m in PAPER_METRICS:
        header.append(f"Δ {_title(m)} [95% CI]")
        if pa and pb:
            header += [f"paper Δ {_title(m)}", "same sign"]
    rows = []
    for d in report.table.domains:
        if not any((d, m) in ours for m in PAPER_METRICS):
            continue
        row = [d]
        for m in PAPER_METRICS:
            c = ours.get((d, m))
            row.append(comparison_cell(c))
            if pa and pb:
                if (d, m) in pa and (d, m) in pb and c:
                    pd = pa[(d, m)] - pb[(d, m)]
                    row += [_signed(pd), "tie" if c.diff == 0 or pd == 0 else ("yes" if (pd > 0) == (c.diff > 0) else "no")]
                else:
                    row += ["–", "–"]
        rows.append(row)
    return header, rows


def hedging_cells(report: Report, algos: list[str]) -> tuple[list[str], list[list[str]]]:
    """Rows = domains: the truth's labels per answer, each algorithm's, and each algorithm's exact match."""
    table = report.table
    shown = [a for a in algos if not is_floor(a)]
    header = ["Domain", "truth labels", *[f"{a} labels" for a in shown], *[f"{a} exact" for a in shown]]
    rows = []
    for d in table.domains:
        labels = [table.cell(a, d, "labels") for a in shown]
        exact = [table.cell(a, d, "exact") for a in shown]
        if not any(labels):
            continue
        t = report.truth_labels.get(d)
        rows.append([d, f"{t:.2f}" if t is not None else "–",
                     *[c.format(2, compact=True) if c else "–" for c in labels],
                     *[c.format(compact=True) if c else "–" for c in exact]])
    return header, rows


# --------------------------------------------------------------------------------------------
# sections, shared by the Markdown and HTML renderers
# --------------------------------------------------------------------------------------------
@dataclass
class Section:
    level: int
    title: str
    paragraphs: list[str]
    tables: list[Table]
    bullets: list[str]


def _metric_tables(report: Report, metric: str, groups: list[tuple[str, list[str]]]) -> list[Table]:
    """One table per input set for ``metric``, captioned with the metric (and the inputs when several)."""
    return [metric_table(report, metric, algos, f"{metric}" + (f", {name} input" if len(groups) > 1 else ""))
            for name, algos in groups]


def sections(report: Report) -> list[Section]:
    """The report's content in order, independent of the output format."""
    table, primary = report.table, report.primary
    groups = input_groups(table)
    out: list[Section] = []
    if report.failed:
        out.append(Section(2, "Failed jobs", [
            f"{len(report.failed)} job(s) failed and have no results; the tables leave them out. The reason of "
            "each (the first line of its error; the traceback is the `error.txt` of its MLflow run):"], [],
            [f"`{algo}` seed {seed}: {reason}" for algo, seed, reason in report.failed]))
    full_algos = groups[0][1] if groups else []
    out.append(Section(2, f"Headline: {primary}", [
        f"`{primary}`: {METRIC_DEFINITIONS.get(primary, primary)}."
        + (" Answering every class cannot win it, so it leads." if primary == "f1_strict" else ""),
        seeds_phrase(table, full_algos, report.scored) + " `n`: test records of the domain. Bold: the best trained algorithm, only "
        "where a significant comparison puts it above every other. `†`: a floor (an answer that ignores the input) "
        "scores higher than this algorithm here.",
    ], _metric_tables(report, primary, groups), []))
    if report.calibration:
        out.append(Section(3, "Can these settings rank estimators?", [report.calibration], [], []))
    out += report.extra_sections
    pairs = [p for p in report.pairs() if not is_floor(p[1])]
    if pairs:
        out.append(Section(3, f"Comparisons on {primary}", [method_note(report, pairs)],
                           [comparison_table(report, primary, pairs)], []))
    detectable = detectable_lines(report)
    if detectable:
        out.append(Section(3, f"How large a difference can this sweep detect on {primary}?", [
            "Minimum detectable effect (80% power) of the test each comparison ran (its level and its noise: seed "
            "spread and the evaluation noise the seeds share; with one seed, evaluation records only). A true "
            "difference smaller than this is likely to be missed: not significant does not mean no difference; only "
            "an interval that excludes effects of the MDE's size rules them out."],
            [], detectable))
    learned = learned_lines(report)
    if learned and report.scored:
        out.append(Section(2, "Do the scored responses beat the floors?", [
            f"Overall {primary} of each set of responses against the best floor (an answer that ignores the input), "
            "a one-sided test: better, not better, or inconclusive. The responses come from a model trained "
            "elsewhere, so there is no starting policy to say whether it learned."], [], learned))
    elif learned:
        out.append(Section(2, "Did each algorithm learn?", [
            f"Overall {primary} against `base` (the shared starting policy) and the best floor, one-sided tests with "
            "Holm's correction across all of them: an algorithm learned when it is significantly better than `base`; "
            "it did not learn only when its interval rules out a gain of the test's minimum detectable effect; "
            "otherwise the result is inconclusive, with the seeds that would settle it."], [], learned))
    if "labels" in table.metrics:
        paragraphs = [
            "Labels per answer beside the truth's, and exact match. Rule for the warnings: an algorithm's f1 exceeds its "
            "baseline's (the --baseline algorithm or `base`) while its answers name at least 0.2 more labels on average."]
        if not report.hedging:
            paragraphs.append("No warning: no f1 gain here comes with markedly more labels per answer.")
        h, r = hedging_cells(report, full_algos)
        out.append(Section(2, "Hedging: labels per answer and exact match", paragraphs,
                           [Table("labels per answer and exact match", h, cells(r), keys=2,
                                  footer=int(bool(r) and r[-1][0] == "overall"))], list(report.hedging)))
    if report.given_up or (learned and not report.scored):
        out.append(given_up_section(report))
    paper_paragraphs = [
        "The paper's metrics: `acc` (balanced accuracy) and `f1` (macro-F1) over predicted label sets, "
        "one-vs-rest. Both pay for hedging (see above), so they are not the headline."]
    paper_tables = [t for m in PAPER_METRICS if m in table.metrics for t in _metric_tables(report, m, groups)]
    out.append(Section(2, "Beside the paper: acc and f1", paper_paragraphs, paper_tables, []))
    paper = paper_cells(report)
    if paper:
        out.append(Section(3, "The paper's numbers", [f"{report.paper_caption}."], [paper], []))
    for algo, base in pairs:
        if is_reference(base):
            continue
        h, r = paper_delta_cells(report, algo, base)
        if r:
            out.append(Section(3, f"{algo} − {base} on the paper's metrics", [],
                               [Table(f"{algo} − {base}: acc and f1, ours and the paper's", h, cells(r), keys=1,
                                      footer=int(r[-1][0] == "overall"))], []))
    others = [m for m in table.metrics if m not in (primary, *PAPER_METRICS, "labels", "exact")]
    for metric in others:
        out.append(Section(2, _title(metric), [f"`{metric}`: {METRIC_DEFINITIONS.get(metric, metric)}."],
                           _metric_tables(report, metric, groups), []))
        if pairs and metric not in DESCRIPTIVE_METRICS:
            compared = comparison_table(report, metric, pairs,
                                        f"{metric}: algorithm − baseline (exploratory: 95% intervals, no test)")
            if compared.rows:
                out[-1].tables.append(compared)
    if report.notes:
        out.append(Section(2, "Notes", [], [], list(report.notes)))
    return out


def _summary_lines(report: Report) -> list[str]:
    table = report.table
    trained = ", ".join(f"{a} ({len(table.seeds.get(a, []))} seed{'s' if len(table.seeds.get(a, [])) != 1 else ''})"
                        for a in table.trained)
    refs = [a for a in table.algos if is_reference(a)]
    if report.scored:
        scored = ", ".join(a for a in table.trained)
        return [f"Source: {report.source}", f"Scored responses: {scored or '(none)'}",
                f"Reference rows: {', '.join(refs) or '(none)'}", f"Headline metric: {report.primary}"]
    return [f"Source: {report.source}", f"Trained: {trained or '(none)'}",
            f"Reference rows: {', '.join(refs) or '(none)'}", f"Headline metric: {report.primary}"]


def given_up_section(report: Report) -> Section:
    """Classes a trained policy stopped answering (:mod:`.classes`), one bullet per algorithm and class."""
    rule = given_up_rule(TEST)
    paragraphs = [rule] if report.given_up else [rule, "None: no trained policy gave up a class by this rule."]
    return Section(2, "Classes given up", paragraphs, [], [g.line() for g in report.given_up])


def sections_markdown(secs: Sequence[Section]) -> list[str]:
    """Markdown lines of ``secs``: each heading, its paragraphs, tables and bullets."""
    out: list[str] = []
    for sec in secs:
        out += ["", "#" * sec.level + " " + sec.title]
        for p in sec.paragraphs:
            out += ["", p]
        for t in sec.tables:
            out += ["", to_markdown(t).rstrip()]
        if sec.bullets:
            out.append("")
            out += [f"- {b}" for b in sec.bullets]
    return out


def sections_html(secs: Sequence[Section]) -> list[str]:
    """HTML parts of ``secs``, as :func:`sections_markdown` lays them out."""
    parts: list[str] = []
    for sec in secs:
        parts.append(f"<h{sec.level}>{html.escape(sec.title)}</h{sec.level}>")
        parts += [f"<p>{_inline(p)}</p>" for p in sec.paragraphs]
        parts += [to_html(t) for t in sec.tables]
        if sec.bullets:
            parts.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in sec.bullets) + "</ul>")
    return parts


def markdown_report(report: Report, secs: Sequence[Section] | None = None) -> str:
    """The report as Markdown; ``secs``: its :func:`sections`, when the caller has built them already."""
    out = [f"# rlbench-med report: {report.suite}", ""]
    out += [f"- {line}" for line in _summary_lines(report)]
    out += sections_markdown(sections(report) if secs is None else secs)
    if report.figures:
        out += ["", "## Figures", ""]
        for title, path in report.figures:
            out += [f"### {title}", "", f"![{title}]({path.relative_to(report.out_dir).as_posix()})", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Markdown-ish inline text -> HTML: `code` and **bold**."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def html_report(report: Report, secs: Sequence[Section] | None = None) -> str:
    """One self-contained HTML page (figures embedded as base64 PNG); ``secs`` as in :func:`markdown_report`."""
    e = html.escape
    parts = [f"<h1>rlbench-med report: {e(report.suite)}</h1>",
             "<p>" + "<br>".join(e(line) for line in _summary_lines(report)) + "</p>"]
    parts += sections_html(sections(report) if secs is None else secs)
    if report.figures:
        parts.append("<h2>Figures</h2>")
        for title, path in report.figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='data:image/png;base64,{data}'>")
    return html_page(f"rlbench-med: {report.suite}", "\n".join(parts))


def paper_tables(report: Report) -> list[Table]:
    """What ``--format`` prints: the headline metric with every algorithm as a column (domains as rows),
    then its comparisons with their intervals."""
    table, primary = report.table, report.primary
    phrase = seeds_phrase(table, table.algos, report.scored)
    headline = metric_table(report, primary, table.algos, f"{report.suite}: {primary} by domain")
    headline.notes = [f"{primary}: {METRIC_DEFINITIONS.get(primary, primary)}. {phrase} n: test records. "
                      "Bold: best trained algorithm, where significantly above every other. †: a floor scores higher."]
    out = [headline]
    pairs = [p for p in report.pairs() if not is_floor(p[1])]
    if pairs:
        compared = comparison_table(report, primary, pairs, f"{report.suite}: {primary}, algorithm − baseline")
        compared.notes = [method_note(report, pairs).replace("`", "")]
        out.append(compared)
    return out


def print_terminal_table(report: Report, console: Console, where: str | None = None) -> None:
    """The headline metric per domain (rows) and algorithm (columns), split to fit the console's
    width, then the overall comparisons and warnings (one line each, wrapped by the terminal only)."""
    table = report.table
    groups = input_groups(table)
    for i, (name, algos) in enumerate(groups):
        caption = f"{table.suite}: {report.primary}" + (f" ({name} input)" if len(groups) > 1 else "")
        t = metric_table(report, report.primary, algos, caption)
        t.notes = [seeds_phrase(table, table.algos, report.scored)] if i == len(groups) - 1 else []  # once, under the last table
        for part in rich_parts(t, console.width):
            console.print(part, soft_wrap=True)
    for algo, base in report.pairs():
        c = report.comparison(algo, base).get(("overall", report.primary))
        if c is not None and not is_floor(base):
            p = f"p_adj={c.p_adjusted:.3g}" if c.p_adjusted == c.p_adjusted else f"p={c.p_value:.3g}, untested"
            console.print(f"{algo} − {base}, overall {report.primary}: {comparison_cell(c)} ({p}, "
                          f"{c.n_seeds} seed{'s' if c.n_seeds != 1 else ''}, {c.method}"
                          + ("; evaluation noise only" if c.method in EVALUATION_ONLY else "") + ")",
                          highlight=False, soft_wrap=True, markup=False)
    for line in learned_lines(report):
        console.print(line.replace("**", ""), highlight=False, soft_wrap=True, markup=False)
    for warning in report.hedging:
        console.print(f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True, markup=False)
    if report.calibration:
        console.print(report.calibration, highlight=False, soft_wrap=True, markup=False)
    if where:
        console.print(f"report: {where}", highlight=False, soft_wrap=True, markup=False)
