"""The runtime suite: every estimator timed on synthetic batches, rows and the scaling figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbench_med.reports.report import make_report
from rlbench_med.runners import sweep
from rlbench_med.runners.timing import TimingConfig
from rlbench_med.typed_config import ConfigError


def test_runtime_suite_times_each_estimator_by_batch_and_history(tmp_path: Path) -> None:
    plan = sweep.build_plan(sweep.SweepRequest(
        suite="runtime", algos=("grpo", "drpo", "ppo", "remax"), out=tmp_path / "rt",
        overrides={"batch_sizes": "16,32", "histories": "0,2", "history_batch": "16", "steps": "2", "seq_len": "8"},
    ))
    assert plan.runner.name == "timing" and plan.data_dir is None
    outcome = sweep.run_sweep(plan)
    assert outcome.ok
    rows = sweep.read_results(outcome.results_csv)
    assert {(r["algo"], r["domain"]) for r in rows} == {
        (a, d) for a in ("grpo", "drpo", "ppo", "remax") for d in ("batch=16", "batch=32", "history=0", "history=2")}
    assert all(r["metric"] == "advantage_ms" and r["value"] > 0 and r["n"] == 2 for r in rows)
    report = make_report(plan.out_dir)
    assert ("Advantage time vs batch size and history length", plan.out_dir / "figures" / "runtime_scaling.png") in report.figures
    assert "| grpo |" in report.markdown.read_text()


def test_profile_sizes_configure_the_timing_runner() -> None:
    plan = sweep.build_plan(sweep.SweepRequest(suite="runtime", profile="full", algos=("grpo",), out=Path("rt_full")))
    assert plan.config.batch_sizes == (256, 1024, 4096, 16384) and plan.config.histories == (1, 100, 1000)
    with pytest.raises(ConfigError, match="multiples of group_size"):
        TimingConfig(batch_sizes=(12,), group_size=8)
