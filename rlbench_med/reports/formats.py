"""Tables in every output format: terminal text, Markdown, HTML, CSV and LaTeX.

A :class:`Table` is a caption, a header and rows of :class:`Cell` (text, plus the numbers behind
it for CSV); the renderers here are pure functions of it. Tables too wide for their page are
split by columns (:func:`split`): each part repeats the key columns (the domain, ``n``; the
algorithm) and takes as many other columns as fit, so every table fits an 80-column terminal or
log (``text``) and a 1400-px page (``md``, ``html``). ``csv`` writes one wide table with the numbers
(``<column>`` = the mean, ``<column> std`` ..., no formatting); ``latex`` writes a ``booktabs``
table a paper can ``\\input`` (needs ``\\usepackage{booktabs}``), its tabular split the same way
to fit a one-column page.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

FORMATS = ("text", "md", "html", "csv", "latex")
#: Width of a terminal or log when it is not known (the width of a redirected run's log).
TEXT_WIDTH = 80
#: Characters of a row on a 1400-px page: about 1336 px of content (2em margins) at ~7.8 px a character.
PAGE_WIDTH = 170
#: Characters of a LaTeX row in ``\\small`` on a one-column page with 1-inch margins (about 470 pt).
LATEX_WIDTH = 100
#: Characters a column adds beyond its text: rich's padding and rule (text); padding (md, html, latex).
TEXT_PAD = 3
PAGE_PAD = 3


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, whether it is the column's best or marked, and the numbers behind it."""

    text: str
    best: bool = False
    mark: bool = False
    numbers: tuple[tuple[str, float], ...] = ()  # e.g. (("", mean), ("std", std)): CSV columns "<col>", "<col> std"


@dataclass
class Table:
    """``keys`` leading columns identify a row and are repeated in every part of a split table; the
    last ``footer`` rows are summaries (``overall``), set off by a rule."""

    caption: str
    header: list[str]
    rows: list[list[Cell]]
    keys: int = 1
    footer: int = 0
    notes: list[str] = field(default_factory=list)

    def column_width(self, j: int) -> int:
        return max([len(self.header[j])] + [len(r[j].text) for r in self.rows])

    def width(self, pad: int) -> int:
        """Characters of a row: every column's widest text plus ``pad``, and one closing rule."""
        return sum(self.column_width(j) + pad for j in range(len(self.header))) + 1


def cells(rows: Sequence[Sequence[str]]) -> list[list[Cell]]:
    """Plain text rows as cells."""
    return [[Cell(t) for t in r] for r in rows]


def split(table: Table, width: int, pad: int) -> list[Table]:
    """``table`` as parts no wider than ``width`` characters (``pad`` per column): each part keeps the
    key columns and a run of the others, the runs as even as the widths allow (a single column wider
    than the page makes a part of its own)."""
    if table.width(pad) <= width or len(table.header) <= table.keys + 1:
        return [table]
    base = sum(table.column_width(j) + pad for j in range(table.keys)) + 1
    widths = [table.column_width(j) + pad for j in range(table.keys, len(table.header))]
    groups = _balanced(widths, width - base)
    out = []
    for i, (start, stop) in enumerate(groups, start=1):
        picked = [*range(table.keys), *range(table.keys + start, table.keys + stop)]
        out.append(replace(
            table, caption=f"{table.caption} ({i}/{len(groups)})", header=[table.header[j] for j in picked],
            rows=[[r[j] for j in picked] for r in table.rows], notes=table.notes if i == len(groups) else [],
        ))
    return out


def _balanced(widths: Sequence[int], room: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` runs of ``widths``, each summing to at most ``room`` (or one item):
    the fewest runs, then the smallest widest run (binary search on that width, greedy packing)."""
    def pack(limit: int) -> list[tuple[int, int]]:
        runs, start, used = [], 0, 0
        for i, w in enumerate(widths):
            if i > start and used + w > limit:
                runs.append((start, i))
                start, used = i, 0
            used += w
        return runs + [(start, len(widths))]

    fewest = len(pack(room))
    lo, hi = max(widths), max(room, max(widths))
    while lo < hi:  # the narrowest limit that still needs no more runs than the fewest
        mid = (lo + hi) // 2
        if len(pack(mid)) <= fewest:
            hi = mid
        else:
            lo = mid + 1
    return pack(lo)


# --------------------------------------------------------------------------------------------
# renderers
# --------------------------------------------------------------------------------------------
def rich_parts(table: Table, width: int = TEXT_WIDTH) -> list[Any]:
    """The table as rich renderables no wider than ``width`` (split into parts when needed), best
    cells in bold; each part is followed by its notes."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table as RichTable
    from rich.text import Text

    out: list[Any] = []
    for part in split(table, width, TEXT_PAD):
        t = RichTable(title=escape(part.caption), box=box.SQUARE, title_justify="left")
        for j, h in enumerate(part.header):
            t.add_column(escape(h), justify="left" if j == 0 else "right", no_wrap=True)
        last = len(part.rows) - part.footer - 1
        for i, r in enumerate(part.rows):
            t.add_row(*[f"[bold]{escape(c.text)}[/bold]" if c.best else escape(c.text) for c in r],
                      end_section=part.footer > 0 and i == last)
        out.append(t)
        out += [Text(note) for note in part.notes]
    return out


def to_text(table: Table, width: int = TEXT_WIDTH) -> str:
    """Plain box-drawn text no wider than ``width`` (what :func:`rich_parts` prints, without styles)."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for part in rich_parts(table, width):
        console.print(part)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def to_markdown(table: Table, width: int = PAGE_WIDTH) -> str:
    out = []
    for part in split(table, width, PAGE_PAD):
        out += [f"*{part.caption}*", "", "| " + " | ".join(_md(h) for h in part.header) + " |",
                "|" + "".join("---|" if j < part.keys else "--:|" for j in range(len(part.header)))]
        out += ["| " + " | ".join(f"**{_md(c.text)}**" if c.best else _md(c.text) for c in r) + " |" for r in part.rows]
        out += [""] + [f"{n}" for n in part.notes] + ([""] if part.notes else [])
    return "\n".join(out).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_html(table: Table, width: int = PAGE_WIDTH) -> str:
    parts = []
    for part in split(table, width, PAGE_PAD):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in part.header)
        body = []
        for i, r in enumerate(part.rows):
            cls = " class=footer" if part.footer and i == len(part.rows) - part.footer else ""
            tds = "".join(
                f"<td{' class=best' if c.best else (' class=mark' if c.mark else '')}>{html.escape(c.text)}</td>" for c in r
            )
            body.append(f"<tr{cls}>{tds}</tr>")
        notes = "".join(f"<p class=tnote>{html.escape(n)}</p>" for n in part.notes)
        parts.append(f"<table><caption>{html.escape(part.caption)}</caption><thead><tr>{head}</tr></thead>"
                     f"<tbody>{''.join(body)}</tbody></table>{notes}")
    return "\n".join(parts)


def to_csv(table: Table) -> str:
    """One wide CSV row per table row: key columns as text; every other column as its numbers
    (``<column>``, ``<column> <name>`` ...), or its text where a column has none."""
    named: list[tuple[int, str]] = []  # (column, number name) of every CSV column
    for j, h in enumerate(table.header):
        names = list(dict.fromkeys(k for r in table.rows for k, _ in r[j].numbers)) if j >= table.keys else []
        named += [(j, k) for k in names] if names else [(j, "")]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([table.header[j] + (f" {k}" if k else "") for j, k in named])
    for r in table.rows:
        out = []
        for j, k in named:
            numbers = dict(r[j].numbers)
            if k in numbers or numbers:
                value = numbers.get(k, float("nan"))
                out.append("" if math.isnan(value) else repr(float(value)))
            else:
                out.append(r[j].text)
        writer.writerow(out)
    return buf.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "†": r"$^\dagger$", "−": r"$-$", "–": "--", "Δ": r"$\Delta$", "≥": r"$\geq$"}


def latex_escape(text: str) -> str:
    """Text safe in a LaTeX table: the ten special characters escaped, ±, †, −, Δ as math."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, tex in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, tex)
    return out


def _tabular(part: Table) -> list[str]:
    spec = "l" * part.keys + "r" * (len(part.header) - part.keys)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(h) for h in part.header) + r" \\",
             r"\midrule"]
    for i, r in enumerate(part.rows):
        if part.footer and i == len(part.rows) - part.footer:
            lines.append(r"\midrule")
        lines.append(" & ".join(rf"\textbf{{{latex_escape(c.text)}}}" if c.best else latex_escape(c.text) for c in r)
                     + r" \\")
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def to_latex(table: Table, label: str = "", width: int = LATEX_WIDTH) -> str:
    """A ``table`` float with ``booktabs`` tabulars (key columns left-aligned, the others right, best
    cells bold): one tabular, or one per part where the table would not fit a page's width
    (:func:`split`), stacked; then the caption, and the notes as a footnote-size paragraph."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    for i, part in enumerate(split(table, width, PAGE_PAD)):
        lines += ([r"\par\medskip"] if i else []) + _tabular(part)
    lines.append(rf"\caption{{{latex_escape(table.caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    if table.notes:
        lines.append(r"\par\footnotesize " + " ".join(latex_escape(n) for n in table.notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render(tables: Sequence[Table], fmt: str, *, width: int = TEXT_WIDTH, label: str = "") -> str:
    """Several tables in one format (``html``: a self-contained page; ``csv``: the first table only,
    since one CSV holds one table)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "text":
        return "\n".join(to_text(t, width) for t in tables)
    if fmt == "md":
        return "\n".join(to_markdown(t) for t in tables)
    if fmt == "html":
        return html_page("rlbench-med tables", "\n".join(to_html(t) for t in tables))
    if fmt == "csv":
        return to_csv(tables[0]) if tables else ""
    return "\n".join(to_latex(t, f"{label}-{i}" if label and len(tables) > 1 else label)
                     for i, t in enumerate(tables, start=1))


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0 0.3em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left} caption{text-align:left;font-style:italic;padding:2px 0}
th{background:#f2f2f2} td.best{font-weight:bold;background:#e8f4e8} td.mark{background:#fbeaea}
tr.footer td{border-top:2px solid #888} p.tnote{font-size:12px;color:#555;margin:0 0 1em}
.note{color:#a40} img{max-width:100%;border:1px solid #eee} code{background:#f4f4f4;padding:0 3px}
"""


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page with the tables' style."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
