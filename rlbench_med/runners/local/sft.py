"""Supervised fine-tuning: the shared base policy (warm start) and the ``sft`` baseline's steps.

The base is trained on a labelled fraction (``sft_fraction``) of the training split for
``sft_steps`` steps from ``base_seed``; it plays the part of the pretrained VLM, so it is built
once per (data, base config) and cached under ``cache_dir()/base/<hash>/base.pt``, shared by every
algorithm and seed of a sweep; a cached base that does not load is named and trained again. The ``sft`` algorithm continues from the base for ``steps`` steps
of ``prompts_per_step`` labelled samples drawn from the whole training split (the prompt budget of
an RL run), with the RL runs' learning rate ``lr``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlbench_med.runners.base import cache_dir
from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.checkpoint import UnreadableFile, read_torch_file
from rlbench_med.runners.local.inputs import EncodedSplit
from rlbench_med.runners.local.policy import sft_loss

log = logging.getLogger(__name__)
#: Bump when the base's training recipe changes, so old cached bases are not reused.
BASE_FORMAT = 2
#: Config fields that do not change the base (RL, evaluation and bookkeeping knobs).
_NOT_BASE = {
    "steps", "prompts_per_step", "n_rollouts", "temperature", "lr", "encoder_lr_scale", "adam_beta1", "adam_beta2",
    "lr_schedule", "warmup_ratio", "min_lr_ratio", "clip_low", "clip_high", "kl_coef", "kl_mode",
    "epochs", "minibatches", "vf_coef", "critic_lr", "group_by", "reward", "reward_weights", "iou_reduce",
    "accuracy_reward",
    "eval_every", "eval_max_samples", "eval_inputs", "checkpoint_every", "progress", "cpu_threads", "max_new_tokens",
    "save_final",
}


def data_fingerprint(root: Path) -> str:
    """sha256 of the split files and the suite's record selection (the media are named by the files)."""
    from rlbench_med.suites.data import DataSource

    return DataSource.open(root).fingerprint()


def base_key(root: Path, config: LocalConfig, modality_dropout: float, device: str) -> str:
    """Hash of everything the base depends on: data, base-relevant config, dropout, device type."""
    relevant = {k: v for k, v in config.to_dict().items() if k not in _NOT_BASE}
    relevant["modality_dropout"] = modality_dropout
    if config.hf_path is not None:
        files = sorted(p for p in Path(config.hf_path).iterdir() if p.is_file())
        relevant["hf_files"] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    blob = json.dumps({"format": BASE_FORMAT, "data": data_fingerprint(root), "config": relevant,
                       "device": device}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_path(key: str) -> Path:
    return cache_dir() / "base" / key / "base.pt"


def draw_drop(n: int, p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Which prompts lose their image / signal this step (``None`` when ``p`` is 0)."""
    if p <= 0:
        return None
    return torch.rand(n, generator=generator) < p, torch.rand(n, generator=generator) < p


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor, grad_clip: float) -> float:
    """Backpropagate ``loss`` and step ``optimizer``: the gradient norm of its parameters clipped to
    ``grad_clip`` when it is > 0.

    Returns the global gradient norm before clipping (computed only when clipping is on; else NaN).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = float("nan")
    if grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    optimizer.step()
    return norm


def sft_update(
    agent: Any, model: nn.Module, optimizer: torch.optim.Optimizer, split: EncodedSplit, idx: torch.Tensor,
    drop_p: float, generator: torch.Generator, grad_clip: float,
) -> float:
    """One supervised step on the samples ``idx``: token-mean NLL of the labelled answers."""
    drop = draw_drop(len(idx), drop_p, generator)
    ro, loss_mask = agent.teacher(split, idx, drop, generator)
    loss = sft_loss(agent.logprobs(model, ro), loss_mask)
    optimizer_step(optimizer, loss, grad_clip)
    return float(loss.detach())


def train_base(agent: Any, config: LocalConfig, split: EncodedSplit, drop_p: float,
               on_step: Callable[[int], None] | None = None) -> tuple[dict[str, Any], float]:
    """Build the base: random init from ``base_seed``, SFT on the labelled fraction. Returns (state, seconds).

    ``on_step(k)`` is called after the k-th SFT step (progress)."""
    start = time.perf_counter()
    torch.manual_seed(config.base_seed)
    generator = torch.Generator().manual_seed(config.base_seed)
    model = agent.new_model()
    n_labelled = max(1, math.ceil(config.sft_fraction * len(split)))
    labelled = torch.randperm(len(split), generator=generator)[:n_labelled]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.sft_lr, weight_decay=config.weight_decay)
    model.train()
    for step in range(config.sft_steps):
        pick = labelled[torch.randint(n_labelled, (config.sft_batch_size,), generator=generator)]
        sft_update(agent, model, optimizer, split, pick, drop_p, generator, config.grad_clip)
        if on_step is not None:
            on_step(step + 1)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return state, time.perf_counter() - start


def load_or_train_base(
    agent: Any, config: LocalConfig, root: Path, split: EncodedSplit, drop_p: float, device: str,
    on_step: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], Path, bool]:
    """The cached base state (trained and saved first if missing, ``on_step`` after each SFT step). Returns
    (state, path, was_cached)."""
    path = base_path(base_key(root, config, drop_p, device))
    if path.exists():
        try:
            return read_torch_file(path)["model"], path, True
        except UnreadableFile as exc:
            log.warning("cached SFT base %s; training it again", exc)
    state, seconds = train_base(agent, config, split, drop_p, on_step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".base.{os.getpid()}.tmp")
    torch.save({"model": state, "train_s": seconds, "config": config.to_dict()}, tmp)
    os.replace(tmp, path)
    return state, path, False
