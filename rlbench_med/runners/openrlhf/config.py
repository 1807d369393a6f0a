"""Every knob of the OpenRLHF runner, in one frozen dataclass (``--set key=value`` targets its fields).

Field names follow the local runner where the meaning is the same (``lr``, ``clip_low``,
``clip_high``, ``kl_coef``, ``temperature``, ``eval_every``, ``checkpoint_every``; the reward and
grouping knobs are the shared :class:`~rlbench_med.runners.config.RewardSettings`), so a sweep's
overrides read the same on both runners.
Which OpenRLHF flag each field becomes is the table in :mod:`rlbench_med.runners.openrlhf.flags`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlbench_med.runners.config import RewardSettings
from rlbench_med.typed_config import ConfigError, check_fields, knob, to_plain_dict




@dataclass(frozen=True)
class OpenRLHFConfig(RewardSettings):
    """Configuration of the OpenRLHF runner: model, rollouts, PPO update, KL, cluster layout."""

    # -- model ----------------------------------------------------------------------------------
    model: str = knob(
        "", "local directory (or hub id, where the cluster has internet) of the policy, e.g. a Qwen2.5-VL checkpoint"
    )
    vlm: bool | None = knob(
        None, "whether the model sees images; None: detect from the model's config.json (a vision_config entry)"
    )
    freeze_visual_encoder: bool = knob(True, "train the language model only; the vision tower stays frozen")
    max_images_per_prompt: int = knob(
        1, "most images of one prompt, video frames included (vLLM reserves room for them); export checks it"
    )
    video_frames: int = knob(
        2, "frames sampled evenly from each video of a record (first and last included; the QoQ-Med release's 2), "
        "given to a vision-language model as images"
    )
    system_prompt: str = knob(
        "", "system message put before every prompt (empty: none; the answer format is in the user turn)"
    )
    # -- rollouts -------------------------------------------------------------------------------
    n_samples_per_prompt: int = knob(8, "rollouts sampled per prompt (the group size of GRPO/RLOO/DRPO)")
    rollout_batch_size: int = knob(64, "prompts per RL step (OpenRLHF's rollout batch)")
    micro_rollout_batch_size: int = knob(8, "rollouts per GPU in one forward pass while making experience")
    temperature: float = knob(
        1.0, "sampling temperature of training rollouts; OpenRLHF also divides the actor's and reference's logits "
        "by it, so the trained log probs are those of the policy that sampled (evaluation and ReMax are greedy)"
    )
    top_p: float = knob(1.0, "nucleus sampling of training rollouts")
    max_new_tokens: int = knob(1024, "generation limit per rollout")
    max_len: int = knob(4096, "limit of prompt + response tokens")
    max_samples: int = knob(0, "cap on training prompts taken from the export (0: all)")
    # -- PPO update -----------------------------------------------------------------------------
    train_batch_size: int = knob(128, "rollouts per optimizer step, over all GPUs")
    micro_train_batch_size: int = knob(2, "rollouts per GPU per forward/backward pass")
    num_episodes: int = knob(1, "passes over the training prompts")
    max_epochs: int = knob(1, "PPO epochs over each step's rollouts")
    lr: float = knob(1e-6, "AdamW learning rate of the actor")
    critic_lr: float = knob(9e-6, "AdamW learning rate of the critic (estimators that require values)")
    clip_low: float = knob(0.2, "PPO ratio clip below 1 (ratio >= 1 - clip_low)")
    clip_high: float = knob(0.28, "PPO ratio clip above 1 (ratio <= 1 + clip_high; clip-higher)")
    kl_coef: float = knob(1e-3, "coefficient of the KL to the reference policy (0: no reference model)")
    kl_mode: Literal["loss", "reward"] = knob(
        "loss", "'loss': kl_coef * KL added to the actor loss; 'reward': kl_coef * KL subtracted from the reward"
    )
    kl_estimator: Literal["k1", "k2", "k3"] | None = knob(
        None, "Schulman's KL estimator; None: k3 with kl_mode=loss, k1 with kl_mode=reward (OpenRLHF's advice)"
    )
    # -- cluster layout -------------------------------------------------------------------------
    device: Literal["cuda", "cpu"] = knob(
        "cuda", "'cpu' runs the same OpenRLHF pipeline without GPUs (vLLM's CPU build, DeepSpeed's CPU accelerator, "
        "Ray with logical GPUs): tiny models, tests and CI; needs colocate=false"
    )
    num_nodes: int = knob(1, "nodes for the actor (and the reference and critic models)")
    gpus_per_node: int = knob(8, "GPUs per node for the actor (and the reference and critic models)")
    vllm_num_engines: int = knob(8, "vLLM rollout engines (with colocate: engines x tensor parallel = all GPUs)")
    vllm_tensor_parallel_size: int = knob(1, "GPUs per vLLM engine")
    vllm_gpu_memory_utilization: float = knob(0.5, "share of GPU memory vLLM may take (lower it when colocated)")
    colocate: bool = knob(True, "actor, reference and vLLM share the GPUs and sleep in turn (one GPU pool)")
    zero_stage: int = knob(3, "DeepSpeed ZeRO stage of the actor/critic (2 or 3)")
    param_dtype: Literal["bf16", "fp16"] = knob("bf16", "training dtype")
    attn_implementation: str = knob("flash_attention_2", "attention kernel of the actor ('eager' without flash-attn)")
    gradient_checkpointing: bool = knob(True, "recompute activations in backward (less memory, ~30% slower)")
    ray_address: str = knob(
        "", "Ray cluster to join: '' starts a local Ray, 'auto' joins the cluster of this node, or 'host:port'"
    )
    startup_timeout_s: float = knob(
        1800.0, "seconds the launch waits for GPUs to be reserved, actors to start and models to load before it "
        "fails naming what it waited for (0: no limit); training itself is not limited"
    )
    # -- evaluation / bookkeeping ---------------------------------------------------------------
    eval_every: int = knob(0, "greedy evaluation on the test split every N steps (0: only at the end)")
    eval_max_samples: int = knob(0, "cap on held-out samples per evaluation (0: all)")
    checkpoint_every: int = knob(50, "save a resumable checkpoint every N steps (0: never)")
    save_hf: bool = knob(False, "also write a Hugging Face copy of the policy with every checkpoint")
    time_series: Literal["refuse", "drop"] = knob(
        "refuse", "samples with ECG signals: 'refuse' to run, or 'drop' the signals (OpenRLHF feeds text and images)"
    )
    openrlhf_args: tuple[str, ...] = knob(
        (), "extra OpenRLHF flags appended verbatim, ';'-separated (e.g. --ds.adam_offload;--ds.zpg=2)"
    )

    def __post_init__(self) -> None:
        check_fields(self)  # finite floats, 64-bit ints, Literal choices: before the range checks below
        positive = (
            "n_samples_per_prompt", "rollout_batch_size", "micro_rollout_batch_size", "max_new_tokens", "max_len",
            "train_batch_size", "micro_train_batch_size", "num_episodes", "max_epochs", "num_nodes",
            "gpus_per_node", "vllm_num_engines", "vllm_tensor_parallel_size", "video_frames",
        )
        for name in positive:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        non_negative = ("max_images_per_prompt", "max_samples", "eval_every", "eval_max_samples", "checkpoint_every",
                        "kl_coef", "startup_timeout_s")
        for name in non_negative:
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        for name in ("lr", "critic_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.clip_low < 1:
            raise ConfigError(f"clip_low must be in [0, 1) (ratio >= 1 - clip_low), got {self.clip_low}")
        if self.clip_high < 0:
            raise ConfigError(f"clip_high must be >= 0, got {self.clip_high}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ConfigError(f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.max_new_tokens >= self.max_len:
            raise ConfigError(
                f"max_new_tokens ({self.max_new_tokens}) must be below max_len ({self.max_len}), "
                "which also holds the prompt; raise max_len or lower max_new_tokens"
            )
        if self.train_batch_size % self.micro_train_batch_size:
            raise ConfigError(
                f"train_batch_size ({self.train_batch_size}) must be a multiple of micro_train_batch_size "
                f"({self.micro_train_batch_size})"
            )
        rollouts = self.rollout_batch_size * self.n_samples_per_prompt
        if rollouts % self.train_batch_size:
            raise ConfigError(
                f"rollout_batch_size x n_samples_per_prompt ({rollouts}) must be a multiple of train_batch_size "
                f"({self.train_batch_size}) so every step's rollouts fill whole optimizer steps"
            )
        if self.device == "cpu" and self.colocate:
            raise ConfigError(
                "device=cpu: vLLM's CPU build has no sleep mode, so the actors and vLLM cannot take turns on shared "
                "devices; set colocate=false"
            )
        gpus = self.num_nodes * self.gpus_per_node
        if self.colocate and self.vllm_num_engines * self.vllm_tensor_parallel_size != gpus:
            raise ConfigError(
                f"colocate=true shares one GPU pool: vllm_num_engines x vllm_tensor_parallel_size "
                f"({self.vllm_num_engines} x {self.vllm_tensor_parallel_size}) must equal num_nodes x gpus_per_node "
                f"({self.num_nodes} x {self.gpus_per_node}); adjust vllm_num_engines or set colocate=false"
            )
        if rollouts // self.micro_rollout_batch_size < gpus:
            raise ConfigError(
                f"rollout_batch_size x n_samples_per_prompt / micro_rollout_batch_size "
                f"({rollouts} / {self.micro_rollout_batch_size}) must be >= the actor's GPUs ({gpus}); "
                "raise rollout_batch_size or lower micro_rollout_batch_size"
            )
        self.check_reward()
        for item in self.openrlhf_args:
            if not item.startswith("--"):
                raise ConfigError(f"openrlhf_args: {item!r} is not a flag; give flags like --ds.adam_offload or --ds.zpg=2")
        if self.model and self.model.startswith("hf:"):
            raise ConfigError(f"model: give the directory itself, without the local runner's 'hf:' prefix ({self.model!r})")

    @property
    def kl_estimator_name(self) -> str:
        """The KL estimator in use (``kl_estimator`` or the default of ``kl_mode``)."""
        if self.kl_estimator is not None:
            return self.kl_estimator
        return "k3" if self.kl_mode == "loss" else "k1"

    @property
    def kl_use_loss(self) -> bool:
        """OpenRLHF's ``--algo.kl.use_loss``: the KL is a loss term (else it shapes the reward)."""
        return self.kl_mode == "loss"

    def detect_vlm(self) -> bool | None:
        """``vlm`` when set; else whether ``<model>/config.json`` has a ``vision_config`` (None: unknown).

        Reads the file directly (no ``transformers`` download); a hub id or a missing model gives None.
        """
        if self.vlm is not None:
            return self.vlm
        if not self.model:
            return None
        config_file = Path(self.model).expanduser() / "config.json"
        if not config_file.is_file():
            return None
        try:
            data = json.loads(config_file.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"model: cannot read {config_file}: {exc}") from exc
        return isinstance(data, dict) and "vision_config" in data

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` (tuples as lists), for trackers and the run spec."""
        return to_plain_dict(self)

