"""The local runner's entry points for the sweep: ``check``, ``prepare``, ``run``, ``plan``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rlbench_med.runners.base import BASE, SFT, Job, JobResult, Tracker, make_job_estimator
from rlbench_med.runners.config import LocalConfig
from rlbench_med.typed_config import ConfigError

#: Optional estimator inputs each policy can supply.
SUPPORTED_INPUTS = {
    "builtin": frozenset({"values", "baseline_rewards", "old_logprobs", "ref_logprobs", "token_rewards"}),
    "hf": frozenset({"baseline_rewards", "old_logprobs", "ref_logprobs", "token_rewards"}),
}
_WHY_MISSING = {
    ("hf", "values"): "the hf: policy has no critic; use policy=builtin or an estimator without a critic",
}


def check(job: Job) -> None:
    """Raise :class:`ConfigError` with a one-line reason if ``job`` cannot run; train nothing."""
    cfg = job.config
    if not isinstance(cfg, LocalConfig):
        raise ConfigError(f"{job.algo}: the local runner needs a LocalConfig, got {type(cfg).__name__}")
    kind = "builtin" if cfg.hf_path is None else "hf"
    if cfg.hf_path is not None and not (Path(cfg.hf_path) / "config.json").is_file():
        raise ConfigError(f"policy: {cfg.hf_path} has no config.json; give a local Hugging Face model directory")
    if cfg.device == "cuda":
        from rlbench_med.runners.local.train import resolve_device

        resolve_device(cfg)
    if job.estimator in (SFT, BASE):
        return
    estimator = make_job_estimator(job)
    if cfg.n_rollouts < estimator.min_group_size:
        raise ConfigError(
            f"{job.algo}: estimator {estimator.name!r} compares rollouts of a prompt, so it needs "
            f"n_rollouts >= {estimator.min_group_size} (got {cfg.n_rollouts}); --set n_rollouts={estimator.min_group_size}"
        )
    missing = sorted(set(estimator.requires) - SUPPORTED_INPUTS[kind])
    if missing:
        why = _WHY_MISSING.get((kind, missing[0])) or "this policy cannot supply it"
        raise ConfigError(f"{job.algo}: estimator {estimator.name!r} requires {missing[0]!r}, but {why}")


def prepare(jobs: Sequence[Job]) -> None:
    """Build (or find) the cached SFT base of every distinct (data, base config) once."""
    from rlbench_med.runners.local.sft import load_or_train_base
    from rlbench_med.runners.local.train import dropout_probability, make_agent, resolve_device, suite_eval_inputs

    seen: set[tuple[str, str]] = set()
    for job in jobs:
        cfg: LocalConfig = job.config
        device = resolve_device(cfg)
        drop_p = dropout_probability(cfg, suite_eval_inputs(job))
        from rlbench_med.runners.local.sft import base_key

        key = (str(Path(job.data_dir).resolve()), base_key(job.data_dir, cfg, drop_p, device.type))
        if key in seen:
            continue
        seen.add(key)
        with torch_threads(cfg.cpu_threads):
            agent = make_agent(cfg, job.data_dir, device)
            load_or_train_base(agent, cfg, job.data_dir, agent.encoded.train, drop_p, device.type)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run(job: Job, tracker: Tracker, resume: bool) -> JobResult:
    """Train and evaluate ``job`` (resume from its latest checkpoint when ``resume``)."""
    from rlbench_med.runners.local.train import run_job

    with torch_threads(job.config.cpu_threads):
        return run_job(job, tracker, resume)


def plan(job: Job) -> list[str]:
    """What ``run`` would do, in a few lines (for ``--dry-run``)."""
    cfg: LocalConfig = job.config
    if job.estimator == BASE:
        return [f"{job.algo} seed {job.seed}: the shared SFT base evaluated as it is (step 0, no training)"]
    what = "supervised fine-tuning" if job.estimator == SFT else f"RL with estimator {job.estimator}"
    budget = f"{cfg.steps} steps x {cfg.prompts_per_step} prompts"
    if job.estimator != SFT:
        budget += f" x {cfg.n_rollouts} rollouts (T={cfg.temperature}, lr={cfg.lr}, kl {cfg.kl_mode} {cfg.kl_coef})"
    policy = (f"builtin {cfg.backbone} {cfg.n_layers}x{cfg.d_model}" if cfg.hf_path is None else cfg.policy)
    return [
        f"{job.algo} seed {job.seed}: {what}; {budget}",
        f"  policy {policy}; base: SFT {cfg.sft_steps} steps on {cfg.sft_fraction:.0%} of train (cached, shared)",
        f"  eval every {cfg.eval_every or cfg.steps} steps; checkpoints every {cfg.checkpoint_every or '-'} steps "
        f"in {Path(job.out_dir) / 'checkpoints' / job.slug}",
    ]
