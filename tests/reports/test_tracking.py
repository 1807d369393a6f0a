"""MLflow schema of a sweep (temporary sqlite store), run statuses, rebuilding results from MLflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rlbench_med.reports.tracking import (
    STORE_TIMEOUT_S,
    MLflowSweepTracking,
    TrackingError,
    child_runs,
    fetch_curves,
    find_parent_run,
    open_store,
    rebuild_results,
)
from rlbench_med.runners import sweep
from rlbench_med.runners.sweep.outcome import record_result
from tests.reports.conftest import PLUGIN
from tests.reports.test_sweep import Notes, _unprivileged


def run(tmp_path: Path, uri: str, progress=None, **kw):
    base = dict(suite="fake_suite", runner="fake", out=tmp_path / "out", plugins=(PLUGIN,), seeds=(0, 1),
                algos=("drpo", "grpo"))
    base.update(kw)
    plan = sweep.build_plan(sweep.SweepRequest(**base))
    tracking = MLflowSweepTracking(uri)
    outcome = sweep.run_sweep(plan, tracking, progress)
    client = MlflowClient(uri)
    parent = client.get_run(tracking.parent_id)
    return outcome, parent, child_runs(uri, parent), client


HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                      check=True).stdout.strip()


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
        assert tags["rlbench.suite"] == "fake_suite" and tags["mlflow.source.git.commit"] == HEAD
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


def test_a_job_tracker_sends_its_steps_together_and_all_of_them_once_flushed(tmp_path: Path, tracked: str) -> None:
    from rlbench_med.reports.tracking import MLflowChild, MLflowTracker

    client = MlflowClient(tracked)
    experiment = client.create_experiment("buffer")
    buffered, direct = (client.create_run(experiment).info.run_id for _ in range(2))
    tracker = MLflowChild(tracked, buffered).open()
    for step in (1, 2, 3):
        tracker.log_metrics({"train/reward_mean": step / 10, "skipped": None}, step)
    assert client.get_metric_history(buffered, "train/reward_mean") == []  # within a second: still buffered
    tracker.flush()
    assert [(m.step, m.value) for m in client.get_metric_history(buffered, "train/reward_mean")] == [
        (1, 0.1), (2, 0.2), (3, 0.3)]
    MLflowTracker(tracked, direct).log_metrics({"a": 1.0}, 5)  # the sweep's own trackers send at once
    assert [(m.step, m.value) for m in client.get_metric_history(direct, "a")] == [(5, 1.0)]


@pytest.mark.parametrize("runner", ["fake", "fake_parallel"])  # in this process; in worker processes
def test_a_job_that_fails_after_logging_keeps_its_steps(tmp_path: Path, tracked: str, runner: str) -> None:
    _, _, children, client = run(tmp_path, tracked, runner=runner, overrides={"fail_after_steps": "grpo"})
    statuses = {(c.data.tags["rlbench.algo"], c.info.status) for c in children}
    assert statuses == {("drpo", "FINISHED"), ("grpo", "FAILED")}
    for child in children:
        assert [m.step for m in client.get_metric_history(child.info.run_id, "train/reward_mean")] == [1, 2, 3]


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
        def job_finished(self, job, ok, error=""): pass
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
        def job_finished(self, job, ok, error=""): pass
        def stop(self): pass

    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake", out=tmp_path / "o",
                                               plugins=(PLUGIN,), seeds=(0,), algos=("drpo",)))
    tracking = MLflowSweepTracking(tracked)
    sweep.run_sweep(plan, tracking, Crash())  # the job fails (its tracker raised), the sweep goes on
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
    assert [s for s, _ in curves[("drpo", 0)]["val/alpha/f1"]] == [2, 3]
    assert (tmp_path / "rebuilt" / "predictions" / "grpo-seed1.jsonl").exists()


def plan_of(tmp_path: Path, **kw):
    base = dict(suite="fake_suite", runner="fake", out=tmp_path / "out", plugins=(PLUGIN,), seeds=(0,),
                algos=("drpo", "grpo"))
    base.update(kw)
    return sweep.build_plan(sweep.SweepRequest(**base))


def sweep_runs(client: MlflowClient, out: Path) -> list:
    exp = client.get_experiment_by_name("rlbench-med/fake_suite")
    return [r for r in client.search_runs([exp.experiment_id], filter_string="tags.`rlbench.role` = 'sweep'")
            if r.data.tags["rlbench.out_dir"] == str(out)]


def test_runs_a_killed_sweep_left_running_are_closed_and_resume_continues_them(tmp_path: Path, tracked: str) -> None:
    # What kill -9 mid-job leaves: drpo finished, grpo's run open with 2 of its 3 steps, the parent open.
    killed = plan_of(tmp_path)
    tracking = MLflowSweepTracking(tracked)
    tracking.start(killed)
    outcome = sweep.SweepOutcome(killed, [], [], False, killed.out_dir / "results.csv", 0.0)
    writer = sweep.ResultsWriter(outcome.results_csv)
    drpo, grpo = killed.jobs
    tracking.child(drpo)
    record_result(killed.runner.run(drpo, tracking.children[("drpo", 0)].open(), False), tracking,
                  sweep.NullProgress(), writer, outcome)
    sweep.save_config(killed)
    grpo_run = tracking.child(grpo).open()
    for step in (1, 2):
        grpo_run.log_metrics({"train/reward_mean": 0.5}, step=step)
    grpo_run.flush()  # these two had reached the store before the kill

    client = MlflowClient(tracked)
    assert {client.get_run(tracking.parent_id).info.status, client.get_run(grpo_run.run_id).info.status} == {"RUNNING"}
    resumed = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan_of(tmp_path, resume=True), resumed)
    assert outcome.ok and resumed.parent_id == tracking.parent_id  # the same parent run, continued
    parent = client.get_run(tracking.parent_id)
    assert parent.info.status == "FINISHED" and "rlbench.error" not in parent.data.tags
    assert parent.data.tags["rlbench.resumed"].startswith("after KILLED: its process ended without closing it (killed "
                                                          "with SIGKILL")
    children = {c.data.tags["rlbench.algo"]: c for c in child_runs(tracked, parent)}
    assert sorted(children) == ["drpo", "grpo"] and {c.info.status for c in children.values()} == {"FINISHED"}
    assert children["grpo"].info.run_id == grpo_run.run_id  # one history per job
    assert children["grpo"].data.tags["rlbench.resumed"].startswith("after KILLED: its process ended")
    steps = [m.step for m in client.get_metric_history(grpo_run.run_id, "train/reward_mean")]
    assert sorted(steps) == [1, 1, 2, 2, 3]  # the fake runner starts over; the report keeps the later point per step
    assert fetch_curves(tracked, parent)[("grpo", 0)]["train/reward_mean"] == [(1, 1 / 3), (2, 2 / 3), (3, 1.0)]
    rows, _ = rebuild_results(tracked, parent, tmp_path / "rebuilt")
    assert {r["algo"] for r in rows} == {"drpo", "grpo"}


def test_stale_runs_are_closed_by_any_next_run_in_the_folder_with_the_reason(tmp_path: Path, tracked: str) -> None:
    # Killed during the data step or the SFT base: the parent is open and config.yaml not written yet.
    left = MLflowSweepTracking(tracked)
    left.start(plan_of(tmp_path))
    outcome = sweep.run_sweep(plan_of(tmp_path), MLflowSweepTracking(tracked))  # no --resume needed
    assert outcome.ok
    client = MlflowClient(tracked)
    stale = client.get_run(left.parent_id)
    assert stale.info.status == "KILLED"
    assert "ended without closing it (killed with SIGKILL, out of memory or a crash)" in stale.data.tags["rlbench.error"]
    assert sorted(r.info.status for r in sweep_runs(client, tmp_path / "out")) == ["FINISHED", "KILLED"]


def test_report_of_a_resumed_sweep_has_every_job_of_the_folder(tmp_path: Path, tracked: str) -> None:
    class Interrupt(Notes):
        def job_started(self, job, steps):
            if job.algo == "grpo":
                raise KeyboardInterrupt

    first = MLflowSweepTracking(tracked)
    assert sweep.run_sweep(plan_of(tmp_path), first, Interrupt()).status == "KILLED"
    client = MlflowClient(tracked)
    for expected in ("after KILLED", "after FINISHED"):  # grpo resumed; then every job done already
        tracking = MLflowSweepTracking(tracked)
        assert sweep.run_sweep(plan_of(tmp_path, resume=True), tracking).ok
        parent = client.get_run(tracking.parent_id)
        assert (parent.info.run_id, parent.info.status, parent.data.tags["rlbench.resumed"]) == (
            first.parent_id, "FINISHED", expected)
        rows, _ = rebuild_results(tracked, parent, tmp_path / expected)
        assert {(r["algo"], r["seed"]) for r in rows} == {("drpo", 0), ("grpo", 0)}
    assert [r.info.status for r in sweep_runs(client, tmp_path / "out")] == ["FINISHED"]


def test_resume_with_more_seeds_updates_the_parent_tags(tmp_path: Path, tracked: str) -> None:
    sweep.run_sweep(plan_of(tmp_path, algos=("grpo",)), MLflowSweepTracking(tracked))
    tracking = MLflowSweepTracking(tracked)
    assert sweep.run_sweep(plan_of(tmp_path, algos=("grpo",), seeds=(0, 1), resume=True), tracking).ok
    parent = MlflowClient(tracked).get_run(tracking.parent_id)
    assert (parent.data.tags["rlbench.algos"], parent.data.tags["rlbench.seeds"]) == ("grpo", "0,1")
    assert len(child_runs(tracked, parent)) == 2


def test_a_sweep_whose_only_job_failed_rebuilds_its_failure_for_the_report(tmp_path: Path, tracked: str) -> None:
    tracking = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan_of(tmp_path, algos=("grpo",), overrides={"fail_estimator": "grpo"}), tracking)
    assert outcome.status == "FAILED"
    parent = MlflowClient(tracked).get_run(tracking.parent_id)
    rows, _ = rebuild_results(tracked, parent, tmp_path / "rebuilt")
    from rlbench_med.runners.base import read_failed

    assert rows == []
    assert read_failed(tmp_path / "rebuilt" / "failed.csv") == [
        {"suite": "fake_suite", "algo": "grpo", "seed": 0, "error": "RuntimeError: fake failure of grpo-seed0"}]


def test_a_sweep_without_a_finished_or_failed_job_has_nothing_to_report(tmp_path: Path, tracked: str) -> None:
    plan = plan_of(tmp_path, algos=("grpo",))

    def interrupted(job, tracker, resume):
        raise KeyboardInterrupt

    plan.runner = plan.runner.__class__(**{**plan.runner.__dict__, "run": interrupted})
    tracking = MLflowSweepTracking(tracked)
    assert sweep.run_sweep(plan, tracking).status == "KILLED"
    parent = MlflowClient(tracked).get_run(tracking.parent_id)
    with pytest.raises(TrackingError, match=f"sweep run {parent.info.run_id} \\(out\\) has no finished job, so there "
                                            f"is nothing to report; finish it with `rlbench-med run --resume --out "):
        rebuild_results(tracked, parent, tmp_path / "rebuilt")


def test_a_signal_during_the_report_closes_the_parent_killed(tmp_path: Path, tracked: str) -> None:
    def report(outcome):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return []

    tracking = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan_of(tmp_path), tracking, report=report)
    assert outcome.report_interrupted
    client = MlflowClient(tracked)
    parent = client.get_run(tracking.parent_id)
    assert parent.info.status == "KILLED"
    assert sorted(c.info.status for c in child_runs(tracked, parent)) == ["FINISHED", "FINISHED"]


def test_an_error_in_the_report_closes_the_parent_failed(tmp_path: Path, tracked: str) -> None:
    def report(outcome):
        raise ValueError("figure broke")

    tracking = MLflowSweepTracking(tracked)
    with pytest.raises(ValueError, match="figure broke"):
        sweep.run_sweep(plan_of(tmp_path), tracking, report=report)
    assert MlflowClient(tracked).get_run(tracking.parent_id).info.status == "FAILED"


def test_experiments_open_on_training_runs_and_keep_artifacts_out_of_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    open_store(uri, "rlbench-med/fake_variants")
    created = client.get_experiment_by_name("rlbench-med/fake_variants")
    assert created.tags["mlflow.experimentKind"] == "custom_model_development"
    artifacts = tmp_path / "cache" / "mlflow-artifacts" / "rlbench-med_fake_variants"
    assert created.artifact_location == artifacts.as_uri()
    sweep.run_sweep(plan_of(tmp_path, suite="fake_variants", algos=("drpo",), out=tmp_path / "v"),
                    MLflowSweepTracking(uri))
    assert not (tmp_path / "mlruns").exists()
    assert len(list(artifacts.rglob("drpo*-seed0.jsonl"))) == 2  # the predictions of both variants' child runs
    # an experiment made by an older version (no kind tag) gets it on its next sweep
    client.create_experiment("rlbench-med/fake_suite", artifact_location=(tmp_path / "old").as_uri())
    sweep.run_sweep(plan_of(tmp_path), MLflowSweepTracking(uri))
    assert client.get_experiment_by_name("rlbench-med/fake_suite").tags["mlflow.experimentKind"] == \
        "custom_model_development"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("foo://bar", "tracking store foo://bar: MLflow has no store for the scheme 'foo'; set MLFLOW_TRACKING_URI"),
        ("http://127.0.0.1:9", "tracking server http://127.0.0.1:9 does not answer ("),
        ("sqlite:////nonexistent-folder/x/mlflow.db", "folder /nonexistent-folder/x does not exist"),
    ],
)
def test_unusable_stores_are_refused_in_one_line(uri: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=re.escape(message)) as info:
        open_store(uri, "rlbench-med/x")
    assert "\n" not in str(info.value) and time.perf_counter() - start < STORE_TIMEOUT_S + 5


def test_a_read_only_store_is_refused(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory() as shared:  # a folder every user can look into
        os.chmod(shared, 0o755)
        db = Path(shared) / "mlflow.db"
        open_store(f"sqlite:///{db}", "rlbench-med/x")
        db.chmod(0o444)

        def check() -> None:
            with pytest.raises(TrackingError, match=f"tracking store {db} is read-only"):
                open_store(f"sqlite:///{db}", "rlbench-med/x")

        _unprivileged(check)


def test_two_first_runs_at_once_on_a_new_store_both_work(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    go = tmp_path / "go"
    script = ("import os, sys, time\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
              "from rlbench_med.reports.tracking import open_store\n"
              "print(open_store(sys.argv[1], 'rlbench-med/race'))\n")
    env = {**os.environ, "RLBENCH_MED_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", script, uri], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(1)
    go.write_text("")
    done = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in done]
    assert len({out.strip() for out, _ in done}) == 1  # one experiment, the same id for all


def _mlflow_under_a_file_size_limit(uri: str, limit: int, create: str) -> subprocess.CompletedProcess:
    """Create a store in a child process under a real file-size limit (``ulimit -f``): ``create`` is
    ``open_store`` (ours) or ``mlflow`` (MLflow's own client, as a first run did before)."""
    call = ("open_store(sys.argv[1], 'rlbench-med/x')" if create == "open_store"
            else "MlflowClient(tracking_uri=sys.argv[1]).search_experiments()")
    script = ("import resource, sys\n"
              "from mlflow.tracking import MlflowClient\n"
              "from rlbench_med.reports.tracking import open_store\n"
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
              f"{call}\n")
    return subprocess.run([sys.executable, "-c", script, uri], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_LOGGING_LEVEL": "ERROR"})


def test_a_store_whose_creation_fails_leaves_nothing_behind_and_the_next_run_creates_it(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    failed = _mlflow_under_a_file_size_limit(f"sqlite:///{db}", 200 * 1024, "open_store")
    assert failed.returncode != 0
    assert f"TrackingError: tracking store {db} could not be created ((sqlite3.OperationalError) disk I/O error; " \
           "is the disk full?); nothing was left behind" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no half-created store, no temporary file
    assert open_store(f"sqlite:///{db}", "rlbench-med/x")  # the next run (no limit) creates it


def test_a_half_created_store_is_named_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert _mlflow_under_a_file_size_limit(f"sqlite:///{db}", 200 * 1024, "mlflow").returncode != 0
    assert db.exists()  # what MLflow itself leaves: some of its tables
    with pytest.raises(TrackingError, match=f"^tracking store {db} is half-created or damaged and holds no runs "
                                            ".*; delete it and run again, or set MLFLOW_TRACKING_URI to another store"):
        open_store(f"sqlite:///{db}", "rlbench-med/x")


def test_an_artifact_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mlflow-artifacts").write_text("not a folder")
    with pytest.raises(TrackingError, match=f"^artifact folder {cache / 'mlflow-artifacts' / 'rlbench-med_x'} of "
                                            f"experiment rlbench-med/x: {cache / 'mlflow-artifacts'} is a file, so no "
                                            "folder can be made under it; make it a folder you can write to"):
        open_store(f"sqlite:///{tmp_path / 'new.db'}", "rlbench-med/x")


def test_every_run_is_closed_when_artifacts_fail_midway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracked = f"sqlite:///{tmp_path / 'own.db'}"  # its experiment's artifacts are in this test's cache
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked)
    plan = plan_of(tmp_path, algos=("grpo",))
    open_store(tracked, "rlbench-med/fake_suite")  # (the plan-time check passes: the folder is fine then)
    tracking = MLflowSweepTracking(tracked)
    artifacts = tmp_path / "cache" / "mlflow-artifacts"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.write_text("a file where the artifact folder should be")  # e.g. replaced while the sweep runs
    with pytest.raises(NotADirectoryError):
        sweep.run_sweep(plan, tracking)
    client = MlflowClient(tracked)
    parent = client.get_run(tracking.parent_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["rlbench.error"].startswith("the sweep failed: NotADirectoryError: ")
    assert [c.info.status for c in child_runs(tracked, parent)] == ["FAILED"]


def test_the_config_is_logged_as_a_dict_and_the_data_as_a_dataset_input(tmp_path: Path, tracked: str) -> None:
    import yaml

    from rlbench_med.reports.tracking import data_input
    from tests.runners.local.tiny_data import write_tiny_data

    _, parent, children, client = run(tmp_path, tracked)
    assert parent.data.tags["mlflow.source.git.commit"] == HEAD
    config = yaml.safe_load(Path(client.download_artifacts(children[0].info.run_id, "config.yaml", str(tmp_path)))
                            .read_text())
    assert config["config"]["steps"] == 3 and config["suite"] == "fake_suite"

    data = write_tiny_data(tmp_path / "data")
    plan = sweep.build_plan(sweep.SweepRequest(suite="climb_vision", data=str(data), out=tmp_path / "o2"))
    entry = data_input(plan)
    run_id = client.create_run(parent.info.experiment_id).info.run_id
    client.log_inputs(run_id, datasets=[entry])
    (logged,) = client.get_run(run_id).inputs.dataset_inputs
    fingerprint = plan.data_source.fingerprint()
    assert logged.dataset.digest == fingerprint[:32] and json.loads(logged.dataset.profile)["fingerprint"] == fingerprint
    assert json.loads(logged.dataset.source) == {"uri": str(data.resolve())}
    assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "training")]


def test_system_metrics_are_opt_in_with_mlflows_switch(tmp_path: Path, tracked: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    _, _, children, _ = run(tmp_path, tracked, out=tmp_path / "off")
    assert not any(k.startswith("system/") for c in children for k in c.data.metrics)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    mlflow.system_metrics.set_system_metrics_sampling_interval(0.2)
    try:
        _, _, children, _ = run(tmp_path, tracked, out=tmp_path / "on", overrides={"sleep_s": "1.0"}, seeds=(0,))
    finally:
        mlflow.system_metrics.set_system_metrics_sampling_interval(None)
    for child in children:
        assert "system/cpu_utilization_percentage" in child.data.metrics and child.info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_system_metrics_without_psutil_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from rlbench_med.reports.tracking import TrackingError, system_metrics_enabled

    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    with pytest.raises(TrackingError, match=r"which MLflow samples with psutil: pip install 'rlbench-med\[system-metrics\]'"):
        system_metrics_enabled()


def test_the_default_store_is_under_the_cache_wherever_the_command_runs(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.runners.sweep import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    seen = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        seen.add(tracking_uri())
    assert seen == {f"sqlite:///{tmp_path / 'cache' / 'mlflow.db'}"}


def test_an_unknown_store_scheme_is_refused_without_mlflows_private_registry() -> None:
    from rlbench_med.reports.tracking import TrackingError, open_store

    with pytest.raises(TrackingError, match="MLflow has no store for the scheme 'ftp'"):
        open_store("ftp://host/x")
