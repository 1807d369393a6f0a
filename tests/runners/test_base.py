"""The output folder's files every reader shares: results.csv and failed.csv checked row by row, and
the folders a run writes into."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlbench_med.reports.results import load_results
from rlbench_med.runners.base import ResultsError, folder_problem, read_failed, read_results
from rlbench_med.runners.sweep import ResultsWriter

HEADER = "suite,algo,seed,domain,metric,value,n\n"


def write(path: Path, *lines: str) -> Path:
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("reader", [read_results, load_results])
def test_a_key_given_twice_is_refused_naming_both_lines(reader, tmp_path: Path) -> None:
    # averaged, the two values would read as two seeds: 0.56 ± 0.62
    path = write(tmp_path / "results.csv", "s,drpo,0,overall,f1,0.12,10", "s,drpo,1,overall,f1,0.5,10",
                 "s,drpo,0,overall,f1,0.99,10")
    with pytest.raises(ResultsError, match=f"^{path}:4: drpo seed 0 overall f1 is given twice \\(also {path}:2\\)"):
        reader(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
@pytest.mark.parametrize("reader", [read_results, load_results])
def test_a_value_that_is_not_finite_is_refused_with_its_line(reader, value: str, tmp_path: Path) -> None:
    path = write(tmp_path / "results.csv", "s,drpo,0,overall,f1,0.5,10", f"s,grpo,0,overall,f1,{value},10")
    with pytest.raises(ResultsError, match=f"^{path}:3: value '{value}' of grpo seed 0 overall f1 is not a finite"):
        reader(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("s,drpo,zero,overall,f1,x,60", ":2: seed, value or n is not a number \\(seed 'zero', value 'x', n '60'\\)"),
        ("s,drpo,0,overall", ":2: expected the 7 columns suite,algo,seed,domain,metric,value,n; the row is cut short"),
        ("s,drpo,0,overall,f1,0.5,10,extra", ":2: expected the 7 columns"),
    ],
)
def test_a_damaged_row_is_named_with_its_line(line: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=message):
        read_results(write(tmp_path / "results.csv", line))


def test_a_binary_results_csv_is_named(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ResultsError, match="results.csv: not UTF-8 text"):
        read_results(tmp_path / "results.csv")


def test_the_writer_refuses_what_its_readers_would_and_keeps_the_file(tmp_path: Path) -> None:
    row = dict(suite="s", algo="a", seed=0, domain="d", metric="f1", value=0.5, n=3)
    writer = ResultsWriter(tmp_path / "results.csv")
    writer.add([row])
    before = (tmp_path / "results.csv").read_text()
    with pytest.raises(ResultsError, match="a seed 0 d f1 is given twice"):
        writer.add([{**row, "value": 0.7}], "the results of a seed 0")
    with pytest.raises(ResultsError, match="^the results of b seed 0: value nan of b seed 0 d f1 is not a finite"):
        writer.add([{**row, "algo": "b", "value": float("nan")}], "the results of b seed 0")
    assert (tmp_path / "results.csv").read_text() == before and len(writer.rows) == 1


def test_a_full_disk_leaves_results_csv_as_it_was_and_names_it(tmp_path: Path) -> None:
    """A real file-size limit (``ulimit -f``) in a child process: the rewrite fails, the old file stays."""
    path = tmp_path / "results.csv"
    ResultsWriter(path, [dict(suite="s", algo="a", seed=0, domain="d", metric="f1", value=0.5, n=3)]).flush()
    before = path.read_text()
    script = textwrap.dedent(f"""
        import resource, sys
        from rlbench_med.runners.sweep import ResultsWriter
        rows = [dict(suite="s", algo="a", seed=s, domain="d", metric="f1", value=0.5, n=3) for s in range(5000)]
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            ResultsWriter({str(path)!r}, rows).flush()
        except OSError as exc:
            print(exc.errno, exc.filename)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    errno_, filename = done.stdout.split()
    assert int(errno_) == 27 and filename == str(path)  # EFBIG, naming results.csv (not its .tmp)
    assert path.read_text() == before and not (tmp_path / "results.csv.tmp").exists()


def test_failed_csv_is_read_and_a_damaged_one_named(tmp_path: Path) -> None:
    assert read_failed(tmp_path / "failed.csv") == []
    (tmp_path / "failed.csv").write_text("suite,algo,seed,error\ns,drpo,1,\"RuntimeError: boom, twice\"\n")
    assert read_failed(tmp_path / "failed.csv") == [{"suite": "s", "algo": "drpo", "seed": 1,
                                                     "error": "RuntimeError: boom, twice"}]
    (tmp_path / "failed.csv").write_text("suite,algo,seed,error\ns,drpo,one,x\n")
    with pytest.raises(ResultsError, match="failed.csv:2: expected suite,algo,seed,error with a whole seed"):
        read_failed(tmp_path / "failed.csv")


def test_folder_problem_names_the_part_at_fault(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    long_name = "x" * 300
    assert folder_problem(tmp_path / "new" / "out") is None
    assert folder_problem(tmp_path / "afile") == f"{tmp_path / 'afile'} is a file, not a folder"
    assert folder_problem(tmp_path / "afile" / "o") == f"{tmp_path / 'afile'} is a file, so no folder can be made under it"
    assert folder_problem(tmp_path / long_name) == (
        f"its part {'x' * 24}... is 300 bytes long; this file system allows at most "
        f"{os.pathconf(tmp_path, 'PC_NAME_MAX')} per name")
