"""The RL updates' optimizer: AdamW with the config's betas, and its learning-rate schedule.

The schedule is a pure function of the optimizer update's index, so a resumed job continues on
the same curve. ``lr_schedule=cosine`` is OpenRLHF's ``cosine_with_min_lr`` (transformers'
``get_cosine_with_min_lr_schedule_with_warmup``): over ``U`` updates with ``W = ceil(warmup_ratio
x U)`` warmup updates, update ``u`` (0-based) runs at

- ``lr x u / max(1, W)`` while ``u < W`` (the first update of a warmup runs at lr 0, as in OpenRLHF);
- then ``lr x (m + (1 - m) x (1 + cos(pi x (u - W) / max(1, U - W))) / 2)``, ``m = min_lr_ratio``.

``lr_schedule=constant`` keeps ``lr`` after the same warmup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from rlbench_med.runners.config import LocalConfig


def make_optimizer(groups: Iterable[dict[str, Any]] | Iterable[torch.nn.Parameter], lr: float,
                   cfg: LocalConfig) -> torch.optim.AdamW:
    """AdamW over ``groups`` at ``lr`` with the config's betas and weight decay; each group keeps its
    own starting learning rate as ``base_lr`` for :func:`set_learning_rate`."""
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def lr_factor(update: int, total: int, cfg: LocalConfig) -> float:
    """The learning rate of update ``update`` (0-based) of ``total``, as a fraction of lr (module docstring)."""
    warmup = math.ceil(cfg.warmup_ratio * total)
    if update < warmup:
        return update / max(1, warmup)
    if cfg.lr_schedule == "constant":
        return 1.0
    progress = (update - warmup) / max(1, total - warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group at its ``base_lr`` times ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
