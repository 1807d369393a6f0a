"""Progress of a sweep in a log (stdout not a terminal): one line per phase, job start/end, every N steps."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from rlbench_med.reports import progress as P


def test_durations_read_like_a_clock() -> None:
    assert [P.duration(s) for s in (9.4, 75, 3725, -1)] == ["9s", "1m15s", "1h02m", "0s"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    return now


def log_of(progress: P.RichProgress) -> list[str]:
    return progress.console.file.getvalue().splitlines()


def test_a_log_gets_a_line_every_n_steps_with_reward_rate_and_eta(clock: list[float]) -> None:
    progress = P.RichProgress(Console(file=io.StringIO(), width=200))
    assert not progress.enabled  # not a terminal
    job = SimpleNamespace(algo="drpo", seed=0)
    progress.start(2)
    progress.job_started(job, 10)  # default: a line every tenth of the steps -> every step here
    for step in range(1, 11):
        clock[0] = 2.0 * step  # 2 s per step
        progress.step(step, {"train/reward_mean": step / 10, "train/rollouts_per_s": 64.0})
        progress.step(step, {"eval/overall/f1": 0.5})  # a second call for the same step adds no line
    clock[0] = 21.0
    progress.job_finished(job, True)
    lines = log_of(progress)
    assert lines[0] == "job 1/2 drpo seed 0: started (10 steps)"
    # after step 4: 8 s for 4 steps, 6 steps left -> 12 s
    assert lines[4] == "drpo seed 0: step 4/10  reward 0.400  64 rollouts/s  ETA 12s"
    assert lines[10] == "drpo seed 0: step 10/10  reward 1.000  64 rollouts/s  ETA 0s"
    assert lines[11] == "job 1/2 drpo seed 0: finished (21s)" and len(lines) == 12


def test_a_resumed_job_counts_its_rate_from_its_first_step(clock: list[float]) -> None:
    progress = P.RichProgress(Console(file=io.StringIO(), width=200), log_every=5)
    job = SimpleNamespace(algo="grpo", seed=1)
    progress.start(1)
    clock[0] = 100.0
    progress.job_started(job, 20)
    for step in range(11, 21):  # resumed from the checkpoint of step 10
        clock[0] = 100.0 + 2.0 * (step - 10)
        progress.step(step, {"train/reward_mean": 0.25})
    progress.job_finished(job, False)
    # step 15: 5 steps in 10 s, 5 left -> 10 s (counting from step 0 would say 3 s)
    assert log_of(progress)[1:] == ["grpo seed 1: step 15/20  reward 0.250  ETA 10s",
                                    "grpo seed 1: step 20/20  reward 0.250  ETA 0s",
                                    "job 1/1 grpo seed 1: failed (20s)"]


def test_jobs_side_by_side_get_their_own_lines_and_rates(clock: list[float]) -> None:
    progress = P.RichProgress(Console(file=io.StringIO(), width=200), log_every=2)
    a, b = SimpleNamespace(algo="drpo", seed=0), SimpleNamespace(algo="grpo", seed=3)
    progress.start(2)
    progress.job_started(a, 4)
    progress.job_started(b, 4)
    clock[0] = 30.0  # both spend 30 s starting up (a worker process, the data) before their first step
    for step in range(1, 5):
        clock[0] = 30.0 + 2.0 * step
        progress.step(step, {"train/reward_mean": 0.5}, a)
        clock[0] += 0.5
        progress.step(step, {"train/reward_mean": 0.25}, b)
    progress.job_finished(b, True)
    progress.job_finished(a, True)
    # step 2: 2 s a step since the first one, 2 steps left -> 4 s (counting the start-up would say 34 s)
    assert log_of(progress)[2:] == ["drpo seed 0: step 2/4  reward 0.500  ETA 4s",
                                    "grpo seed 3: step 2/4  reward 0.250  ETA 4s",
                                    "drpo seed 0: step 4/4  reward 0.500  ETA 0s",
                                    "grpo seed 3: step 4/4  reward 0.250  ETA 0s",
                                    "job 2/2 grpo seed 3: finished (38s)",
                                    "job 1/2 drpo seed 0: finished (38s)"]


def test_on_a_terminal_each_running_job_has_its_own_step_bar() -> None:
    progress = P.RichProgress(Console(file=io.StringIO(), width=200, force_terminal=True))
    assert progress.enabled
    a, b = SimpleNamespace(algo="drpo", seed=0), SimpleNamespace(algo="grpo", seed=1)
    progress.start(2)
    progress.job_started(a, 10)
    progress.job_started(b, 20)
    progress.step(3, {"train/reward_mean": 0.5, "train/rollouts_per_s": 99.0}, a)
    progress.step(7, {"train/reward_mean": 0.25}, b)
    bars = {t.description: (t.completed, t.total, t.fields["stats"]) for t in progress.progress.tasks}
    assert bars == {"jobs": (0, 2, ""), "drpo seed 0": (3, 10, "reward 0.500  99 rollouts/s"),
                    "grpo seed 1": (7, 20, "reward 0.250")}
    progress.job_finished(a, True)
    assert [t.description for t in progress.progress.tasks] == ["jobs", "grpo seed 1"]
    progress.stop()
