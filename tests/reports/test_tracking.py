"""MLflow schema of a sweep (temporary sqlite store), run statuses, rebuilding results from MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rlbench_med.reports.tracking import MLflowSweepTracking, child_runs, find_parent_run, rebuild_results
from rlbench_med.runners import sweep
from tests.reports.conftest import PLUGIN


def run(tmp_path: Path, uri: str, progress=None, **kw):
    base = dict(suite="fake_suite", runner="fake", out=tmp_path / "out", plugins=(PLUGIN,), seeds=(0, 1),
                algos=("drpo", "grpo"))
    base.update(kw)
    plan = sweep.build_plan(sweep.SweepRequest(**base))
    tracking = MLflowSweepTracking(uri)
    outcome = sweep.run_sweep(plan, tracking, progress)
    sweep.finish_sweep(outcome, tracking)
    client = MlflowClient(uri)
    parent = client.get_run(tracking.parent_id)
    return outcome, parent, child_runs(uri, parent), client


def test_parent_and_child_runs_follow_the_schema(tmp_path: Path, tracked: str) -> None:
    outcome, parent, children, client = run(tmp_path, tracked)
    assert client.get_experiment(parent.info.experiment_id).name == "rlbench-med/fake_suite"
    assert parent.info.status == "FINISHED" and parent.data.tags["rlbench.suite"] == "fake_suite"
    assert sorted((c.data.tags["rlbench.algo"], c.data.params["seed"]) for c in children) == [
        ("drpo", "0"), ("drpo", "1"), ("grpo", "0"), ("grpo", "1")]
    rows = sweep.read_results(outcome.results_csv)
    for child in children:
        tags, params, metrics = child.data.tags, child.data.params, child.data.metrics
        assert child.info.status == "FINISHED"
        assert tags["rlbench.suite"] == "fake_suite" and tags["rlbench.git_sha"]
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert params["algo"] == tags["rlbench.algo"] and params["steps"] == "3" and params["lr"] == "0.1"
        expected = next(r["value"] for r in rows if (r["algo"], r["seed"], r["domain"], r["metric"]) ==
                        (params["algo"], int(params["seed"]), "overall", "f1"))
        assert metrics["eval/overall/f1"] == pytest.approx(expected)
        history = client.get_metric_history(child.info.run_id, "train/reward_mean")
        assert [m.step for m in history] == [1, 2, 3]
        arts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "predictions"} <= arts
        assert [a.path for a in client.list_artifacts(child.info.run_id, "predictions")] == [
            f"predictions/{params['algo']}-seed{params['seed']}.jsonl"]
    assert "results.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_run_totals_add_no_point_to_the_per_step_time_series(tmp_path: Path, tracked: str) -> None:
    _, _, children, client = run(tmp_path, tracked)
    for child in children:
        per_step = 0.001 * (1 + len(child.data.tags["rlbench.estimator"]))  # what the fake runner logs each step
        history = client.get_metric_history(child.info.run_id, "time/advantage_s")
        assert [(m.step, m.value) for m in history] == [(1, per_step), (2, per_step), (3, per_step)]
        # the run's total (JobResult.timings) has its own key
        assert child.data.metrics["time/total_advantage_s"] == pytest.approx(3 * per_step)
        assert child.data.metrics["time/total_steps"] == 3


def test_failed_job_ends_failed_and_the_others_finished(tmp_path: Path, tracked: str) -> None:
    outcome, parent, children, _ = run(tmp_path, tracked, overrides={"fail_estimator": "grpo"})
    status = {(c.data.tags["rlbench.algo"], c.data.tags["rlbench.seed"]): c.info.status for c in children}
    assert status == {("drpo", "0"): "FINISHED", ("drpo", "1"): "FINISHED", ("grpo", "0"): "FAILED", ("grpo", "1"): "FAILED"}
    assert parent.info.status == "FAILED"
    assert "fake failure" in next(c for c in children if c.info.status == "FAILED").data.tags["rlbench.error"]


def test_ctrl_c_marks_runs_killed_never_running(tmp_path: Path, tracked: str) -> None:
    class Interrupt:
        def note(self, message): pass
        def start(self, n): pass
        def job_started(self, job, steps):
            if job.algo == "grpo":
                raise KeyboardInterrupt
        def step(self, s, metrics): pass
        def job_finished(self, job, ok): pass
        def stop(self): pass

    outcome, parent, children, _ = run(tmp_path, tracked, progress=Interrupt())
    assert outcome.interrupted
    assert parent.info.status == "KILLED"
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "KILLED"]


def test_a_crash_of_the_sweep_itself_leaves_failed_runs(tmp_path: Path, tracked: str) -> None:
    class Boom(RuntimeError):
        pass

    class Crash:
        def note(self, message): pass
        def start(self, n): pass
        def job_started(self, job, steps): pass
        def step(self, s, metrics):
            raise Boom("display crashed")
        def job_finished(self, job, ok): pass
        def stop(self): pass

    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake", out=tmp_path / "o",
                                               plugins=(PLUGIN,), seeds=(0,), algos=("drpo",)))
    tracking = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan, tracking, Crash())  # the job fails (its tracker raised), the sweep goes on
    sweep.finish_sweep(outcome, tracking)
    client = MlflowClient(tracked)
    assert client.get_run(tracking.parent_id).info.status == "FAILED"
    assert [c.info.status for c in child_runs(tracked, client.get_run(tracking.parent_id))] == ["FAILED"]

    tracking = MLflowSweepTracking(tracked)

    def explode(jobs):
        raise Boom("prepare crashed")

    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake", out=tmp_path / "p",
                                               plugins=(PLUGIN,), seeds=(0,), algos=("drpo",)))
    plan.runner = plan.runner.__class__(**{**plan.runner.__dict__, "prepare": explode})
    with pytest.raises(Boom):
        sweep.run_sweep(plan, tracking)
    assert client.get_run(tracking.parent_id).info.status == "FAILED"


def test_results_rebuilt_from_mlflow_equal_results_csv(tmp_path: Path, tracked: str) -> None:
    outcome, parent, _, _ = run(tmp_path, tracked)
    latest = find_parent_run(tracked, "rlbench-med/fake_suite")
    assert latest.info.run_id == parent.info.run_id
    rows, curves = rebuild_results(tracked, parent, tmp_path / "rebuilt")
    key = lambda r: (r["algo"], r["seed"], r["domain"], r["metric"])  # noqa: E731
    expected = sorted(sweep.read_results(outcome.results_csv), key=key)
    got = sorted(rows, key=key)
    assert [key(r) for r in got] == [key(r) for r in expected]
    for a, b in zip(got, expected):
        assert a["value"] == pytest.approx(b["value"]) and a["n"] == b["n"] and a["suite"] == "fake_suite"
    assert [s for s, _ in curves[("drpo", 0)]["eval/alpha/f1"]] == [2, 3]
    assert (tmp_path / "rebuilt" / "predictions" / "grpo-seed1.jsonl").exists()
