"""The RL optimizer's schedule against transformers' own (the one OpenRLHF builds), and its use in a job."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup, get_constant_schedule_with_warmup

from rlbench_med.runners.base import MemoryTracker
from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local import RUNNER
from rlbench_med.runners.local.optim import lr_factor, make_optimizer


def _transformers_factors(schedule: str, total: int, warmup_ratio: float, min_lr_ratio: float) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    warmup = math.ceil(warmup_ratio * total)  # OpenRLHF: num_warmup_steps=math.ceil(max_steps * lr_warmup_ratio)
    if schedule == "cosine":
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr_rate=min_lr_ratio)
    else:
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    factors = []
    for _ in range(total):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return factors


@pytest.mark.parametrize("schedule,total,warmup,floor", [
    ("cosine", 150, 0.03, 0.1), ("cosine", 37, 0.0, 0.2), ("cosine", 10, 0.5, 0.0),
    ("constant", 40, 0.1, 0.1), ("constant", 5, 0.0, 0.1),
])
def test_the_schedule_is_the_one_transformers_builds_for_openrlhf(schedule: str, total: int, warmup: float,
                                                                  floor: float) -> None:
    cfg = LocalConfig(lr_schedule=schedule, warmup_ratio=warmup, min_lr_ratio=floor)
    ours = [lr_factor(u, total, cfg) for u in range(total)]
    assert ours == pytest.approx(_transformers_factors(schedule, total, warmup, floor), abs=1e-12)


def test_the_optimizer_takes_the_configs_betas() -> None:
    cfg = LocalConfig(adam_beta1=0.8, adam_beta2=0.95, weight_decay=0.01)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], 0.003, cfg)
    group = opt.param_groups[0]
    assert group["betas"] == (0.8, 0.95) and group["weight_decay"] == 0.01 and group["base_lr"] == 0.003


def test_a_job_follows_the_schedule_and_logs_its_learning_rate(make_job) -> None:
    job = make_job(steps=6, lr=0.01, lr_schedule="cosine", warmup_ratio=0.34, min_lr_ratio=0.1, epochs=1,
                   minibatches=2, checkpoint_every=0)
    tracker = MemoryTracker()
    RUNNER.run(job, tracker, False)
    # 6 steps x 2 minibatches = 12 updates, 5 of them warmup; the step logs the mean of its two updates
    factors = _transformers_factors("cosine", 12, 0.34, 0.1)
    expected = [0.01 * (factors[2 * i] + factors[2 * i + 1]) / 2 for i in range(6)]
    assert [v for _, v in tracker.history("train/lr")] == pytest.approx(expected, rel=1e-9)
    assert tracker.history("train/lr")[0][1] == pytest.approx(0.01 * (0 + 1 / 5) / 2)
