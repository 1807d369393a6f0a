"""The ``runtime`` suite's runner: times an estimator's advantage step on synthetic rollout batches.

No policy is trained. For one job (an estimator spec and a seed) it builds random scored batches
carrying every optional input (values, greedy baseline rewards, log-probs, token rewards), so any
estimator can run, and measures the wall time of ``estimator(inputs)``:

- vs batch size: a fresh estimator, ``steps`` timed calls at each size in ``batch_sizes``
  (results.csv domain ``batch=<B>``);
- vs history length: an estimator that has already seen ``H`` batches (its state, e.g. DRPO's
  reward history, grows with them) for each ``H`` in ``histories`` (domain ``history=<H>``).

Rows have metric ``advantage_ms`` (median over the timed calls) and ``n`` = ``steps``. ``RUNNER``
is registered (lazily) as ``timing`` by :mod:`rlbench_med.runners.sweep`, which runs the
``runtime`` suite with it whatever ``--runner`` says.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rlbench_med.runners.base import Job, JobResult, RunnerSpec, Tracker
from rlbench_med.typed_config import ConfigError


@dataclass(frozen=True)
class TimingConfig:
    """Sizes of the synthetic batches the runtime suite times (the suite profile's ``data`` sizes)."""

    batch_sizes: tuple[int, ...] = field(default=(256, 1024), metadata={"help": "rollouts per timed batch"})
    histories: tuple[int, ...] = field(
        default=(1, 100), metadata={"help": "batches the estimator has seen before it is timed (history length)"}
    )
    history_batch: int = field(default=256, metadata={"help": "rollouts per batch of the history sweep"})
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt"})
    seq_len: int = field(default=64, metadata={"help": "response tokens T (lengths drawn in [T/4, T])"})
    n_domains: int = field(default=8, metadata={"help": "domains of the synthetic batches"})
    steps: int = field(default=20, metadata={"help": "timed calls per point (the median is reported)"})
    warmup: int = field(default=1, metadata={"help": "untimed calls before timing a batch size"})

    def __post_init__(self) -> None:
        for name in ("history_batch", "group_size", "seq_len", "n_domains", "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")
        if not self.batch_sizes or any(b < self.group_size or b % self.group_size for b in self.batch_sizes):
            raise ConfigError(f"batch_sizes {self.batch_sizes} must be non-empty multiples of group_size ({self.group_size})")
        if self.history_batch % self.group_size:
            raise ConfigError(f"history_batch ({self.history_batch}) must be a multiple of group_size ({self.group_size})")
        if any(h < 0 for h in self.histories):
            raise ConfigError(f"histories {self.histories} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def synthetic_batch(batch: int, config: TimingConfig, gen: torch.Generator) -> Any:
    """Random ``AdvantageInputs`` of ``batch`` rollouts with every optional input filled."""
    from rlbench_med.algorithms import AdvantageInputs

    T = config.seq_len
    lengths = torch.randint(max(1, T // 4), T + 1, (batch,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    prompts = batch // config.group_size
    groups = torch.arange(prompts).repeat_interleave(config.group_size)
    domains = torch.randint(0, config.n_domains, (prompts,), generator=gen).repeat_interleave(config.group_size)
    rewards = torch.rand(batch, generator=gen)
    logp = -torch.rand(batch, T, generator=gen) * mask
    return AdvantageInputs(
        rewards=rewards, response_mask=mask, group_ids=groups, domains=domains,
        domain_names=tuple(f"d{i}" for i in range(config.n_domains)),
        token_rewards=torch.zeros(batch, T), values=torch.rand(batch, T, generator=gen) * mask,
        baseline_rewards=torch.rand(batch, generator=gen), old_logprobs=logp,
        ref_logprobs=logp - 0.01 * torch.rand(batch, T, generator=gen) * mask,
    )


def _time(estimator: Any, inputs: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        estimator(inputs)
        out.append((time.perf_counter() - start) * 1000)
    return out


def _check(job: Job) -> None:
    if job.estimator == "sft":
        raise ConfigError("the runtime suite times advantage estimators; sft has none (drop it from --algos)")


def _prepare(jobs: Sequence[Job]) -> None:
    return None


def _run(job: Job, tracker: Tracker, resume: bool) -> JobResult:
    from rlbench_med.algorithms import make_estimator

    cfg: TimingConfig = job.config
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(job.seed)
    rows: list[dict[str, Any]] = []
    tracker.log_params({"algo": job.algo, "seed": job.seed, **cfg.to_dict()})
    step = 0
    points: list[tuple[str, Any, int]] = [(f"batch={b}", b, 0) for b in cfg.batch_sizes]
    points += [(f"history={h}", cfg.history_batch, h) for h in cfg.histories]
    for domain, batch, history in points:
        estimator = make_estimator(job.estimator)
        for _ in range(history):
            estimator(synthetic_batch(cfg.history_batch, cfg, gen))
        inputs = synthetic_batch(batch, cfg, gen)
        for _ in range(cfg.warmup if history == 0 else 0):
            estimator(inputs)
        ms = statistics.median(_time(estimator, inputs, cfg.steps))
        rows.append({"suite": job.suite, "algo": job.algo, "seed": job.seed, "domain": domain,
                     "metric": "advantage_ms", "value": ms, "n": cfg.steps})
        step += 1
        tracker.log_metrics({f"runtime/{domain.replace('=', '_')}_ms": ms, "time/advantage_s": ms / 1000}, step=step)
    return JobResult(job=job, rows=rows, predictions={}, wall_s=time.perf_counter() - start)


def _plan(job: Job) -> list[str]:
    cfg: TimingConfig = job.config
    return [f"time {job.estimator}: batch sizes {list(cfg.batch_sizes)}, history lengths {list(cfg.histories)}, "
            f"{cfg.steps} repeats"]


RUNNER = RunnerSpec(
    name="timing",
    description="times advantage estimators on synthetic rollout batches (the runtime suite)",
    config_cls=TimingConfig,
    check=_check,
    prepare=_prepare,
    run=_run,
    plan=_plan,
)
