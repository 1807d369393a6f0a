"""Our config -> OpenRLHF 0.11.2 ``train_ppo_ray`` flags, as one table (:data:`FLAG_RULES`).

The table is the single source of the mapping: :func:`openrlhf_flags` builds the argument list
from it and :func:`flag_table_markdown` renders it for the README. The flag names are those of
``openrlhf/cli/train_ppo_ray.py`` in 0.11.2 (dotted since 0.10.2).

OpenRLHF's ``--algo.advantage.estimator`` only decides here whether a critic is built (``gae``
for estimators that require ``values``, else ``reinforce``): the advantage step itself is
replaced by the registry estimator named in the run spec.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench_med.runners.base import VALIDATION, Job, predictions_dir
from rlbench_med.runners.openrlhf.config import OpenRLHFConfig

#: The module run as the Ray driver; it starts OpenRLHF's ``train_ppo_ray`` with our trainer.
LAUNCH_MODULE = "rlbench_med.runners.openrlhf.launch"
#: Our own flag on the launch command line (removed before OpenRLHF parses the rest).
SPEC_FLAG = "--rlbench.spec"


@dataclass(frozen=True)
class LaunchPaths:
    """Every file of one job under ``<out>/openrlhf/<slug>/`` (predictions go to ``<out>/predictions``)."""

    run_dir: Path
    train_prompts: Path
    eval_prompts: Path
    validation_prompts: Path
    spec: Path
    ckpt: Path
    model_out: Path
    log: Path
    metrics: Path
    predictions: Path
    validation_predictions: Path

    @classmethod
    def for_job(cls, job: Job) -> LaunchPaths:
        out = Path(job.out_dir).resolve()
        run_dir = out / "openrlhf" / job.slug
        return cls(
            run_dir=run_dir,
            train_prompts=run_dir / "prompts" / "train.jsonl",
            eval_prompts=run_dir / "prompts" / "test.jsonl",
            validation_prompts=run_dir / "prompts" / "validation.jsonl",
            spec=run_dir / "run_spec.json",
            ckpt=run_dir / "ckpt",
            model_out=run_dir / "model",
            log=run_dir / "launch.log",
            metrics=run_dir / "metrics.jsonl",
            predictions=predictions_dir(out) / f"{job.slug}.jsonl",
            validation_predictions=predictions_dir(out, VALIDATION) / f"{job.slug}.jsonl",
        )


@dataclass(frozen=True)
class LaunchContext:
    """What the flags are computed from: the config, the job's seed, the estimator's needs, the files."""

    config: OpenRLHFConfig
    seed: int
    critic: bool
    vlm: bool
    paths: LaunchPaths
    resume: bool = False


@dataclass(frozen=True)
class FlagRule:
    """One OpenRLHF flag: where its value comes from (for the docs) and how it is computed.

    ``value`` returns None or False to leave the flag out, True for a bare switch, a tuple for a
    multi-value flag, anything else for ``flag value``.
    """

    flag: str
    source: str
    value: Callable[[LaunchContext], Any]


def _model(ctx: LaunchContext) -> str:
    return ctx.config.model or "<model: set with --set model=/path/to/model>"


FLAG_RULES: tuple[FlagRule, ...] = (
    # -- models and data
    FlagRule("--actor.model_name_or_path", "model", _model),
    FlagRule("--critic.model_name_or_path", "model, when the estimator requires values (ppo)",
             lambda c: _model(c) if c.critic else None),
    FlagRule("--data.prompt_dataset", "exported train split (prompts/train.jsonl)", lambda c: str(c.paths.train_prompts)),
    FlagRule("--data.input_key", "'input' (the exported chat)", lambda c: "input"),
    FlagRule("--data.label_key", "'label' (the exported label JSON)", lambda c: "label"),
    FlagRule("--data.apply_chat_template", "always (the export holds chat messages)", lambda c: True),
    FlagRule("--data.image_key", "'images', for a vision-language model", lambda c: "images" if c.vlm else None),
    FlagRule("--data.max_images_per_prompt", "max_images_per_prompt, for a vision-language model",
             lambda c: c.config.max_images_per_prompt if c.vlm else None),
    FlagRule("--actor.freeze_visual_encoder", "freeze_visual_encoder, for a vision-language model",
             lambda c: c.vlm and c.config.freeze_visual_encoder),
    FlagRule("--data.max_samples", "max_samples (when > 0)", lambda c: c.config.max_samples or None),
    FlagRule("--data.max_len", "max_len", lambda c: c.config.max_len),
    FlagRule("--reward.remote_url", "the reward module rlbench_med/runners/openrlhf/reward.py",
             lambda c: str(reward_module_path())),
    # -- rollouts
    FlagRule("--rollout.n_samples_per_prompt", "n_samples_per_prompt", lambda c: c.config.n_samples_per_prompt),
    FlagRule("--rollout.batch_size", "rollout_batch_size", lambda c: c.config.rollout_batch_size),
    FlagRule("--rollout.micro_batch_size", "micro_rollout_batch_size", lambda c: c.config.micro_rollout_batch_size),
    FlagRule("--rollout.max_new_tokens", "max_new_tokens", lambda c: c.config.max_new_tokens),
    FlagRule("--rollout.temperature", "temperature", lambda c: c.config.temperature),
    FlagRule("--rollout.top_p", "top_p", lambda c: c.config.top_p),
    # -- PPO update and KL
    FlagRule("--algo.advantage.estimator", "gae when the estimator requires values (critic), else reinforce",
             lambda c: "gae" if c.critic else "reinforce"),
    FlagRule("--train.batch_size", "train_batch_size", lambda c: c.config.train_batch_size),
    FlagRule("--train.micro_batch_size", "micro_train_batch_size", lambda c: c.config.micro_train_batch_size),
    FlagRule("--train.num_episodes", "num_episodes", lambda c: c.config.num_episodes),
    FlagRule("--train.max_epochs", "max_epochs", lambda c: c.config.max_epochs),
    FlagRule("--train.seed", "the job's seed", lambda c: c.seed),
    FlagRule("--actor.adam.lr", "lr", lambda c: c.config.lr),
    FlagRule("--critic.adam.lr", "critic_lr, when the estimator requires values",
             lambda c: c.config.critic_lr if c.critic else None),
    FlagRule("--actor.eps_clip_low_high", "clip_low clip_high", lambda c: (c.config.clip_low, c.config.clip_high)),
    FlagRule("--algo.kl.init_coef", "kl_coef (0: no reference model)", lambda c: c.config.kl_coef),
    FlagRule("--algo.kl.use_loss", "kl_mode=loss", lambda c: c.config.kl_use_loss),
    FlagRule("--algo.kl.estimator", "kl_estimator (default k3 for loss, k1 for reward)",
             lambda c: c.config.kl_estimator_name),
    # -- cluster layout
    FlagRule("--actor.num_nodes", "num_nodes", lambda c: c.config.num_nodes),
    FlagRule("--actor.num_gpus_per_node", "gpus_per_node", lambda c: c.config.gpus_per_node),
    FlagRule("--ref.num_nodes", "num_nodes", lambda c: c.config.num_nodes),
    FlagRule("--ref.num_gpus_per_node", "gpus_per_node", lambda c: c.config.gpus_per_node),
    FlagRule("--critic.num_nodes", "num_nodes, when the estimator requires values",
             lambda c: c.config.num_nodes if c.critic else None),
    FlagRule("--critic.num_gpus_per_node", "gpus_per_node, when the estimator requires values",
             lambda c: c.config.gpus_per_node if c.critic else None),
    FlagRule("--vllm.num_engines", "vllm_num_engines", lambda c: c.config.vllm_num_engines),
    FlagRule("--vllm.tensor_parallel_size", "vllm_tensor_parallel_size", lambda c: c.config.vllm_tensor_parallel_size),
    FlagRule("--vllm.gpu_memory_utilization", "vllm_gpu_memory_utilization",
             lambda c: c.config.vllm_gpu_memory_utilization),
    FlagRule("--vllm.enforce_eager", "device=cpu (no CUDA graphs; vLLM's CPU build would compile instead)",
             lambda c: c.config.device == "cpu"),
    FlagRule("--vllm.sync_backend", "'gloo' with device=cpu (weight sync without NCCL)",
             lambda c: "gloo" if c.config.device == "cpu" else None),
    FlagRule("--train.colocate_all", "colocate", lambda c: c.config.colocate),
    FlagRule("--vllm.enable_sleep", "colocate (vLLM sleeps while DeepSpeed trains)", lambda c: c.config.colocate),
    FlagRule("--ds.enable_sleep", "colocate (DeepSpeed sleeps while vLLM generates)", lambda c: c.config.colocate),
    FlagRule("--ds.zero_stage", "zero_stage", lambda c: c.config.zero_stage),
    FlagRule("--ds.param_dtype", "param_dtype", lambda c: c.config.param_dtype),
    FlagRule("--ds.attn_implementation", "attn_implementation", lambda c: c.config.attn_implementation),
    FlagRule("--actor.gradient_checkpointing_enable", "gradient_checkpointing", lambda c: c.config.gradient_checkpointing),
    # -- checkpoints and logs
    FlagRule("--ckpt.path", "<out>/openrlhf/<slug>/ckpt", lambda c: str(c.paths.ckpt)),
    FlagRule("--ckpt.output_dir", "<out>/openrlhf/<slug>/model (the final policy)", lambda c: str(c.paths.model_out)),
    FlagRule("--ckpt.save_steps", "checkpoint_every (0: -1, never)", lambda c: c.config.checkpoint_every or -1),
    FlagRule("--ckpt.save_hf", "save_hf", lambda c: c.config.save_hf),
    FlagRule("--ckpt.load_enable", "--resume", lambda c: c.resume),
    FlagRule("--logger.logging_steps", "1 (metrics go to MLflow through the runner)", lambda c: 1),
)


def reward_module_path() -> Path:
    """Absolute path of the reward module handed to ``--reward.remote_url``."""
    return Path(__file__).resolve().with_name("reward.py")


def owned_flag_sources() -> dict[str, str]:
    """``{flag: the setting it comes from}`` of every flag the table sets; ``openrlhf_args`` may not repeat them."""
    return {rule.flag: rule.source for rule in FLAG_RULES}


def openrlhf_flags(ctx: LaunchContext) -> list[str]:
    """The OpenRLHF argument list of one job: the table, then ``openrlhf_args`` verbatim."""
    argv: list[str] = []
    for rule in FLAG_RULES:
        value = rule.value(ctx)
        if value is None or value is False:
            continue
        if value is True:
            argv.append(rule.flag)
        elif isinstance(value, tuple):
            argv.extend([rule.flag, *(_text(v) for v in value)])
        else:
            argv.extend([rule.flag, _text(value)])
    argv.extend(ctx.config.openrlhf_args)
    return argv


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def launch_command(ctx: LaunchContext, python: str | None = None) -> list[str]:
    """``python -m rlbench_med.runners.openrlhf.launch --rlbench.spec FILE <OpenRLHF flags>``."""
    return [python or sys.executable, "-m", LAUNCH_MODULE, SPEC_FLAG, str(ctx.paths.spec), *openrlhf_flags(ctx)]


def shell_command(argv: list[str]) -> str:
    """The command as one shell-quoted line."""
    return shlex.join(argv)


def flag_table_markdown() -> str:
    """The mapping as a Markdown table (the README's "what each flag maps to")."""
    lines = ["| OpenRLHF flag | set from |", "| --- | --- |"]
    lines += [f"| `{rule.flag}` | {rule.source} |" for rule in FLAG_RULES]
    return "\n".join(lines)
