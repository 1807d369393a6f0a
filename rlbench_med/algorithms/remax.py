"""ReMax (Li et al. 2023, arXiv 2310.10505): the greedy rollout's reward as the baseline.

A_i = R_i - b_i, b_i = reward of a greedy (argmax) rollout of the same prompt, broadcast to
every response token; no normalization. The runner supplies ``baseline_rewards``.

Scale: computed in float64, so rewards and baselines c * (R, b) (c > 0) give c times the
advantages for every finite float32 input; values beyond the output dtype's range end at +-max.
"""

from __future__ import annotations

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import broadcast_to_tokens


@register_estimator("remax")
class ReMax(Estimator):
    """Each rollout against the reward of the greedy rollout of its prompt."""

    description = "ReMax: R - reward of the greedy rollout of the same prompt (needs baseline_rewards)"

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"baseline_rewards"})

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        assert inputs.baseline_rewards is not None  # checked by Estimator.check_inputs
        diff = inputs.rewards.double() - inputs.baseline_rewards.double()
        adv = broadcast_to_tokens(diff, inputs.mask)
        return AdvantageOutput(advantages=adv, returns=adv)
