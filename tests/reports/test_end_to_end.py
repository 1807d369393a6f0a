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
    assert "climb_vision: f1_strict" in out and "overall" in out and "report: " in out

    local = tmp_path / "local"
    for name in ("results.csv", "report.md", "report.html", "config.yaml", "figures/difference_vs_baseline.png",
                 "figures/curves_validation.png", "figures/curves_reward.png", "figures/advantage_time.png"):
        assert (local / name).exists(), name
    rows = read_results(local / "results.csv")
    domains = {r["domain"] for r in rows}
    assert domains == set(VISION_DOMAINS) | {"overall"}
    metrics = ("acc", "f1", "exact", "f1_strict", "labels")
    # base (the SFT start, one evaluation) and the three floors sit beside the trained algorithms
    assert {(r["algo"], r["seed"]) for r in rows} == {
        ("drpo", 0), ("drpo", 1), ("grpo", 0), ("grpo", 1), ("base", 0),
        ("floor:all", 0), ("floor:majority", 0), ("floor:random", 0),
        ("floor:box_image", 0), ("floor:box_mean", 0), ("floor:box_none", 0)}
    for algo in ("drpo", "grpo", "base", "floor:all"):
        for seed in (0, 1) if algo in ("drpo", "grpo") else (0,):
            got = {(r["domain"], r["metric"]) for r in rows if (r["algo"], r["seed"]) == (algo, seed)}
            assert {(d, m) for d in domains for m in metrics} <= got, algo
    floor_all = {(r["domain"], r["metric"]): r["value"] for r in rows if r["algo"] == "floor:all"}
    assert floor_all[("overall", "exact")] == 0.0 and floor_all[("overall", "acc")] == pytest.approx(0.5)
    # comparisons.csv: the seed difference of results.csv, each cell in its family of the testing plan
    import csv

    with open(local / "comparisons.csv") as fh:
        comps = list(csv.DictReader(fh))
    assert list(comps[0]) == ["algo", "baseline", "domain", "metric", "diff", "ci_low", "ci_high", "p_value",
                              "n_seeds", "method", "significant", "family", "p_adjusted"]
    cells = {(c["algo"], c["baseline"], c["domain"], c["metric"]): c for c in comps}
    cell = cells[("drpo", "grpo", "overall", "f1")]
    value = {(r["algo"], r["seed"]): r["value"] for r in rows if (r["domain"], r["metric"]) == ("overall", "f1")}
    d = [value[("drpo", s)] - value[("grpo", s)] for s in (0, 1)]
    assert float(cell["ci_low"]) <= float(cell["diff"]) <= float(cell["ci_high"])
    assert float(cell["diff"]) == pytest.approx(sum(d) / 2) and cell["n_seeds"] == "2"
    assert cell["family"] == "exploratory" and cell["p_adjusted"] == "" and cell["significant"] == "False"
    assert cells[("drpo", "grpo", "overall", "f1_strict")]["family"] == "primary"
    assert cells[("drpo", "base", "overall", "f1_strict")]["family"] == "reference"
    assert {(c["algo"], c["baseline"]) for c in comps} >= {("drpo", "grpo"), ("drpo", "base"), ("grpo", "floor:all")}
    md = (local / "report.md").read_text()
    assert md.index("## Headline: f1_strict") < md.index("## Beside the paper: acc and f1")
    assert "Mean ± sample std over 2 seeds" in md and "| cxr | 225 |" in md
    for algo in ("drpo", "grpo"):
        for seed in (0, 1):
            lines = (local / "predictions" / f"{algo}-seed{seed}.jsonl").read_text().splitlines()
            record = json.loads(lines[0])
            assert {"domain", "dataset", "labels", "predicted"} <= set(record)
            assert isinstance(record["labels"], list) and isinstance(record["predicted"], list)
    parent = find_parent_run(tracked, "rlbench-med/climb_vision")
    children = child_runs(tracked, parent)
    assert parent.info.status == "FINISHED" and len(children) == 5  # 2 algos x 2 seeds + base
    assert all(c.info.status == "FINISHED" and "eval/overall/f1_strict" in c.data.metrics for c in children)
    assert all("time/advantage_s" in c.data.metrics for c in children if c.data.tags["rlbench.algo"] != "base")

    try:
        assert main([*base, "--executor", "ray", "--out", "ray"]) == 0
    finally:
        ray.shutdown()
    t_local = build_table(rows)
    t_ray = build_table(read_results(tmp_path / "ray" / "results.csv"))
    assert t_ray.cells.keys() == t_local.cells.keys()
    for key, cell in t_local.cells.items():
        assert t_ray.cells[key].mean == pytest.approx(cell.mean, abs=1e-9), key
