"""A plugin for the sweep/report tests: a tiny suite, a runner that fakes training, an estimator.

Loaded with ``--plugin tests/reports/fake_plugin.py`` (or ``load_plugin``). The runner writes
deterministic predictions of a validation and a test split whose quality depends on the estimator
(``QUALITY``, at the default lr 0.1; ``LR_SLOPE`` per decade of lr below it) and the seed, computes
results rows with the suite's metrics, and logs per-step metrics like a real runner. A job with
``score_test`` False answers the validation split only (its rows are the validation split's).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlbench_med.algorithms import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.runners.base import RUNNERS, VALIDATION, Job, JobResult, RunnerSpec, Tracker, predictions_dir
from rlbench_med.suites import SUITES, SuiteSpec, compute_metrics
from rlbench_med.typed_config import ConfigError, parse_spec

#: Probability that the fake policy predicts the true label, per estimator.
QUALITY = {"drpo": 0.85, "grpo": 0.6, "rloo": 0.5, "fake_const": 0.3, "control:zero": 0.3, "control:shuffle": 0.25,
           "control:negate": 0.05}
#: Change of that probability per decade of lr below 0.1: drpo suits the default lr, grpo a lower one.
LR_SLOPE = {"drpo": -0.2, "grpo": 0.15}
#: The held-out records of each split: the truth's generator seed and the uid prefix.
SPLIT_TRUTH = {"test": (1234, ""), "validation": (4321, "val-")}
DOMAINS = {"alpha": ("A1", "A2"), "beta": ("B1",)}
CLASSES = ("x", "y", "z")
N_PER_DATASET = 30


@dataclass(frozen=True)
class FakeConfig:
    steps: int = 4
    eval_every: int = 2
    lr: float = 0.1
    tag: str = "default"
    fail_estimator: str = ""
    sleep_s: float = 0.0
    marker: str = ""
    rendezvous: int = 0  # each job waits (at most 60 s) until this many jobs of its sweep have started
    hold: str = ""  # jobs of this estimator wait (at most 120 s) until <out>/release exists
    die: str = ""  # a job of this estimator kills its own process (SIGKILL): a worker that dies
    fail_after_steps: str = ""  # a job of this estimator fails after logging its steps

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")


def quality(estimator: str, lr: float) -> float:
    """Probability that the fake policy of ``estimator`` trained at ``lr`` predicts the true label."""
    name = parse_spec(estimator)[0]
    q = QUALITY.get(name, 0.5) + LR_SLOPE.get(name, 0.0) * float(np.log10(0.1 / lr))
    return min(0.95, max(0.05, q))


def _records(job: Job, split: str = "test") -> list[dict[str, Any]]:
    truth_seed, prefix = SPLIT_TRUTH[split]
    truth_rng = np.random.default_rng(truth_seed)  # the held-out set: the same for every job
    seed = 1000 * job.seed + sum(map(ord, job.algo))
    rng = np.random.default_rng(seed if split == "test" else [seed, truth_seed])
    q = quality(job.estimator, job.config.lr)
    out = []
    for domain, datasets in DOMAINS.items():
        for dataset in datasets:
            for i in range(N_PER_DATASET):
                label = CLASSES[int(truth_rng.integers(len(CLASSES)))]
                pred = label if rng.random() < q else CLASSES[int(rng.integers(len(CLASSES)))]
                out.append({"uid": f"{prefix}{dataset}:{i}", "domain": domain, "dataset": dataset,
                            "labels": [label], "predicted": [pred]})
    return out


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _run(job: Job, tracker: Tracker, resume: bool) -> JobResult:
    cfg: FakeConfig = job.config
    start = time.perf_counter()
    if cfg.marker:
        Path(cfg.marker).write_text(job.slug)
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
    if cfg.rendezvous:
        started = job.out_dir / "started"
        started.mkdir(parents=True, exist_ok=True)
        (started / job.slug).write_text(str(os.getpid()))
        _wait_for(lambda: len(list(started.iterdir())) >= cfg.rendezvous, 60, f"{cfg.rendezvous} jobs started")
    if cfg.hold and job.estimator == cfg.hold:
        _wait_for((job.out_dir / "release").exists, 120, "release")
    if cfg.die and job.estimator == cfg.die:
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.fail_estimator and job.estimator == cfg.fail_estimator:
        raise RuntimeError(f"fake failure of {job.slug}")
    val_records = _records(job, "validation")
    val_rows = [{"suite": job.suite, "algo": job.algo, "seed": job.seed, **r} for r in compute_metrics(val_records)]
    records = _records(job) if job.score_test else []
    rows = [{"suite": job.suite, "algo": job.algo, "seed": job.seed, **r} for r in compute_metrics(records)]
    timings = {"advantage_s": 0.0, "steps": float(cfg.steps)}  # run totals, like the real runners' JobResult.timings
    for step in range(1, cfg.steps + 1):
        metrics = {"train/reward_mean": step / cfg.steps, "time/advantage_s": 0.001 * (1 + len(job.estimator))}
        timings["advantage_s"] += metrics["time/advantage_s"]
        for domain in DOMAINS:
            metrics[f"train/{domain}/reward_mean"] = step / cfg.steps / 2
        if step % cfg.eval_every == 0 or step == cfg.steps:  # validation curves (the real runners' val/ keys)
            for r in val_rows:
                metrics[f"val/{r['domain']}/{r['metric']}"] = r["value"] * step / cfg.steps
        if step == cfg.steps and job.score_test:  # the test split, once
            metrics.update({f"eval/{r['domain']}/{r['metric']}": r["value"] for r in rows})
        tracker.log_metrics(metrics, step=step)
    if cfg.fail_after_steps and job.estimator == cfg.fail_after_steps:
        raise RuntimeError(f"fake failure of {job.slug} after its steps")
    validation = {job.algo: _write(predictions_dir(job.out_dir, VALIDATION) / f"{job.slug}.jsonl", val_records)}
    if not job.score_test:
        return JobResult(job=job, rows=val_rows, predictions={}, wall_s=time.perf_counter() - start, timings=timings,
                         validation=validation)
    pred = _write(job.out_dir / "predictions" / f"{job.slug}.jsonl", records)
    return JobResult(job=job, rows=rows, predictions={job.algo: pred}, wall_s=time.perf_counter() - start,
                     timings=timings, validation=validation)


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds} s for {what}")
        time.sleep(0.05)


def _check(job: Job) -> None:
    if job.estimator == "sft":
        raise ConfigError("the fake runner has no sft")


def _prepare(jobs: Sequence[Job]) -> None:
    return None


def _plan(job: Job) -> list[str]:
    return [f"fake-train --algo {job.estimator} --seed {job.seed} --steps {job.config.steps}"]


RUNNER = RunnerSpec(name="fake", description="fakes training (tests)", config_cls=FakeConfig, check=_check,
                    prepare=_prepare, run=_run, plan=_plan, validation_only=True, tunable=frozenset({"lr"}))
RUNNERS.register("fake", RUNNER)
#: The same runner declaring a job identity, so the job cache may reuse its jobs.
CACHED_RUNNER = RunnerSpec(name="fake_cached", description="fakes training, reusable (tests)", config_cls=FakeConfig,
                           check=_check, prepare=_prepare, run=_run, plan=_plan, identity=lambda job: {"fake": "v1"},
                           validation_only=True, tunable=frozenset({"lr"}))
RUNNERS.register("fake_cached", CACHED_RUNNER)
#: The same runner declaring that its jobs may run side by side, one thread each.
PARALLEL_RUNNER = RunnerSpec(name="fake_parallel", description="fakes training, side by side (tests)",
                             config_cls=FakeConfig, check=_check, prepare=_prepare, run=_run, plan=_plan,
                             threads=lambda job: 1)
RUNNERS.register("fake_parallel", PARALLEL_RUNNER)

SUITE = SuiteSpec(
    name="fake_suite", description="two tiny domains (tests)", data="none", domains=tuple(DOMAINS),
    metrics=("f1_strict", "exact", "labels", "acc", "f1"), default_algos=("drpo", "grpo"), default_seeds=(0, 1),
    profiles={"quick": {"data": {}, "run": {"steps": 3}, "seeds": (0, 1)},
              "full": {"data": {}, "run": {"steps": 6, "eval_every": 3}, "seeds": (0, 1, 2)}},
    variants={},
)
SUITES.register("fake_suite", SUITE)

VARIANT_SUITE = SuiteSpec(
    name="fake_variants", description="fake suite with variants (tests)", data="none", domains=tuple(DOMAINS),
    metrics=("f1_strict", "exact", "labels", "acc", "f1"), default_algos=("drpo",), default_seeds=(0,),
    profiles={"quick": {"data": {}, "run": {"steps": 3}, "seeds": (0,)}},
    variants={"small": {"lr": "0.01"}, "big": {"lr": "1.0"}},
)
SUITES.register("fake_variants", VARIANT_SUITE)


@register_estimator("fake_const")
class FakeConst(Estimator):
    """Advantage = reward on every response token."""

    description = "fake: advantage = reward (plugin test)"

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        adv = inputs.rewards[:, None] * inputs.response_mask
        return AdvantageOutput(advantages=adv, returns=adv, diagnostics={})
