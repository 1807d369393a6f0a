"""`rlbench-med run` with the real local runner on climb_vision (tiny settings): files, MLflow, Ray = local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlbench_med.cli import main
from rlbench_med.reports.results import build_table
from rlbench_med.reports.tracking import child_runs, find_parent_run
from rlbench_med.runners.sweep import read_results
from rlbench_med.suites import VISION_DOMAINS

TINY = ["--set", "steps=4", "--set", "eval_every=2", "--set", "sft_steps=10", "--set", "prompts_per_step=4",
        "--set", "n_rollouts=4", "--set", "checkpoint_every=0", "--set", "device=cpu"]


@pytest.mark.slow
def test_climb_vision_local_and_ray_executors_give_the_same_table(
    tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray  # a required dependency: missing is a failure, not a skip
    base = ["run", "--suite", "climb_vision", "--algos", "drpo,grpo", "--seeds", "0,1", *TINY]
    assert main([*base, "--out", "local"]) == 0
    out = capsys.readouterr().out
    assert "drpo F1" in out and "overall" in out and "report: " in out

    local = tmp_path / "local"
    for name in ("results.csv", "report.md", "report.html", "config.yaml", "figures/difference_vs_baseline.png",
                 "figures/curves_f1.png", "figures/curves_reward.png", "figures/advantage_time.png"):
        assert (local / name).exists(), name
    rows = read_results(local / "results.csv")
    domains = {r["domain"] for r in rows}
    assert domains == set(VISION_DOMAINS) | {"overall"}
    for algo in ("drpo", "grpo"):
        for seed in (0, 1):
            got = {(r["domain"], r["metric"]) for r in rows if (r["algo"], r["seed"]) == (algo, seed)}
            assert {(d, m) for d in domains for m in ("acc", "f1")} <= got
            lines = (local / "predictions" / f"{algo}-seed{seed}.jsonl").read_text().splitlines()
            record = json.loads(lines[0])
            assert {"domain", "dataset", "labels", "predicted"} <= set(record)
            assert isinstance(record["labels"], list) and isinstance(record["predicted"], list)
    parent = find_parent_run(tracked, "rlbench-med/climb_vision")
    children = child_runs(tracked, parent)
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert all(c.info.status == "FINISHED" and "eval/overall/f1" in c.data.metrics and
               "time/advantage_s" in c.data.metrics for c in children)

    try:
        assert main([*base, "--executor", "ray", "--out", "ray"]) == 0
    finally:
        ray.shutdown()
    t_local = build_table(rows)
    t_ray = build_table(read_results(tmp_path / "ray" / "results.csv"))
    assert t_ray.cells.keys() == t_local.cells.keys()
    for key, cell in t_local.cells.items():
        assert t_ray.cells[key].mean == pytest.approx(cell.mean, abs=1e-9), key
