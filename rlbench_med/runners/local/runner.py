"""The local runner's entry points for the sweep: ``check``, ``prepare``, ``run``, ``plan``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench_med.runners.base import BASE, SFT, Job, JobResult, Tracker, make_job_estimator
from rlbench_med.runners.config import LocalConfig
from rlbench_med.typed_config import ConfigError

if TYPE_CHECKING:
    import torch

#: Optional estimator inputs each policy can supply.
SUPPORTED_INPUTS = {
    "builtin": frozenset({"values", "baseline_rewards", "old_logprobs", "ref_logprobs", "token_rewards"}),
    "hf": frozenset({"baseline_rewards", "old_logprobs", "ref_logprobs", "token_rewards"}),
}
_WHY_MISSING = {
    ("hf", "values"): "the hf: policy has no critic; use policy=builtin or an estimator without a critic",
}
#: Fields ``rlbench-med tune --space`` may search: they shape the RL updates (samples per step, the
#: surrogate, the optimizer, the KL), not the SFT base every estimator starts from (``sft._NOT_BASE``
#: lists what the base ignores), the evaluation, the reward or the number of steps.
TUNABLE = frozenset({
    "lr", "kl_coef", "kl_mode", "temperature", "clip_low", "clip_high", "n_rollouts", "prompts_per_step", "epochs",
    "minibatches", "encoder_lr_scale", "adam_beta1", "adam_beta2", "lr_schedule", "warmup_ratio", "min_lr_ratio",
    "vf_coef", "critic_lr",
})


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


def prepare(jobs: Sequence[Job], note: Callable[[str], None] | None = None) -> None:
    """Build (or find) the cached SFT base of every distinct (data, base config) once; ``note`` hears what
    happens (each base trained or found, and a tenth of its SFT steps at a time)."""
    import time

    from rlbench_med.runners.local.sft import load_or_train_base
    from rlbench_med.runners.local.train import make_agent

    say = note or (lambda message: None)
    seen: set[Path] = set()
    for job in jobs:
        device, drop_p, path = _base_of(job)
        if path in seen:
            continue
        seen.add(path)
        cfg = job.config
        if path.exists():
            say(f"SFT base: cached ({path})")
        else:
            say(f"SFT base: training {cfg.sft_steps} steps on {cfg.sft_fraction:.0%} of train (cached afterwards, "
                "for every algorithm, seed and later sweep) ...")
        begin = time.perf_counter()
        every = max(1, cfg.sft_steps // 10)

        def on_step(step: int, total: int = cfg.sft_steps, every: int = every, begin: float = begin) -> None:
            if step % every == 0 or step == total:
                took = time.perf_counter() - begin
                say(f"SFT base: step {step}/{total} ({took:.0f} s, about {took / step * (total - step):.0f} s left)")

        with torch_threads(cfg.cpu_threads):
            agent = make_agent(cfg, job.data_dir, device)
            load_or_train_base(agent, cfg, job.data_dir, agent.encoded.train, drop_p, device.type, on_step)


def identity(job: Job) -> dict[str, str]:
    """What a job's results depend on beyond its config, data and code: its SFT base's cache key
    (data, base config, modality dropout, device type and a ``hf:`` model's files) and the device type."""
    device, _, path = _base_of(job)
    return {"base": path.parent.name, "device": device.type}


def _base_of(job: Job) -> tuple[torch.device, float, Path]:
    """The device, modality dropout and cache path of ``job``'s SFT base (the path hashes the data)."""
    from rlbench_med.runners.local.sft import base_key, base_path
    from rlbench_med.runners.local.train import dropout_probability, resolve_device, suite_eval_inputs

    device = resolve_device(job.config)
    drop_p = dropout_probability(job.config, suite_eval_inputs(job))
    return device, drop_p, base_path(base_key(job.data_dir, job.config, drop_p, device.type))


def threads(job: Job) -> int | None:
    """The CPU threads ``job`` computes with (``cpu_threads``) when it runs on the CPU; None on a GPU,
    where jobs do not share the device side by side."""
    from rlbench_med.runners.local.train import resolve_device

    return None if resolve_device(job.config).type != "cpu" else int(job.config.cpu_threads)


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
    """What ``run`` would do, in a few lines (for the plan and ``--dry-run``): budget, base, checkpoints."""
    from rlbench_med.runners.local.checkpoint import latest_readable_checkpoint

    cfg: LocalConfig = job.config
    if job.estimator == BASE:
        return [f"{job.algo} seed {job.seed}: the shared SFT base evaluated as it is (step 0, no training)"]
    what = "supervised fine-tuning" if job.estimator == SFT else f"RL with estimator {job.estimator}"
    budget = f"{cfg.steps} steps x {cfg.prompts_per_step} prompts"
    if job.estimator != SFT:
        budget += f" x {cfg.n_rollouts} rollouts (T={cfg.temperature}, lr={cfg.lr}, kl {cfg.kl_mode} {cfg.kl_coef})"
    policy = (f"builtin {cfg.backbone} {cfg.n_layers}x{cfg.d_model}" if cfg.hf_path is None else cfg.policy)
    ckpt_dir = Path(job.out_dir) / "checkpoints" / job.slug
    curves = (f"validation every {cfg.eval_every} steps and at the end" if 0 < cfg.eval_every < cfg.steps
              else "validation at the end")
    saves = f"checkpoints every {cfg.checkpoint_every} steps" if 0 < cfg.checkpoint_every < cfg.steps else "no checkpoints"
    final = (f"; the final policy in {ckpt_dir / ('final.pt' if cfg.policy == 'builtin' else 'final')}" if cfg.save_final
             else f"; in {ckpt_dir}" if 0 < cfg.checkpoint_every < cfg.steps else "")
    lines = [
        f"{job.algo} seed {job.seed}: {what}; {budget}",
        f"  policy {policy}; base: SFT {cfg.sft_steps} steps on {cfg.sft_fraction:.0%} of train, {_base_state(job)}",
        f"  {curves}; {saves}{final}",
    ]
    found = latest_readable_checkpoint(ckpt_dir, mmap=True)
    if found is not None:
        lines.append(f"{job.algo} seed {job.seed} resumes from step {found[1]['step']} ({found[0]})")
    return lines


def _base_state(job: Job) -> str:
    """Whether the job's SFT base is in the cache already (it depends on the data, so not before it exists).

    ``job.data_dir`` is a data folder or the sweep's saved data source (a ``*.source.json`` file)."""
    from rlbench_med.suites.data import DataSource

    where = Path(job.data_dir)
    if not (where.exists() and DataSource.open(where).train.is_file()):
        return "to be trained once the data is ready (then cached, shared)"
    path = _base_of(job)[2]
    return f"cached ({path})" if path.exists() else "to be trained (then cached, shared)"
