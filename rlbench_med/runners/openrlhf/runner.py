"""The OpenRLHF runner's entry points for the sweep: ``check``, ``prepare``, ``run``, ``plan``.

``run`` exports the suite's data as OpenRLHF prompt files, writes the run spec, starts the launch
command (our trainer inside OpenRLHF's ``train_ppo_ray``) as a subprocess, forwards the metrics
the trainer appends to ``metrics.jsonl`` to the tracker while it runs, and turns the final
predictions into results rows with the suite's metrics. ``plan`` and ``check`` need neither
OpenRLHF nor a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlbench_med.runners.base import Job, JobResult, Tracker, make_job_estimator
from rlbench_med.runners.openrlhf.config import OpenRLHFConfig
from rlbench_med.runners.openrlhf.flags import (
    LaunchContext,
    LaunchPaths,
    launch_command,
    openrlhf_flags,
    owned_flag_sources,
    reward_module_path,
    shell_command,
)
from rlbench_med.runners.openrlhf.guard import check_user_flags, parse_flags
from rlbench_med.runners.openrlhf.startup import LaunchError, find_error_line, require_gpus
from rlbench_med.suites.rewards import REWARDS as BUILTIN_REWARDS
from rlbench_med.typed_config import ConfigError

#: Packages a real run needs (the ``openrlhf`` extra); ``plan``/``check`` need none of them.
RUNTIME_PACKAGES = ("openrlhf", "vllm", "deepspeed", "ray")
#: Seconds between two reads of the trainer's metrics file.
POLL_S = 2.0


def _config(job: Job) -> OpenRLHFConfig:
    cfg = job.config
    if not isinstance(cfg, OpenRLHFConfig):
        raise ConfigError(f"{job.algo}: the openrlhf runner needs an OpenRLHFConfig, got {type(cfg).__name__}")
    return cfg


def _vlm(cfg: OpenRLHFConfig) -> bool:
    """Whether the policy is a vision-language model (assumed when the model cannot be read)."""
    detected = cfg.detect_vlm()
    return True if detected is None else detected


def context(job: Job, resume: bool = False) -> LaunchContext:
    """The launch context of ``job`` (config, seed, critic, VLM, files)."""
    cfg = _config(job)
    estimator = make_job_estimator(job)
    return LaunchContext(
        config=cfg,
        seed=job.seed,
        critic="values" in estimator.requires,
        vlm=_vlm(cfg),
        paths=LaunchPaths.for_job(job),
        resume=resume,
    )


def check(job: Job) -> None:
    """Raise :class:`ConfigError` with a one-line reason if ``job`` cannot run here; start nothing.

    A missing ``model`` is reported by ``run`` (so ``--dry-run`` works before one is chosen).
    """
    cfg = _config(job)
    if job.estimator == "sft":
        raise ConfigError(
            f"{job.algo}: the openrlhf runner trains with RL estimators; run the sft baseline with --runner local"
        )
    if not cfg.chat_template:
        raise ConfigError(
            "chat_template: false is the local runner's (an hf: policy given the raw prompt); OpenRLHF applies the "
            "tokenizer's chat template to every prompt it trains and evaluates on: leave chat_template=true"
        )
    if cfg.reward not in BUILTIN_REWARDS:
        raise ConfigError(
            f"reward: {cfg.reward!r} is a plugin reward; OpenRLHF calls the reward inside its vLLM engines, which load "
            f"only the built-in ones ({', '.join(BUILTIN_REWARDS)}): train it with --runner local, or score this "
            "runner's outputs with it (rlbench-med score --plugin FILE --reward NAME)"
        )
    estimator = make_job_estimator(job)
    if "values" in estimator.requires and _vlm(cfg):
        why = "vlm=true" if cfg.vlm else ("its config.json has a vision_config" if cfg.detect_vlm() else "assumed VLM")
        raise ConfigError(
            f"{job.algo}: estimator {estimator.name!r} needs a critic, and OpenRLHF 0.11.2 has no critic for "
            f"vision-language models (model {cfg.model or '<unset>'}: {why}); pick a critic-free estimator "
            "(grpo, rloo, remax, reinforce_pp, drpo) or a text-only model with vlm=false"
        )
    if cfg.n_samples_per_prompt < estimator.min_group_size:
        raise ConfigError(
            f"{job.algo}: estimator {estimator.name!r} compares rollouts of a prompt, so it needs n_samples_per_prompt "
            f">= {estimator.min_group_size} (got {cfg.n_samples_per_prompt}); --set n_samples_per_prompt=8"
        )
    if "ref_logprobs" in estimator.requires and (cfg.kl_coef == 0 or not cfg.kl_use_loss):
        raise ConfigError(
            f"{job.algo}: estimator {estimator.name!r} requires the reference log probs, which OpenRLHF keeps only "
            f"with a reference model and the KL as a loss (kl_coef={cfg.kl_coef}, kl_mode={cfg.kl_mode}); "
            "set kl_coef > 0 and kl_mode=loss"
        )
    check_user_flags(cfg.openrlhf_args, owned_flag_sources())


def prepare(jobs: Sequence[Job]) -> None:
    """Nothing is shared between jobs: each ``run`` exports its own prompt files (cheap)."""
    for job in jobs:
        _config(job)


def plan(job: Job) -> list[str]:
    """The exact launch plan of ``job``: what runs where, with which estimator, and the command."""
    ctx = context(job)
    cfg = ctx.config
    estimator = make_job_estimator(job)
    gpus = cfg.num_nodes * cfg.gpus_per_node
    ray_where = f"joins the Ray cluster at {cfg.ray_address!r}" if cfg.ray_address else "starts a local Ray instance"
    vlm_note = "vision-language model" if ctx.vlm else "text model"
    if cfg.detect_vlm() is None:
        vlm_note += " (assumed: model unreadable; set vlm=true/false)"
    models = [f"actor (DeepSpeed ZeRO-{cfg.zero_stage}, {cfg.param_dtype})"]
    if cfg.kl_coef > 0:
        models.append("reference")
    if ctx.critic:
        models.append("critic")
    layout = (
        f"{', '.join(models)} and {cfg.vllm_num_engines} vLLM engine(s) x TP {cfg.vllm_tensor_parallel_size} "
        + ("share one pool of GPUs (colocate, sleep mode)" if cfg.colocate else "on separate GPUs (colocate=false)")
    )
    requires = ", ".join(sorted(estimator.requires)) or "nothing optional"
    lines = [
        f"{job.algo} seed {job.seed}: OpenRLHF 0.11.2 PPO trainer on Ray ({ray_where}); advantage step = rlbench "
        f"estimator {job.estimator!r} ({type(estimator).__name__}, requires {requires})",
        f"  resources: {cfg.num_nodes} node(s) x {cfg.gpus_per_node} GPU(s) = {gpus} GPU(s); {layout}",
        f"  policy: {cfg.model or '<unset: --set model=/path/to/model>'} ({vlm_note}); "
        f"{cfg.n_samples_per_prompt} rollouts x {cfg.rollout_batch_size} prompts per step, "
        f"train batch {cfg.train_batch_size}, lr {cfg.lr}, clip [{cfg.clip_low}, {cfg.clip_high}], "
        f"KL {cfg.kl_mode} {cfg.kl_coef} ({cfg.kl_estimator_name})",
        f"  data: {job.data_dir} -> {ctx.paths.train_prompts}, {ctx.paths.validation_prompts} and "
        f"{ctx.paths.eval_prompts} "
        f"(chat template, label JSON{f', images, videos as {cfg.video_frames} frames' if ctx.vlm else ''}); "
        f"reward: {reward_module_path()} "
        f"(reward {cfg.reward}, weights {cfg.reward_weights}, iou {cfg.iou_reduce}, accuracy {cfg.accuracy_reward})",
    ]
    if "baseline_rewards" in estimator.requires:
        lines.append("  baseline: one greedy vLLM response per prompt (n=1, temperature 0) scored by the same reward")
    every = f"every {cfg.eval_every} steps and " if cfg.eval_every else ""
    lines += [
        f"  eval: greedy vLLM answers on the validation split {every}at the end (curves, "
        f"{ctx.paths.validation_predictions}), on the test split once at the end -> {ctx.paths.predictions}; "
        f"metrics -> MLflow via {ctx.paths.metrics}",
        f"  command: {shell_command(launch_command(ctx))}",
    ]
    return lines


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def _require_runtime() -> None:
    missing = [name for name in RUNTIME_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"the openrlhf runner needs {', '.join(missing)} on this machine (GPU only): "
            'pip install -e ".[openrlhf]" (see README.md, section Training on a GPU cluster); '
            "--dry-run shows the plan without them"
        )


def resumable(job: Job) -> bool:
    """Whether ``job`` has a complete OpenRLHF checkpoint to resume from (DeepSpeed's ``latest`` tag file).

    DeepSpeed writes ``latest`` after a save has finished, so a ``ckpt/_actor`` folder without it is
    a job stopped during its first save: it is said on stderr and the job starts from scratch
    (OpenRLHF would load nothing and then fail on the missing client states).
    """
    actor = LaunchPaths.for_job(job).ckpt / "_actor"
    if (actor / "latest").is_file():
        return True
    if actor.is_dir():
        print(f"{job.algo} seed {job.seed}: {actor} holds no complete checkpoint (no 'latest' file: the job stopped "
              "during its first save); training from scratch", file=sys.stderr, flush=True)
    return False


def local_gpus() -> int:
    """CUDA GPUs PyTorch sees on this machine (what a local Ray started here gets)."""
    import torch

    return torch.cuda.device_count()


def _domain_names(data: Any, group_by: str) -> tuple[str, ...]:
    if group_by == "domain":
        return tuple(data.domains)
    return tuple(sorted({s.dataset for s in list(data.train) + list(data.test)}))


def export_job_data(job: Job, paths: LaunchPaths, vlm: bool) -> dict[str, Any]:
    """Export the train, validation and test splits; returns ``{"train": summary, "validation": summary,
    "test": summary, "domain_names": ...}`` (``validation`` None when the data has no validation records)."""
    from rlbench_med.runners.openrlhf.data import export_prompts
    from rlbench_med.suites.data import load_data

    cfg = _config(job)
    data = load_data(Path(job.data_dir))
    common = dict(vlm=vlm, reward=cfg.reward, reward_weights=cfg.reward_weights, iou_reduce=cfg.iou_reduce,
                  accuracy_reward=cfg.accuracy_reward, system_prompt=cfg.system_prompt, time_series=cfg.time_series,
                  video_frames=cfg.video_frames)
    train = export_prompts(data.train, paths.train_prompts, **common)  # type: ignore[arg-type]
    test = export_prompts(data.test, paths.eval_prompts, limit=cfg.eval_max_samples, **common)  # type: ignore[arg-type]
    validation = (export_prompts(data.validation, paths.validation_prompts, limit=cfg.eval_max_samples,
                                 **common)  # type: ignore[arg-type]
                  if data.validation else None)
    most = max(train["max_images"], test["max_images"], validation["max_images"] if validation else 0)
    if vlm and most > cfg.max_images_per_prompt:
        raise ConfigError(
            f"max_images_per_prompt: a prompt of {job.data_dir} has {most} images (video frames included); "
            f"--set max_images_per_prompt={most}"
        )
    return {"train": train, "validation": validation, "test": test,
            "domain_names": _domain_names(data, cfg.group_by)}


class _MetricsTail:
    """Reads the lines appended to the trainer's metrics file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.last_step = 0
        self.seconds: dict[str, float] = {}  # time/<phase> summed over steps

    def forward(self, tracker: Tracker) -> None:
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as fh:
            fh.seek(self.offset)
            while True:
                line = fh.readline()
                if not line.endswith("\n"):
                    break  # a line still being written: read it next time
                self.offset = fh.tell()
                entry = json.loads(line)
                self.last_step = int(entry["step"])
                for key, value in entry["metrics"].items():
                    if key.startswith("time/"):
                        self.seconds[key[len("time/"):]] = self.seconds.get(key[len("time/"):], 0.0) + float(value)
                tracker.log_metrics(entry["metrics"], step=self.last_step)


def _wait(process: subprocess.Popen[bytes], tail: _MetricsTail, tracker: Tracker) -> int:
    try:
        while process.poll() is None:
            tail.forward(tracker)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=60)
        raise
    tail.forward(tracker)
    return int(process.returncode)


def rows_from_predictions(job: Job, path: Path) -> list[dict[str, Any]]:
    """results.csv rows of a predictions file, with the suite's metrics."""
    from rlbench_med.suites.metrics import compute_metrics

    with Path(path).open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    if not records:
        raise RuntimeError(f"{path} holds no predictions; the trainer's final evaluation produced nothing")
    return [
        {"suite": job.suite, "algo": job.algo, "seed": job.seed, "domain": r["domain"], "metric": r["metric"],
         "value": float(r["value"]), "n": int(r["n"])}
        for r in compute_metrics(records)
    ]


def preflight(job: Job) -> None:
    """Raise :class:`ConfigError` unless ``job`` can start here: ``model`` set, the packages installed and,
    for a local Ray on ``device=cuda``, this machine's GPUs enough for the plan (a joined Ray cluster is
    checked by the launch itself). The sweep calls it at plan time, before anything is written."""
    cfg = _config(job)
    check(job)
    if not cfg.model:
        raise ConfigError("model: the openrlhf runner trains a Hugging Face model; --set model=/path/to/model")
    _require_runtime()
    if not cfg.ray_address and cfg.device == "cuda":
        try:
            require_gpus(parse_flags(openrlhf_flags(context(job))), local_gpus(),
                         f"the launch would start on {socket.gethostname()}")
        except LaunchError as exc:
            raise ConfigError(f"{exc}; or --set device=cpu for a tiny model without GPUs") from None


def run(job: Job, tracker: Tracker, resume: bool) -> JobResult:
    """Export, launch OpenRLHF with our trainer, stream metrics, read the predictions back."""
    start = time.perf_counter()
    cfg = _config(job)
    preflight(job)
    ctx = context(job, resume=resume and resumable(job))
    paths = ctx.paths
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    exported = export_job_data(job, paths, ctx.vlm)

    from rlbench_med.runners.openrlhf.runspec import RunSpec

    RunSpec(
        estimator=job.estimator,
        n_samples_per_prompt=cfg.n_samples_per_prompt,
        domain_names=exported["domain_names"],
        group_by=cfg.group_by,
        kl_mode=cfg.kl_mode,
        kl_coef=cfg.kl_coef,
        metrics_path=str(paths.metrics),
        predictions_path=str(paths.predictions),
        eval_prompts=str(paths.eval_prompts),
        validation_prompts=str(paths.validation_prompts) if exported["validation"] else "",
        validation_predictions_path=str(paths.validation_predictions) if exported["validation"] else "",
        eval_every=cfg.eval_every,
        max_new_tokens=cfg.max_new_tokens,
        max_len=cfg.max_len,
        ray_address=cfg.ray_address,
        startup_timeout_s=cfg.startup_timeout_s,
        device=cfg.device,
    ).write(paths.spec)
    if not ctx.resume and paths.metrics.exists():  # a fresh start (also when --resume found no checkpoint)
        paths.metrics.unlink()
    command = launch_command(ctx)
    tracker.log_params({**{f"openrlhf.{k}": v for k, v in cfg.to_dict().items()}, "algo": job.algo,
                        "seed": job.seed, "estimator": job.estimator, "launch_command": shell_command(command)})
    tail = _MetricsTail(paths.metrics)
    with paths.log.open("a", encoding="utf-8") as log:
        log.write(f"$ {shell_command(command)}\n")
        log.flush()
        log_start = log.tell()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        code = _wait(process, tail, tracker)
    if code != 0:
        reason = find_error_line(paths.log, log_start)
        said = f"{reason} (launch exit {code}; log {paths.log})" if reason else (
            f"the OpenRLHF launch exited with {code}; see {paths.log}")
        raise RuntimeError(f"{job.algo} seed {job.seed}: {said}")
    if not paths.predictions.is_file():
        raise RuntimeError(
            f"{job.algo} seed {job.seed}: the trainer wrote no predictions ({paths.predictions}); see {paths.log}"
        )
    tracker.log_artifact(paths.predictions)
    tracker.log_artifact(paths.spec)
    rows = rows_from_predictions(job, paths.predictions)
    timings = {**tail.seconds, "steps": float(tail.last_step)}
    validation = {job.algo: paths.validation_predictions} if paths.validation_predictions.is_file() else {}
    return JobResult(job=job, rows=rows, predictions={job.algo: paths.predictions},
                     wall_s=time.perf_counter() - start, timings=timings, validation=validation)
