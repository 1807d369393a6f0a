"""Per-prompt-group statistics, normalisation and masked whitening: the shared building blocks.

One vectorized helper (:func:`group_stats`) computes group counts, means and unbiased standard
deviations with scatter-adds over ``group_ids``; GRPO, RLOO, REINFORCE++-baseline and DRPO all
use it, so there is exactly one implementation of "the statistics of my prompt group".

Numerics, shared by every estimator: statistics are computed in float64, which holds the squares
of any float32 value (float32's max squared is about 1.2e77). Every eps is relative: a spread is
floored at eps x the largest |value| of the data it describes (std + eps x M in :func:`normalise`,
sqrt(var + eps x M^2) in :func:`masked_whiten`), so a spread at the level of the data's rounding
is not amplified, and multiplying the data by any c > 0 leaves a normalised result unchanged.
Results go back to the caller's dtype through :func:`saturate`, which clamps to its finite range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Relative floor of a standard deviation before dividing (GRPO, DRPO): std + EPS x max |x|.
EPS = 1e-6
#: Relative floor of the variance inside masked whitening: var + WHITEN_EPS x max |x|^2.
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
        abs_max: ``[G]`` max_{i in q} |x_i|, the group's magnitude (scale of its relative eps).
    """

    ids: Tensor
    index: Tensor
    counts: Tensor
    mean: Tensor
    std: Tensor
    sum: Tensor
    abs_max: Tensor


def group_stats(values: Tensor, group_ids: Tensor, *, groups: tuple[Tensor, Tensor, Tensor] | None = None) -> GroupStats:
    """Group counts, sums, means, unbiased standard deviations and largest |value| of ``values`` ``[B]``.

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
    abs_max = torch.zeros(g, dtype=torch.float64).scatter_reduce_(0, index, x.abs(), "amax")
    return GroupStats(ids=ids, index=index, counts=counts, mean=mean, std=var.sqrt(), sum=sums, abs_max=abs_max)


def normalise(x: Tensor, spread: Tensor, magnitude: Tensor, eps: float) -> Tensor:
    """``x / (spread + eps * magnitude)``, and 0 where that is 0 / 0.

    ``magnitude`` is the largest |value| of the data whose ``spread`` it is, so the denominator is
    0 only where that data is all 0 (and ``x`` is then 0 too). Arguments broadcast together.
    """
    den = spread + eps * magnitude
    return torch.where(den > 0, x / den, torch.zeros((), dtype=x.dtype))


def masked_whiten(x: Tensor, mask: Tensor, eps: float = WHITEN_EPS) -> Tensor:
    """``(x - m) / sqrt(v + eps * M^2) * mask`` over the masked tokens of ``x``, in ``x``'s dtype.

    m and v are the mean and unbiased variance and M = max |x|, all over the masked tokens and in
    float64, so any float32 ``x`` gives a finite result and scaling ``x`` by c > 0 changes nothing.
    ``x`` and ``mask`` are ``[B, T]``; values off the mask never influence the result. With one
    masked token or none the variance is taken as 0; an all-zero ``x`` gives 0.
    """
    on = mask != 0
    on_values = torch.masked_select(x, on).to(torch.float64)
    if on_values.numel() == 0:
        return torch.zeros_like(x)
    mean = on_values.mean()
    var = on_values.var() if on_values.numel() > 1 else torch.zeros((), dtype=torch.float64)
    lo, hi = torch.aminmax(on_values)
    magnitude = torch.maximum(-lo, hi)
    den = torch.sqrt(var + eps * magnitude * magnitude)
    if not bool(den > 0):  # every masked value is 0
        return torch.zeros_like(x)
    return (x.to(torch.float64) - mean).div_(den).masked_fill_(~on, 0.0).to(x.dtype)


def saturate(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` in ``dtype``, with values beyond the dtype's finite range clamped to its max.

    Unnormalised advantages of float32 rewards are exact in float64 but can exceed float32's
    range (R - mean of a group holding -3e38 and 3e38 is 3e38 - -3e38); they end at +-max, not inf.
    """
    if x.dtype == dtype:
        return x
    big = torch.finfo(dtype).max
    return x.clamp(-big, big).to(dtype)


def broadcast_to_tokens(per_rollout: Tensor, mask: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``[B]`` -> ``[B, T]``: the rollout's value on each of its response tokens, 0 elsewhere, in
    ``mask``'s dtype (saturated, see :func:`saturate`; written into ``out`` if given)."""
    return torch.mul(saturate(per_rollout, mask.dtype)[:, None], mask, out=out)


def last_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """``[B, T]`` with ``rewards[i]`` on the last response token of rollout ``i`` and 0 elsewhere
    (``mask`` is 0/1, in the dtype of the result)."""
    t = mask.shape[1]
    positions = torch.arange(1, t + 1, dtype=torch.float32, device=mask.device)  # exact up to 2^24
    # 1-based position of the last response token; a rollout without one gets -1 (the last
    # column), which the final multiplication by the mask zeroes. amax is a plain vectorized
    # reduction, several times cheaper than argmax.
    last = (mask.float() * positions).amax(dim=1).long() - 1
    out = torch.zeros_like(mask)
    out[torch.arange(mask.shape[0], device=mask.device), last] = rewards.to(mask.dtype)
    return out * mask
