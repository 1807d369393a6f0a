"""End to end on climb_vision quick data: RL must beat the SFT base it starts from."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbench_med.runners.base import Job, MemoryTracker
from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local import RUNNER
from rlbench_med.typed_config import apply_overrides


@pytest.mark.slow
def test_grpo_and_drpo_raise_heldout_f1_and_reward_over_the_base(tmp_path: Path) -> None:
    from rlbench_med.suites.spec import get_suite
    from rlbench_med.suites.synth import generate

    data = tmp_path / "climb_vision"
    generate("climb_vision", data, seed=0, profile="quick")
    config = apply_overrides(LocalConfig(progress=False, device="cpu"),
                             {k: str(v) for k, v in get_suite("climb_vision").run_overrides("quick").items()})
    jobs = [Job("climb_vision", a, a, 0, config, data, tmp_path / "out") for a in ("grpo", "drpo")]
    RUNNER.prepare(jobs)
    for job in jobs:
        tracker = MemoryTracker()
        RUNNER.run(job, tracker, False)
        f1 = [v for _, v in tracker.history("eval/overall/f1")]
        rewards = [v for _, v in tracker.history("train/reward_mean")]
        fifth = len(rewards) // 5
        assert f1[-1] > f1[0] + 0.03, f"{job.algo}: held-out macro-F1 {f1[0]:.3f} (base) -> {f1[-1]:.3f}"
        first, last = sum(rewards[:fifth]) / fifth, sum(rewards[-fifth:]) / fifth
        assert last > first + 0.02, f"{job.algo}: mean reward {first:.3f} -> {last:.3f}"
