"""RLOO, REINFORCE leave-one-out (Ahmadian et al. 2024, arXiv 2402.14740).

A_i = R_i - (sum_{j in q, j != i} R_j) / (n_q - 1) = n_q / (n_q - 1) * (R_i - mean_q),
broadcast to every response token.

Scale: computed in float64, so rewards c * R (c > 0) give c times the advantages for every
finite float32 R (exact up to the output's rounding); values beyond the output dtype's range
(possible only for a group spanning more than float32's max) end at +-max.
"""

from __future__ import annotations

from torch import Tensor

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import broadcast_to_tokens, group_stats


def rloo_scores(rewards: Tensor, group_ids: Tensor, *, groups: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Per-rollout leave-one-out advantage ``[B]`` (float64); needs every group to have >= 2 rollouts."""
    stats = group_stats(rewards, group_ids, groups=groups)
    n = stats.counts[stats.index].to(stats.sum.dtype)
    x = rewards.to(stats.sum.dtype)
    return x - (stats.sum[stats.index] - x) / (n - 1).clamp(min=1)


@register_estimator("rloo")
class RLOO(Estimator):
    """Each rollout against the mean reward of the other rollouts of its prompt."""

    description = "RLOO: R - mean of the other rollouts of the same prompt, on every response token"
    min_group_size = 2

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        adv = broadcast_to_tokens(rloo_scores(inputs.rewards, inputs.group_ids, groups=inputs.groups), inputs.mask)
        return AdvantageOutput(advantages=adv, returns=adv)
