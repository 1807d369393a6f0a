"""The Python API: run_sweep and load_results return a sweep's files as DataFrames, without the CLI."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

import rlbench_med
from rlbench_med.typed_config import ConfigError
from tests.reports.conftest import PLUGIN


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracked: str) -> None:
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def test_run_sweep_returns_results_comparisons_and_the_headline_table(tmp_path: Path) -> None:
    sweep = rlbench_med.run_sweep("fake_suite", runner="fake", plugins=[PLUGIN], algos=["drpo", "grpo"], seeds=[0, 1],
                                  settings={"steps": 2, "primary_metric": "exact"}, out=tmp_path / "o")
    with open(tmp_path / "o" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(sweep.results) == len(rows) and set(sweep.results["algo"]) == {r["algo"] for r in rows}
    assert sweep.primary_metric == "exact" and sweep.report == tmp_path / "o" / "report.html"
    assert {"algo", "baseline", "diff", "ci_low", "ci_high", "p_value"} <= set(sweep.comparisons.columns)
    assert sweep.failed.empty
    # the headline table by hand: the mean over seeds of each (domain, algo) of results.csv
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["metric"] == "exact":
            values[(r["domain"], r["algo"])].append(float(r["value"]))
    table = sweep.table()
    assert list(table.index)[-1] == "overall"
    for (domain, algo), vs in values.items():
        assert table.loc[domain, algo] == pytest.approx(sum(vs) / len(vs))
    assert rlbench_med.load_results(tmp_path / "o").table("f1").equals(sweep.table("f1"))
    with pytest.raises(KeyError, match="no results of metric 'iou'"):
        sweep.table("iou")


def test_a_failed_job_is_in_failed_and_bad_arguments_raise(tmp_path: Path) -> None:
    sweep = rlbench_med.run_sweep("fake_suite", runner="fake", plugins=[PLUGIN], algos=["drpo", "grpo"], seeds=[0],
                                  settings={"fail_estimator": "grpo"}, out=tmp_path / "o")
    assert list(sweep.failed[["algo", "seed"]].itertuples(index=False, name=None)) == [("grpo", 0)]
    assert set(sweep.results["algo"]) >= {"drpo"} and "grpo" not in set(sweep.results["algo"])
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        rlbench_med.run_sweep("fake_suite", runner="fake", plugins=[PLUGIN], settings={"stepz": 1}, out=tmp_path / "p")
