"""Jobs side by side: the local executor's worker processes keep the sweep's lifecycle (fake runner)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rlbench_med.reports.tracking import MLflowSweepTracking, child_runs
from rlbench_med.runners import sweep
from rlbench_med.runners.base import read_failed
from rlbench_med.runners.sweep.plan import usable_cores
from rlbench_med.typed_config import ConfigError
from tests.reports.conftest import PLUGIN


def request(tmp_path: Path, out: str, runner: str = "fake_parallel", **kw: Any) -> sweep.SweepRequest:
    base = dict(suite="fake_suite", runner=runner, algos=("grpo", "drpo"), seeds=(0, 1), out=tmp_path / out,
                plugins=(PLUGIN,))
    base.update(kw)
    return sweep.SweepRequest(**base)


class Recorded:
    """A progress display that keeps what it is told."""

    enabled = False

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def note(self, message: str) -> None:
        pass

    def start(self, total_jobs: int) -> None:
        pass

    def job_started(self, job: Any, total_steps: int | None) -> None:
        self.events.append(("started", job.algo, job.seed))

    def step(self, step: int, metrics: Mapping[str, float], job: Any = None) -> None:
        self.events.append(("step", job.algo if job else None, job.seed if job else None, step))

    def job_finished(self, job: Any, ok: bool, error: str = "") -> None:
        self.events.append(("finished", job.algo, job.seed, ok, error))

    def job_reused(self, job: Any, origin: str) -> None:
        pass

    def stop(self) -> None:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_jobs_run_side_by_side_and_write_what_one_after_another_writes(tmp_path: Path, tracked: str) -> None:
    # Every job waits until two jobs have started: one after another, the first would wait forever.
    plan = sweep.build_plan(request(tmp_path, "two", overrides={"workers": "2", "rendezvous": "2"}))
    assert plan.side_by_side(plan.to_train) == 2
    assert "local: 2 jobs side by side, each in a worker process" in plan.render()
    progress = Recorded()
    tracking = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan, tracking, progress)
    assert outcome.ok, [f.error for f in outcome.failures]
    pids = {int(p.read_text()) for p in (plan.out_dir / "started").iterdir()}
    assert len(pids) == 2 and os.getpid() not in pids
    # The same file as the jobs one after another in this process (rows in plan order).
    alone = sweep.run_sweep(sweep.build_plan(request(tmp_path, "one", overrides={"workers": "1"})))
    assert outcome.results_csv.read_bytes() == alone.results_csv.read_bytes()
    # Every job's steps reached the display under its own name; every child run finished with its curves.
    jobs = [(j.algo, j.seed) for j in plan.jobs]
    for algo, seed in jobs:
        assert [e[3] for e in progress.events if e[:3] == ("step", algo, seed)] == [1, 2, 3]
        assert ("finished", algo, seed, True, "") in progress.events
    children = child_runs(tracked, tracking.client.get_run(tracking.parent_id))
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4
    assert all("eval/overall/f1" in c.data.metrics and "train/reward_mean" in c.data.metrics for c in children)
    assert all(not _alive(pid) for pid in pids)  # the workers ended with the sweep


def test_a_job_that_fails_or_whose_worker_dies_is_recorded_and_the_others_go_on(
    tmp_path: Path, tracked: str
) -> None:
    plan = sweep.build_plan(request(tmp_path, "out", algos=("grpo", "drpo", "rloo"),
                                    overrides={"workers": "2", "fail_estimator": "grpo", "die": "drpo"}))
    tracking = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan, tracking)
    assert outcome.status == "FAILED"
    errors = {(f.job.algo, f.job.seed): f.error for f in outcome.failures}
    assert errors[("grpo", 0)] == "RuntimeError: fake failure of grpo-seed0"
    assert errors[("drpo", 1)] == "WorkerDied: the worker process running the job ended (killed by signal 9)"
    assert sorted(errors) == [("drpo", 0), ("drpo", 1), ("grpo", 0), ("grpo", 1)]
    assert {(r["algo"], r["seed"]) for r in sweep.read_results(outcome.results_csv)} == {("rloo", 0), ("rloo", 1)}
    assert {(r["algo"], r["seed"]): r["error"] for r in read_failed(plan.out_dir / "failed.csv")} == errors
    children = {(c.data.tags["rlbench.algo"], c.data.params.get("seed")): c for c in
                child_runs(tracked, tracking.client.get_run(tracking.parent_id))}
    assert children[("drpo", "0")].info.status == "FAILED"
    assert children[("drpo", "0")].data.tags["rlbench.error"].startswith("WorkerDied:")
    assert children[("rloo", "1")].info.status == "FINISHED"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_workers_and_marks_their_jobs_killed(tmp_path: Path, tracked: str, sig: int) -> None:
    # grpo finishes, drpo holds: the signal comes while drpo's two jobs run side by side.
    plan = sweep.build_plan(request(tmp_path, sig.name, algos=("grpo", "drpo"), seeds=(0,),
                                    overrides={"workers": "2", "hold": "drpo"}))

    def signal_once_grpo_is_written() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = sweep.read_results(plan.out_dir / "results.csv") if (plan.out_dir / "results.csv").exists() else []
            if any(r["algo"] == "grpo" for r in rows):
                time.sleep(0.3)
                os.kill(os.getpid(), sig)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=signal_once_grpo_is_written, daemon=True)
    thread.start()
    tracking = MLflowSweepTracking(tracked)
    outcome = sweep.run_sweep(plan, tracking)
    thread.join()
    assert (outcome.status, outcome.signum) == ("KILLED", sig)
    assert {r["algo"] for r in sweep.read_results(outcome.results_csv)} == {"grpo"}
    statuses = {c.data.tags["rlbench.algo"]: c.info.status
                for c in child_runs(tracked, tracking.client.get_run(tracking.parent_id))}
    assert statuses == {"grpo": "FINISHED", "drpo": "KILLED"}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    # --resume trains what was killed, side by side again, and keeps what finished.
    (plan.out_dir / "release").write_text("")
    plan = sweep.build_plan(request(tmp_path, sig.name, algos=("grpo", "drpo"), seeds=(0,), resume=True,
                                    overrides={"workers": "2", "hold": "drpo"}))
    assert [(j.algo, j.seed) for j in plan.pending] == [("drpo", 0)]
    assert sweep.run_sweep(plan, MLflowSweepTracking(tracked)).ok
    assert {r["algo"] for r in sweep.read_results(plan.out_dir / "results.csv")} == {"grpo", "drpo"}


def test_how_many_jobs_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = sweep.build_plan(request(tmp_path, "n", algos=("grpo", "drpo", "rloo"), seeds=(0, 1, 2)))
    monkeypatch.setattr("rlbench_med.runners.sweep.plan.usable_cores", lambda: 4)
    assert plan.side_by_side(plan.jobs) == 4  # one a core (the jobs take one thread each)
    assert plan.side_by_side(plan.jobs[:3]) == 3  # at most one a job
    plan.runner = dataclasses.replace(plan.runner, threads=lambda job: 2)
    assert plan.side_by_side(plan.jobs) == 2
    plan.runner = dataclasses.replace(plan.runner, threads=lambda job: None if job.algo == "drpo" else 1)
    assert plan.side_by_side(plan.jobs) == 1  # a job that must run alone (on a GPU)
    assert "jobs one after another in this process" in plan.render()
    one = sweep.build_plan(request(tmp_path, "w1", overrides={"workers": "1"}))
    assert one.side_by_side(one.jobs) == 1
    # A runner that does not declare its threads runs one job at a time (openrlhf, the runtime suite's timings).
    assert sweep.build_plan(request(tmp_path, "f", runner="fake")).side_by_side(plan.jobs) == 1
    assert usable_cores() >= 1


@pytest.mark.parametrize("value, message", [("-1", "workers: must be an integer from 0"),
                                            ("two", "workers: expected an integer")])
def test_a_bad_workers_setting_fails_at_plan_time(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep.build_plan(request(tmp_path, "bad", overrides={"workers": value}))


TINY = {"steps": "3", "prompts_per_step": "4", "n_rollouts": "3", "eval_every": "0", "checkpoint_every": "0",
        "sft_steps": "10", "sft_batch_size": "8", "d_model": "32", "n_layers": "1", "n_heads": "2", "device": "cpu",
        "cpu_threads": "1"}


@pytest.mark.slow
def test_a_seeds_results_are_bitwise_the_same_alone_and_beside_other_seeds(tmp_path: Path) -> None:
    from tests.runners.local.tiny_data import write_tiny_data

    data = write_tiny_data(tmp_path / "data")

    def rows(seeds: tuple[int, ...], workers: str) -> tuple[dict[tuple, list[dict]], bytes]:
        out = f"seeds{len(seeds)}-w{workers}"
        plan = sweep.build_plan(sweep.SweepRequest(
            suite="climb_vision", algos=("grpo",), seeds=seeds, data=data, out=tmp_path / out, reuse=False,
            overrides={**TINY, "workers": workers}))
        outcome = sweep.run_sweep(plan)
        assert outcome.ok, [f.error for f in outcome.failures]
        by_job: dict[tuple, list[dict]] = {}
        for r in sweep.read_results(outcome.results_csv):
            by_job.setdefault((r["algo"], r["seed"]), []).append(r)
        return by_job, outcome.results_csv.read_bytes()

    alone, _ = rows((0,), "1")  # in this process
    two, _ = rows((0, 1), "2")  # each job in a worker process, two at a time
    four, four_csv = rows((0, 1, 2, 3), "2")
    for key in (("grpo", 0), ("base", 0)):
        assert two[key] == alone[key] == four[key]
    assert two[("grpo", 1)] == four[("grpo", 1)]
    assert two[("grpo", 1)] != two[("grpo", 0)]
    # The file lists the jobs in plan order, whatever order they finished in.
    _, again_csv = rows((0, 1, 2, 3), "1")
    assert again_csv == four_csv
