"""Per-prompt-group statistics and masked whitening: the shared building blocks of the estimators.

One vectorized helper (:func:`group_stats`) computes group counts, means and unbiased standard
deviations with scatter-adds over ``group_ids``; GRPO, RLOO, REINFORCE++-baseline and DRPO all
use it, so there is exactly one implementation of "the statistics of my prompt group".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Added to the group standard deviation before dividing (GRPO, DRPO).
EPS = 1e-6
#: Added to the variance inside masked whitening.
WHITEN_EPS = 1e-8


@dataclass(frozen=True)
class GroupStats:
    """Statistics of ``values`` per prompt group.

    Attributes:
        ids: ``[G]`` the distinct group ids, ascending.
        index: ``[B]`` dense group index of every rollout (``ids[index] == group_ids``).
        counts: ``[G]`` rollouts per group (n_q).
        mean: ``[G]`` mean_q = sum_{i in q} x_i / n_q.
        std: ``[G]`` unbiased std_q = sqrt(sum_{i in q} (x_i - mean_q)^2 / (n_q - 1)); 0 where n_q < 2.
        sum: ``[G]`` sum_{i in q} x_i.
    """

    ids: Tensor
    index: Tensor
    counts: Tensor
    mean: Tensor
    std: Tensor
    sum: Tensor


def group_stats(values: Tensor, group_ids: Tensor, *, groups: tuple[Tensor, Tensor, Tensor] | None = None) -> GroupStats:
    """Group counts, sums, means and unbiased standard deviations of ``values`` ``[B]``.

    Computed in float64 with two scatter-add passes (sum, then centred sum of squares), so
    groups with identical values get a standard deviation of exactly 0. ``groups`` is
    ``(ids, index, counts)`` of ``group_ids`` when already known (``AdvantageInputs.groups``).
    """
    if groups is None:
        groups = torch.unique(group_ids, return_inverse=True, return_counts=True)
    ids, index, counts = groups
    g = ids.shape[0]
    x = values.to(torch.float64)
    sums = torch.zeros(g, dtype=torch.float64).index_add_(0, index, x)
    mean = sums / counts.clamp(min=1)
    centred = x - mean[index]
    sq = torch.zeros(g, dtype=torch.float64).index_add_(0, index, centred * centred)
    var = sq / (counts - 1).clamp(min=1)
    return GroupStats(ids=ids, index=index, counts=counts, mean=mean, std=var.sqrt(), sum=sums)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = WHITEN_EPS) -> Tensor:
    """``(x - m) / sqrt(v + eps) * mask`` with m, v the mean and unbiased variance over masked tokens.

    ``x`` and ``mask`` are ``[B, T]``; values off the mask never influence the result. With one
    masked token or none the variance is taken as 0.
    """
    on = mask != 0
    xm = torch.where(on, x, torch.zeros((), dtype=x.dtype))
    n = on.sum()
    mean = xm.sum() / n.clamp(min=1)
    centred = torch.where(on, xm - mean, torch.zeros((), dtype=x.dtype))
    var = (centred * centred).sum() / (n - 1).clamp(min=1)
    return centred * torch.rsqrt(var + eps)


def broadcast_to_tokens(per_rollout: Tensor, mask: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``[B]`` -> ``[B, T]``: the rollout's value on each of its response tokens, 0 elsewhere
    (written into ``out`` if given)."""
    return torch.mul(per_rollout.to(mask.dtype)[:, None], mask, out=out)


def last_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """``[B, T]`` with ``rewards[i]`` on the last response token of rollout ``i`` and 0 elsewhere."""
    t = mask.shape[1]
    positions = torch.arange(1, t + 1, dtype=mask.dtype, device=mask.device)
    last = (mask * positions).argmax(dim=1)
    out = torch.zeros_like(mask)
    out[torch.arange(mask.shape[0], device=mask.device), last] = rewards.to(mask.dtype)
    return out * mask
