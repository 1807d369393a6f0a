"""REINFORCE++ (Hu 2025, arXiv 2501.03262) and its group-baseline variant.

``reinforce_pp``: per-token return G_t = r_t + gamma * G_{t+1} over the response, where r is
``token_rewards`` when given, else the outcome reward R_i on the last response token; the
advantage is the masked whitening of G over the whole batch.
``reinforce_pp_baseline``: (R_i - mean_q) on every response token, then masked whitening.

Scale: returns are computed in float64 and whitened with a relative eps (see
:func:`~rlbench_med.algorithms.group_stats.masked_whiten`), so rewards (and token rewards)
c * R, c > 0, give the same advantages for every finite float32 input, and c times the returns;
returns beyond the output dtype's range (a sum of token rewards past float32's max) end at +-max.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import broadcast_to_tokens, last_token_rewards, masked_whiten, saturate
from rlbench_med.algorithms.grpo import grpo_scores


def token_level_rewards(inputs: AdvantageInputs) -> Tensor:
    """``[B, T]`` float64 per-token rewards: ``token_rewards`` (zeroed off the mask) or R_i on the last token."""
    if inputs.token_rewards is not None:
        return torch.where(inputs.on_response, inputs.token_rewards.to(torch.float64), 0.0)
    # R in the mask's dtype (that of rewards) is exact; widening afterwards is one cheap pass.
    return last_token_rewards(inputs.rewards, inputs.mask).to(torch.float64)


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """``[B, T]`` G_t = r_t + gamma * G_{t+1} (G past the last token is 0), times ``mask``.

    Runs along every position, so ``rewards`` off the mask count (REINFORCE++ passes them zeroed,
    GAE its TD errors); pass float64 for sums that cannot overflow. gamma = 1 is a reversed
    cumulative sum; other values run one vectorized step per token position.
    """
    if gamma == 1.0:
        out = rewards.flip(1).cumsum(1).flip(1)
    else:
        out = torch.empty_like(rewards)
        running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
        for t in range(rewards.shape[1] - 1, -1, -1):
            running = rewards[:, t] + gamma * running
            out[:, t] = running
    return out.mul_(mask)


@register_estimator("reinforce_pp")
class ReinforcePP(Estimator):
    """Discounted token returns, whitened over the batch; no critic, no group baseline."""

    @dataclass(frozen=True)
    class Config:
        gamma: float = 1.0
        """Discount of future token rewards, in [0, 1]."""

        def __post_init__(self) -> None:
            if not 0.0 <= self.gamma <= 1.0:
                raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")

    description = "REINFORCE++: discounted token returns (R on the last token) whitened over the batch"

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        mask = inputs.mask
        returns = discounted_returns(token_level_rewards(inputs), mask, self.config.gamma)
        # whitened values are bounded (by sqrt of the token count), so a plain cast is safe
        return AdvantageOutput(advantages=masked_whiten(returns, mask).to(mask.dtype), returns=saturate(returns, mask.dtype))


@register_estimator("reinforce_pp_baseline")
class ReinforcePPBaseline(Estimator):
    """REINFORCE++ with the prompt-group mean as baseline: (R - mean_q) per token, whitened."""

    description = "REINFORCE++ with group baseline: (R - group mean) on every response token, whitened over the batch"
    min_group_size = 2

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        centred, _ = grpo_scores(inputs.rewards, inputs.group_ids, std_norm=False, groups=inputs.groups)
        mask = inputs.mask
        scores = centred[:, None] * mask  # [B, T] float64: R - mean_q on response tokens
        return AdvantageOutput(advantages=masked_whiten(scores, mask).to(mask.dtype), returns=broadcast_to_tokens(centred, mask))
