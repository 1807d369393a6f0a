"""The Ray executor on a local Ray instance (2 CPUs) gives the local executor's table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlbench_med.reports.results import build_table
from rlbench_med.reports.tracking import MLflowSweepTracking, child_runs
from rlbench_med.runners import sweep
from tests.reports.conftest import PLUGIN


@pytest.mark.slow
def test_ray_executor_matches_local_and_reports_failed_jobs(tmp_path: Path, tracked: str) -> None:
    import ray  # a required dependency: missing is a failure, not a skip

    def request(executor: str, out: str, **kw) -> sweep.SweepRequest:
        return sweep.SweepRequest(suite="fake_suite", runner="fake", executor=executor, ray_num_cpus=2,
                                  algos=("drpo", "grpo"), seeds=(0, 1), out=tmp_path / out, plugins=(PLUGIN,), **kw)

    try:
        local = sweep.run_sweep(sweep.build_plan(request("local", "local")))
        tracking = MLflowSweepTracking(tracked)
        plan = sweep.build_plan(request("ray", "ray"))
        assert "ray: one task per job on a local Ray instance (num_cpus=1, num_gpus=0 each)" in plan.render()
        remote = sweep.run_sweep(plan, tracking)
        assert local.ok and remote.ok
        t_local = build_table(sweep.read_results(local.results_csv))
        t_ray = build_table(sweep.read_results(remote.results_csv))
        assert sorted(t_ray.cells) == sorted(t_local.cells)
        for key, cell in t_local.cells.items():
            assert t_ray.cells[key] == cell
        assert sorted(p.name for p in (tmp_path / "ray" / "predictions").glob("*.jsonl")) == [
            "drpo-seed0.jsonl", "drpo-seed1.jsonl", "grpo-seed0.jsonl", "grpo-seed1.jsonl"]
        children = child_runs(tracked, tracking.client.get_run(tracking.parent_id))
        assert sorted(c.info.status for c in children) == ["FINISHED"] * 4
        assert all("eval/overall/f1" in c.data.metrics and "train/reward_mean" in c.data.metrics for c in children)

        failing = sweep.run_sweep(sweep.build_plan(request("ray", "ray_fail", overrides={"fail_estimator": "grpo"})))
        assert sorted((f.job.algo, f.job.seed) for f in failing.failures) == [("grpo", 0), ("grpo", 1)]
        assert all("fake failure of grpo-seed" in f.error for f in failing.failures)
        assert {r["algo"] for r in sweep.read_results(failing.results_csv)} == {"drpo"}
        # Ray's session is in the test run's own folder (tests/conftest.py), removed at its end, not in /tmp/ray
        assert (Path(os.environ["RAY_TMPDIR"]) / "ray" / "session_latest").exists()
    finally:
        ray.shutdown()
