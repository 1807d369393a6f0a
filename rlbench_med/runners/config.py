"""Every knob of the local runner, in one frozen dataclass (``--set key=value`` targets its fields).

Each field carries its help text in ``metadata["help"]`` (see :func:`rlbench_med.typed_config.describe_settings`; ``rlbench-med list settings`` prints them); invariants
are checked once in ``__post_init__`` and raise :class:`~rlbench_med.typed_config.ConfigError`
saying which field to change and how.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlbench_med.suites.rewards import reward_settings_problem
from rlbench_med.typed_config import ConfigError, check_fields, knob, to_plain_dict

#: Modalities that an ``eval_inputs`` entry may combine with ``+`` (``full`` keeps them all).
INPUT_MODALITIES = ("text", "vision", "ecg")




def check_reward_settings(reward: str, reward_weights: str, iou_reduce: str, accuracy: str = "set_f1") -> None:
    """Raise :class:`ConfigError` naming the field when the reward settings do not fit.

    ``reward`` is a reward function (``paper``, ``release``); ``reward_weights`` is ``auto`` (the
    function's own weights), ``paper`` or four numbers weighting accuracy, IoU, format and length
    (finite, >= 0, not all zero); ``iou_reduce`` and ``accuracy`` (the accuracy reward's form)
    apply to ``reward=paper`` only. The rules are :func:`~rlbench_med.suites.rewards.reward_settings_problem`.
    """
    problem = reward_settings_problem(reward, reward_weights.strip(), iou_reduce, accuracy)
    if problem is not None:
        raise ConfigError(f"{problem[0]}: {problem[1]}")


@functools.lru_cache(maxsize=32)
def local_model_dir(name: str) -> str:
    """The folder of a Hugging Face model: ``name`` itself when it is a folder, else the snapshot of the model
    id ``name`` (``Qwen/Qwen2.5-0.5B-Instruct``) in the local Hugging Face cache (``HF_HUB_CACHE``), looked up
    offline. Raises :class:`ConfigError` saying how to get it when it is neither."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    looks_like_id = name.count("/") <= 1 and not name.startswith((".", "/", "~")) and bool(name.strip("/"))
    if looks_like_id:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        try:
            return snapshot_download(name, local_files_only=True)
        except (LocalEntryNotFoundError, HFValidationError, OSError):
            pass
    if not looks_like_id:
        raise ConfigError(f"policy: hf:{name}: no such folder; give the folder of a Hugging Face model (config.json, "
                          "weights, tokenizer) or a model id from the local Hugging Face cache")
    raise ConfigError(
        f"policy: hf:{name} is neither a folder nor a model in the local Hugging Face cache; nothing is downloaded "
        f"at run time: download it once (e.g. `huggingface-cli download {name}`) or give the model's folder"
    )


def parse_eval_input(name: str) -> frozenset[str]:
    """``"full"`` -> every modality; ``"ecg+text"`` -> ``{"ecg", "text"}``; unknown parts raise."""
    text = name.strip()
    if text == "full":
        return frozenset(INPUT_MODALITIES)
    parts = frozenset(p.strip() for p in text.split("+") if p.strip())
    unknown = sorted(parts - set(INPUT_MODALITIES))
    if not parts or unknown:
        raise ConfigError(
            f"eval_inputs: {name!r} is not 'full' or a '+'-joined subset of {', '.join(INPUT_MODALITIES)} "
            f"(e.g. ecg+text)"
        )
    return parts


@dataclass(frozen=True)
class RewardSettings:
    """The knobs both runners share, with the same names, defaults and meaning: the reward, DRPO's
    grouping and how a text policy is prompted (``chat_template``).

    The runners' configs inherit them, so ``--set reward=release`` reads the same on either runner;
    :meth:`check_reward` applies :func:`check_reward_settings`.
    """

    chat_template: bool = knob(
        True, "a Hugging Face policy (hf: on the local runner, the openrlhf runner's model) gets its prompt as a "
        "user turn through the tokenizer's chat template, when the tokenizer has one; false: the raw prompt text "
        "(local runner only: OpenRLHF always applies it)"
    )

    group_by: Literal["domain", "dataset"] = knob(
        "domain", "what AdvantageInputs.domains indexes: the sample's domain or its dataset (DRPO's clusters)"
    )
    # -- rewards --------------------------------------------------------------------------------
    reward: str = knob(
        "paper", "reward function: 'paper' (the paper's components as this project defines them, weights "
        "0.6/0.2/0.1/0.1), 'release' (the QoQ-Med release's medical_compute_score, exactly) or one a --plugin "
        "registers (rlbench-med list rewards)"
    )
    reward_weights: str = knob(
        "auto", "weights of the reward's components: 'auto' (the reward's own), 'paper' (0.6,0.2,0.1,0.1) or "
        "'acc,iou,format,length' numbers"
    )
    iou_reduce: Literal["max", "mean"] = knob(
        "max", "reward=paper: how the IoU reward reduces over predicted boxes (best box, or their mean)"
    )
    accuracy_reward: Literal["set_f1", "exact"] = knob(
        "set_f1", "reward=paper: form of the accuracy reward: 'set_f1' (the paper's F1 of the label sets; hedging "
        "earns partial credit) or 'exact' (1 only for the exact label set)"
    )

    def check_reward(self) -> None:
        """Raise :class:`ConfigError` naming the field when the reward settings do not fit together."""
        check_reward_settings(self.reward, self.reward_weights, self.iou_reduce, self.accuracy_reward)


@dataclass(frozen=True)
class LocalConfig(RewardSettings):
    """Configuration of the local PyTorch runner (policy, SFT base, RL loop, evaluation)."""

    # -- RL loop --------------------------------------------------------------------------------
    steps: int = knob(150, "RL steps (policy updates) per job; the sft algorithm uses the same sample budget")
    prompts_per_step: int = knob(16, "training prompts sampled per RL step")
    n_rollouts: int = knob(8, "rollouts sampled per prompt (the group size of GRPO/RLOO/DRPO)")
    temperature: float = knob(1.0, "sampling temperature of training rollouts (evaluation is greedy)")
    lr: float = knob(1e-3, "AdamW learning rate of the RL updates and of the sft baseline's steps")
    weight_decay: float = knob(0.0, "AdamW weight decay (RL and SFT)")
    encoder_lr_scale: float = knob(
        1.0, "builtin policy, RL and the sft baseline: the modality encoders' learning rate is lr x this (0 freezes "
        "them; the transformer and the answer head keep lr)",
    )
    clip_low: float = knob(0.2, "PPO ratio clip below 1 (ratio >= 1 - clip_low)")
    clip_high: float = knob(0.3, "PPO ratio clip above 1 (ratio <= 1 + clip_high; clip-higher)")
    kl_coef: float = knob(0.01, "coefficient of the KL to the frozen base policy (0 disables it)")
    kl_mode: Literal["loss", "reward"] = knob(
        "loss", "'loss': add kl_coef * k3 KL to the loss; 'reward': subtract kl_coef * KL from the reward"
    )
    epochs: int = knob(1, "passes over each step's rollouts")
    minibatches: int = knob(1, "minibatches per epoch (each is one optimizer step)")
    grad_clip: float = knob(1.0, "max global gradient norm (0 disables clipping)")
    adam_beta1: float = knob(0.9, "AdamW beta1 of the RL and sft-baseline updates (OpenRLHF: 0.9)")
    adam_beta2: float = knob(0.999, "AdamW beta2 of the RL and sft-baseline updates (OpenRLHF: 0.95)")
    lr_schedule: Literal["constant", "cosine"] = knob(
        "constant", "learning rate over the job's optimizer updates: 'constant', or 'cosine' (OpenRLHF's "
        "cosine_with_min_lr: from lr down to min_lr_ratio x lr); both after warmup_ratio of linear warmup from 0",
    )
    warmup_ratio: float = knob(0.0, "fraction of the job's optimizer updates with linear warmup from 0 (OpenRLHF: 0.03)")
    min_lr_ratio: float = knob(0.1, "lr_schedule=cosine: the last learning rate as a fraction of lr (OpenRLHF: 0.1)")
    vf_coef: float = knob(0.5, "value-loss weight of the critic (estimators that require values)")
    critic_lr: float = knob(1e-3, "AdamW learning rate of the critic")
    # -- evaluation / bookkeeping ---------------------------------------------------------------
    eval_every: int = knob(50, "evaluate on the held-out split every N steps (0: only at the end)")
    eval_max_samples: int = knob(0, "cap on held-out samples per evaluation (0: all)")
    eval_inputs: tuple[str, ...] = knob(
        (), "input sets of the final evaluation ('full', 'text', 'ecg+text', 'vision+text'); empty: the suite's"
    )
    checkpoint_every: int = knob(50, "save a resumable checkpoint every N steps (0: never)")
    progress: bool = knob(True, "show a progress bar per run (only on a terminal)")
    device: Literal["auto", "cpu", "cuda"] = knob("auto", "'auto' uses one GPU when present, else the CPU")
    cpu_threads: int = knob(
        1, "torch CPU threads of a job; more can be faster, but multi-threaded float reductions vary from run "
        "to run, so the same seed gives bitwise the same numbers only with 1",
    )
    # -- SFT base and the sft baseline ----------------------------------------------------------
    sft_steps: int = knob(300, "supervised steps of the shared base policy (the warm start)")
    sft_fraction: float = knob(0.2, "fraction of the training split labelled for the base's SFT")
    sft_batch_size: int = knob(32, "batch size of the base's SFT")
    sft_lr: float = knob(2e-3, "AdamW learning rate of the base's SFT (the sft baseline uses lr, like RL runs)")
    base_seed: int = knob(0, "seed of the base (shared by every algorithm and seed of a sweep)")
    # -- policy ---------------------------------------------------------------------------------
    policy: str = knob(
        "builtin", "'builtin' (modality encoders + small transformer), 'hf:/local/dir' (a local HF causal LM) or "
        "'hf:org/name' (a model id already in the local Hugging Face cache; nothing is downloaded)"
    )
    backbone: Literal["qwen2", "llama"] = knob("qwen2", "transformers config family of the builtin policy")
    d_model: int = knob(64, "width of the builtin transformer")
    n_layers: int = knob(2, "layers of the builtin transformer")
    n_heads: int = knob(4, "attention heads of the builtin transformer (must divide d_model)")
    image_size: int = knob(32, "side of the square image fed to the image encoder")
    image_tokens: int = knob(4, "prefix tokens of the image encoder (a square number)")
    video_frames: int = knob(
        2, "frames sampled evenly from a record's video (first and last included; the QoQ-Med release's 2), "
        "each through the image encoder, features averaged",
    )
    signal_length: int = knob(256, "samples per lead fed to the signal encoder (resampled)")
    signal_leads: int = knob(12, "leads fed to the signal encoder (padded or cut)")
    signal_tokens: int = knob(4, "prefix tokens of the signal encoder")
    text_buckets: int = knob(2048, "hash buckets of the bag-of-words record encoder")
    text_words: int = knob(96, "words of the problem text kept by the record encoder")
    max_labels: int = knob(3, "most diagnosis labels in one answer")
    box_bins: int = knob(16, "quantisation bins per box coordinate")
    reasoning_tokens: int = knob(0, "free reasoning tokens generated before the answer (0: none)")
    reasoning_vocab: int = knob(16, "size of the reasoning-token vocabulary")
    modality_dropout: float | None = knob(
        None,
        "probability of dropping the image / the signal of a training prompt; "
        "None: 0.3 when the suite evaluates input ablations, else 0",
    )
    max_new_tokens: int = knob(48, "generation limit of an hf: policy (it also stops at any EOS of its "
                               "generation_config.json, e.g. an instruct model's end of turn)")
    save_final: bool = knob(
        True, "save the trained policy beside the job's checkpoints: checkpoints/<job>/final/ (save_pretrained, "
        "with the tokenizer) for an hf: policy, checkpoints/<job>/final.pt for the builtin one",
    )

    def __post_init__(self) -> None:
        check_fields(self)  # types, finite floats, 64-bit ints: the comparisons below never see NaN
        positive = (
            "steps", "prompts_per_step", "n_rollouts", "epochs", "minibatches", "sft_batch_size", "d_model",
            "n_layers", "n_heads", "image_size", "image_tokens", "video_frames", "signal_length", "signal_leads",
            "signal_tokens", "text_buckets", "text_words", "max_labels", "box_bins", "reasoning_vocab",
            "max_new_tokens", "cpu_threads",
        )
        for name in positive:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        non_negative = ("weight_decay", "encoder_lr_scale", "kl_coef", "grad_clip", "vf_coef", "eval_every", "eval_max_samples",
                        "checkpoint_every", "sft_steps", "reasoning_tokens")
        for name in non_negative:
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        for name in ("lr", "critic_lr", "sft_lr", "temperature"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("warmup_ratio", "min_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.clip_low < 1:
            raise ConfigError(f"clip_low must be in [0, 1) (ratio >= 1 - clip_low), got {self.clip_low}")
        if self.clip_high < 0:
            raise ConfigError(f"clip_high must be >= 0, got {self.clip_high}")
        if not 0 < self.sft_fraction <= 1:
            raise ConfigError(f"sft_fraction must be in (0, 1], got {self.sft_fraction}")
        if self.modality_dropout is not None and not 0 <= self.modality_dropout < 1:
            raise ConfigError(f"modality_dropout must be in [0, 1) or None (auto), got {self.modality_dropout}")
        if self.minibatches > self.prompts_per_step * self.n_rollouts:
            raise ConfigError(
                f"minibatches ({self.minibatches}) exceeds the rollouts per step "
                f"({self.prompts_per_step} x {self.n_rollouts}); lower minibatches"
            )
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads}) with an even head size"
            )
        side = round(self.image_tokens**0.5)
        if side * side != self.image_tokens:
            raise ConfigError(f"image_tokens must be a square number (1, 4, 9, ...), got {self.image_tokens}")
        if self.image_size < 4 * side:
            raise ConfigError(f"image_size ({self.image_size}) must be >= 4 * sqrt(image_tokens) = {4 * side}")
        if self.signal_length < 16 * self.signal_tokens:
            raise ConfigError(f"signal_length ({self.signal_length}) must be >= 16 * signal_tokens")
        self.check_reward()
        for item in self.eval_inputs:
            parse_eval_input(item)
        if len(set(self.eval_inputs)) != len(self.eval_inputs):
            raise ConfigError(f"eval_inputs lists an input set twice: {self.eval_inputs}")
        if self.policy != "builtin" and not (self.policy.startswith("hf:") and len(self.policy) > 3):
            raise ConfigError(
                f"policy must be 'builtin', 'hf:/path/to/local/model' or 'hf:<model id in the local Hugging Face "
                f"cache>', got {self.policy!r}"
            )

    @property
    def hf_path(self) -> str | None:
        """The local directory of an ``hf:`` policy (a folder, or a model id found in the local Hugging Face
        cache, :func:`local_model_dir`), else ``None``."""
        return local_model_dir(self.policy[3:]) if self.policy.startswith("hf:") else None

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` (tuples as lists), for trackers, hashes and checkpoints."""
        return to_plain_dict(self)

