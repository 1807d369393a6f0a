"""`rlbench-med compare`: sweeps of one suite in one report, paired where seeds match; refusals."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from rlbench_med.cli import main
from rlbench_med.reports.compare import compare_sweeps
from rlbench_med.reports.stats import ComparisonError
from rlbench_med.reports.sweeps import load_sweeps
from rlbench_med.reports.tracking import MLflowSweepTracking
from rlbench_med.runners import sweep
from tests.reports.conftest import PLUGIN


def run(tmp_path: Path, out: str, uri: str | None = None, **kw) -> Path:
    base = dict(suite="fake_suite", runner="fake", out=tmp_path / out, plugins=(PLUGIN,), seeds=(0, 1),
                algos=("drpo", "grpo"))
    base.update(kw)
    plan = sweep.build_plan(sweep.SweepRequest(**base))
    sweep.run_sweep(plan, MLflowSweepTracking(uri) if uri else None)
    return plan.out_dir


def overall(folder: Path, algo: str, metric: str = "f1_strict") -> dict[int, float]:
    return {r["seed"]: r["value"] for r in sweep.read_results(folder / "results.csv")
            if r["algo"] == algo and r["domain"] == "overall" and r["metric"] == metric}


def compare(tmp_path: Path, *sources: str, out: str = "cmp", uri: str = "sqlite:///none.db"):
    sweeps = load_sweeps(sources, uri, tmp_path / "scratch")
    return compare_sweeps(sweeps, tmp_path / out, n_boot=300)


def test_sweeps_with_one_config_pool_their_seeds_and_pair_them(tmp_path: Path) -> None:
    a = run(tmp_path, "a", seeds=(0, 1))
    b = run(tmp_path, "b", seeds=(1, 2, 3))
    report = compare(tmp_path, "a", "b")
    assert report.table.trained == ["drpo", "grpo"] and report.table.seeds["drpo"] == [0, 1, 2, 3]
    assert any(n.startswith("drpo, grpo: the same in every sweep") for n in report.notes)
    # drpo − grpo over the four seeds (seed 1 from a, counted once), against an independent paired t-interval
    drpo = {**overall(b, "drpo"), **overall(a, "drpo")}
    grpo = {**overall(b, "grpo"), **overall(a, "grpo")}
    d = np.array([drpo[s] - grpo[s] for s in range(4)])
    c = report.comparison("drpo", "grpo")[("overall", "f1_strict")]
    assert c.n_seeds == 4 and c.diff == pytest.approx(d.mean())
    low, high = sps.t.interval(0.95, 3, loc=d.mean(), scale=d.std(ddof=1) / 2)
    assert c.low <= low + 1e-12 and c.high >= high - 1e-12
    rows = sweep.read_results(tmp_path / "cmp" / "results.csv")
    assert sorted({(r["algo"], r["seed"]) for r in rows}) == [(x, s) for x in ("drpo", "grpo") for s in range(4)]
    keys = [(r["algo"], r["seed"], r["domain"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))  # seed 1, in both sweeps, counted once
    assert json.loads((tmp_path / "cmp" / "sources.json").read_text())["sweeps"][1]["name"] == "b"


def test_another_config_names_each_sweeps_runs_and_compares_them(tmp_path: Path) -> None:
    run(tmp_path, "a")
    run(tmp_path, "b", overrides={"tag": "other"})
    report = compare(tmp_path, "first=a", "second=b")
    assert report.table.trained == ["drpo (first)", "drpo (second)", "grpo (first)", "grpo (second)"]
    assert any("named by their sweep" in n and "config differs between first and second: tag default vs other" in n
               for n in report.notes)
    pairs = report.pairs()
    assert ("drpo (second)", "grpo (second)") in pairs and ("drpo (first)", "grpo (first)") in pairs
    assert ("drpo (second)", "drpo (first)") in pairs and ("grpo (second)", "grpo (first)") in pairs
    assert ("drpo (second)", "grpo (first)") not in pairs
    # the fake runner's results do not depend on tag: the sweeps' difference is exactly 0
    c = report.comparison("drpo (second)", "drpo (first)")[("overall", "f1_strict")]
    assert (c.diff, c.low, c.high, c.n_seeds) == (0.0, 0.0, 0.0, 2)
    assert "(first)" in (tmp_path / "cmp" / "report.md").read_text()


def test_the_same_config_with_other_results_is_shown_per_sweep(tmp_path: Path) -> None:
    a = run(tmp_path, "a")
    shutil.copytree(a, tmp_path / "c")
    rows = sweep.read_results(tmp_path / "c" / "results.csv")
    for r in rows:
        if r["algo"] == "drpo" and r["seed"] == 0 and r["metric"] == "f1":
            r["value"] += 0.1
    sweep.ResultsWriter(tmp_path / "c" / "results.csv", rows).flush()
    report = compare(tmp_path, "a", "c")
    assert report.table.trained == ["drpo (a)", "drpo (c)", "grpo (a)", "grpo (c)"]
    assert any("drpo seed 0 has other results in c than in a with the same config" in n for n in report.notes)


def test_sweeps_of_other_suites_or_test_records_are_refused(tmp_path: Path) -> None:
    run(tmp_path, "a")
    run(tmp_path, "v", suite="fake_variants", algos=("drpo",), seeds=(0,))
    with pytest.raises(ComparisonError, match="compare needs sweeps of one suite: a is fake_suite, v is fake_variants"):
        compare(tmp_path, "a", "v")
    shutil.copytree(tmp_path / "a", tmp_path / "d")
    for path in (tmp_path / "d" / "predictions").glob("*.jsonl"):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[1:]) + "\n")  # one record fewer
    with pytest.raises(ComparisonError, match="d and a were not evaluated on the same test records: dataset A1"):
        compare(tmp_path, "a", "d")


def test_mlflow_sweeps_and_folders_compare_with_curves(tmp_path: Path, tracked: str) -> None:
    run(tmp_path, "a", tracked)
    run(tmp_path, "b", tracked, algos=("rloo",))
    report = compare(tmp_path, "rlbench-med/fake_suite", "a", out="cmp", uri=tracked)
    # the experiment's latest sweep is b (rloo); a comes from its folder, its curves from the store
    assert report.table.trained == ["rloo", "drpo", "grpo"]
    assert report.table.seeds["rloo"] == [0, 1]
    # one setting (same config): rloo of sweep b against grpo of the folder a, paired by seed
    assert ("rloo", "grpo") in report.pairs() and ("drpo", "grpo") in report.pairs()
    assert report.comparison("rloo", "grpo")[("overall", "f1_strict")].n_seeds == 2
    names = [title for title, _ in report.figures]
    assert "Validation f1_strict learning curves" in names


def test_cli_compare_prints_paper_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, "a")
    run(tmp_path, "b", seeds=(2,))
    assert main(["compare", "a", "b", "--out", "o1", "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert tex.startswith("\\begin{table}[t]") and tex.count("\\begin{tabular}") == 2
    assert main(["compare", "a", "b", "--out", "o2", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:5] == ["Domain", "n", "drpo", "drpo std", "drpo seeds"]
    by = {r[0]: r for r in rows[1:]}
    expected = np.mean([*overall(tmp_path / "a", "drpo").values(), *overall(tmp_path / "b", "drpo").values()])
    assert float(by["overall"][2]) == pytest.approx(expected) and float(by["overall"][4]) == 3
    assert main(["compare", "a", "b", "--out", "o2"]) == 2
    assert "o2 already holds results.csv" in capsys.readouterr().err
    # only the tables asked for, without --out: printed, and no report folder written
    assert main(["compare", "a", "b", "--format", "latex"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("\\begin{table}[t]") and "report:" not in captured.err
    assert not list((tmp_path / "reports").glob("compare-*")) if (tmp_path / "reports").exists() else True
