"""Tables in every format: split to fit an 80-column terminal and a 1400-px page, CSV numbers, LaTeX."""

from __future__ import annotations

import csv
import io
import re

import pytest

from rlbench_med.reports.formats import (
    LATEX_WIDTH,
    PAGE_PAD,
    PAGE_WIDTH,
    TEXT_PAD,
    Cell,
    Table,
    latex_escape,
    render,
    split,
    to_csv,
    to_latex,
    to_markdown,
    to_text,
)

DOMAINS = ["cxr", "mammography", "dermoscopy", "ct", "fundus", "ultrasound", "mri", "pathology", "overall"]


def wide_table(n_algos: int = 17) -> Table:
    """Domains x algorithms with 'mean±std †' cells, like the 19-column table of the issue."""
    header = ["Domain", "n", *[f"algo_{i}" for i in range(n_algos)]]
    rows = []
    for d, domain in enumerate(DOMAINS):
        row = [Cell(domain), Cell(str(10 + d))]
        for i in range(n_algos):
            mean, std = (d * 31 + i * 7) % 1000 / 1000, (d + i) % 50 / 1000
            row.append(Cell(f"{mean:.3f}±{std:.3f} †", best=i == d, numbers=(("", mean), ("std", std))))
        rows.append(row)
    return Table("f1_strict", header, rows, keys=2, footer=1, notes=["Mean ± std over 4 seeds."])


def test_a_wide_table_is_split_into_parts_that_fit_and_keep_every_column_once() -> None:
    table = wide_table()
    assert table.width(TEXT_PAD) > 80
    parts = split(table, 80, TEXT_PAD)
    assert len(parts) > 1 and all(p.width(TEXT_PAD) <= 80 for p in parts)
    assert all(p.header[:2] == ["Domain", "n"] for p in parts)  # key columns repeated
    assert [h for p in parts for h in p.header[2:]] == table.header[2:]  # every other column once, in order
    widths = [len(p.header) - 2 for p in parts]
    assert max(widths) - min(widths) <= 1  # as even as the (equal) widths allow
    assert parts[-1].notes == table.notes and not parts[0].notes
    assert [p.caption for p in parts] == [f"f1_strict ({i}/{len(parts)})" for i in range(1, len(parts) + 1)]


def test_terminal_text_fits_80_columns_and_cuts_no_cell() -> None:
    table = wide_table()
    text = to_text(table, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    for row in table.rows:  # every cell's text is printed whole
        for cell in row:
            assert cell.text in text
    assert text.count("overall") == len(split(table, 80, TEXT_PAD))


def test_page_formats_fit_the_page_width() -> None:
    table = wide_table(30)
    md = to_markdown(table)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert max(len(r) for r in rows) <= PAGE_WIDTH + PAGE_PAD * 2
    assert md.count("| Domain | n |") == len(split(table, PAGE_WIDTH, PAGE_PAD)) > 1
    html = render([table], "html")
    assert html.count("<table>") == len(split(table, PAGE_WIDTH, PAGE_PAD))
    assert html.startswith("<!doctype html>") and "class=best" in html


def test_csv_is_one_wide_table_of_numbers() -> None:
    table = wide_table(3)
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows[0] == ["Domain", "n", "algo_0", "algo_0 std", "algo_1", "algo_1 std", "algo_2", "algo_2 std"]
    assert len(rows) == 1 + len(DOMAINS)
    by = {r[0]: r for r in rows[1:]}
    d = DOMAINS.index("ct")
    assert float(by["ct"][4]) == pytest.approx((d * 31 + 7) % 1000 / 1000)
    assert float(by["ct"][5]) == pytest.approx((d + 1) % 50 / 1000)
    assert by["ct"][1] == "13"  # a key column without numbers keeps its text


def test_latex_escapes_marks_and_keeps_one_cell_per_column() -> None:
    table = Table("f1_strict: drpo_k − grpo (100% & more)", ["Domain", "drpo:k_max=3", "grpo"],
                  [[Cell("cxr_1"), Cell("0.500±0.010 †", best=True), Cell("#1 $x$")],
                   [Cell("overall"), Cell("–"), Cell("a{b}~^\\")]], keys=1, footer=1, notes=["n: records"])
    tex = to_latex(table, "tab:x")
    assert tex.startswith("\\begin{table}[t]") and tex.rstrip().endswith("\\end{table}")
    assert "\\begin{tabular}{lrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    body = [line for line in tex.splitlines() if line.endswith("\\\\")]
    assert len(body) == 3 and all(line.count(" & ") == 2 for line in body)
    assert "\\textbf{0.500$\\pm$0.010 $^\\dagger$}" in tex
    assert "cxr\\_1" in tex and "\\#1 \\$x\\$" in tex and "100\\% \\& more" in tex and "$-$" in tex
    assert "a\\{b\\}\\textasciitilde{}\\textasciicircum{}\\textbackslash{}" in tex
    # the rule before the footer row, and braces balanced once escapes are removed
    lines = tex.splitlines()
    assert lines[lines.index(body[-1]) - 1] == "\\midrule"
    bare = re.sub(r"\\[{}]", "", tex)
    assert bare.count("{") == bare.count("}")
    assert "\\label{tab:x}" in tex


@pytest.mark.parametrize("text, expected", [("a_b", "a\\_b"), ("±", "$\\pm$"), ("50%", "50\\%"), ("x & y", "x \\& y")])
def test_latex_escape(text: str, expected: str) -> None:
    assert latex_escape(text) == expected


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="--format 'docx'"):
        render([wide_table(1)], "docx")


def test_a_wide_latex_table_is_stacked_tabulars_that_fit_a_page() -> None:
    table = wide_table(12)
    tex = to_latex(table)
    tabulars = tex.split("\\begin{tabular}")[1:]
    parts = split(table, LATEX_WIDTH, PAGE_PAD)
    assert len(tabulars) == len(parts) > 1 and tex.count("\\begin{table}") == 1 and tex.count("\\caption{") == 1
    for part, body in zip(parts, tabulars):
        assert part.width(PAGE_PAD) <= LATEX_WIDTH
        header = body.splitlines()[2]
        assert header.startswith("Domain & n & ") and header.count(" & ") == len(part.header) - 1
