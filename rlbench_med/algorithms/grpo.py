"""GRPO (Shao et al. 2024, arXiv 2402.03300) and Dr. GRPO (Liu et al. 2025, arXiv 2503.20783).

A_i = (R_i - mean_q) / (std_q + eps * M_q), std unbiased, M_q = max_{j in q} |R_j|, broadcast to
every response token; ``std_norm=false`` drops the division (Dr. GRPO): A_i = R_i - mean_q.

Scale: computed in float64. GRPO is invariant to the reward scale: rewards c * R (c > 0) give
the same advantages for every finite float32 R, since eps is relative to the group's magnitude
M_q (the published eps is absolute, so there A shrinks for rewards below about 1e-6 and groups
of near-equal rewards amplify their rounding). Dr. GRPO scales with c; values beyond the output
dtype's range (possible only for a group spanning more than float32's max) end at +-max.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import EPS, GroupStats, broadcast_to_tokens, group_stats, normalise


def grpo_scores(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    std_norm: bool = True,
    eps: float = EPS,
    groups: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, GroupStats]:
    """Per-rollout GRPO advantage ``[B]`` (float64) and the group statistics it used.

    Groups whose rewards are all equal get 0 (their std is exactly 0, so 0 / (eps * M_q), or
    0 / 0 taken as 0 when the rewards are all 0).
    """
    stats = group_stats(rewards, group_ids, groups=groups)
    centred = rewards.to(stats.mean.dtype) - stats.mean[stats.index]
    if std_norm:
        centred = normalise(centred, stats.std[stats.index], stats.abs_max[stats.index], eps)
    return centred, stats


@register_estimator("grpo")
class GRPO(Estimator):
    """Group-relative advantage: each rollout against the mean (and std) of its prompt group."""

    @dataclass(frozen=True)
    class Config:
        std_norm: bool = True
        """Divide by the group's unbiased std + eps (false gives Dr. GRPO: R_i - mean_q)."""
        eps: float = EPS
        """Relative floor of the group std: divide by std_q + eps * max_{j in q} |R_j|."""

        def __post_init__(self) -> None:
            if not self.eps > 0:
                raise ValueError(f"eps must be > 0, got {self.eps}")

    description = "GRPO: (R - group mean) / (group std + relative eps) on every response token; std_norm=false gives Dr. GRPO"
    min_group_size = 2

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        scores, stats = grpo_scores(
            inputs.rewards, inputs.group_ids, std_norm=self.config.std_norm, eps=self.config.eps, groups=inputs.groups
        )
        adv = broadcast_to_tokens(scores, inputs.mask)
        zero_std = float((stats.std == 0).double().mean()) if stats.std.numel() else 0.0
        return AdvantageOutput(advantages=adv, returns=adv, diagnostics={"grpo/zero_std_frac": zero_std})
