"""GRPO (Shao et al. 2024, arXiv 2402.03300) and Dr. GRPO (Liu et al. 2025, arXiv 2503.20783).

A_i = (R_i - mean_q) / (std_q + eps), std unbiased, broadcast to every response token;
``std_norm=false`` drops the division (Dr. GRPO): A_i = R_i - mean_q.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import EPS, GroupStats, broadcast_to_tokens, group_stats


def grpo_scores(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    std_norm: bool = True,
    eps: float = EPS,
    groups: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, GroupStats]:
    """Per-rollout GRPO advantage ``[B]`` (float64) and the group statistics it used.

    Groups whose rewards are all equal get 0 (their std is exactly 0, so 0 / eps).
    """
    stats = group_stats(rewards, group_ids, groups=groups)
    centred = rewards.to(stats.mean.dtype) - stats.mean[stats.index]
    if std_norm:
        centred = centred / (stats.std[stats.index] + eps)
    return centred, stats


@register_estimator("grpo")
class GRPO(Estimator):
    """Group-relative advantage: each rollout against the mean (and std) of its prompt group."""

    @dataclass(frozen=True)
    class Config:
        std_norm: bool = True
        """Divide by the group's unbiased std + eps (false gives Dr. GRPO: R_i - mean_q)."""
        eps: float = EPS
        """Added to the group std before dividing."""

        def __post_init__(self) -> None:
            if not self.eps > 0:
                raise ValueError(f"eps must be > 0, got {self.eps}")

    description = "GRPO: (R - group mean) / (group std + eps) on every response token; std_norm=false gives Dr. GRPO"
    min_group_size = 2

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        scores, stats = grpo_scores(
            inputs.rewards, inputs.group_ids, std_norm=self.config.std_norm, eps=self.config.eps, groups=inputs.groups
        )
        adv = broadcast_to_tokens(scores, inputs.mask)
        zero_std = float((stats.std == 0).double().mean()) if stats.std.numel() else 0.0
        return AdvantageOutput(advantages=adv, returns=adv, diagnostics={"grpo/zero_std_frac": zero_std})
