"""PPO's advantage: generalized advantage estimation (Schulman et al. 2015, arXiv 1506.02438).

delta_t = r_t + gamma * V_{t+1} - V_t (V past the last response token is 0),
A_t = delta_t + gamma * lambda * A_{t+1}; returns = A + V (the critic's target); the advantage
is then whitened over the masked tokens of the batch. r is ``token_rewards`` when given, else the
outcome reward R_i on the last response token.

Scale: computed in float64 and whitened with a relative eps, so scaling rewards (and token
rewards) and values together by c > 0 leaves the whitened advantages unchanged and scales the
unwhitened ones and the returns by c, for every finite float32 input; values beyond the output
dtype's range (sums past float32's max) end at +-max.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import masked_whiten, saturate
from rlbench_med.algorithms.reinforce import discounted_returns, token_level_rewards


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """GAE advantages and returns, both ``[B, T]`` float64 and zero off ``mask``.

    ``rewards`` and ``values`` are zeroed off the mask first, so padding never leaks in. The
    advantage is the (gamma * lambda)-discounted sum of the TD errors delta, so it reuses
    :func:`discounted_returns` (a cumulative sum for the default gamma = lambda = 1).
    """
    on = mask != 0
    r = torch.where(on, rewards.to(torch.float64), 0.0)
    v = torch.where(on, values.to(torch.float64), 0.0)
    next_value = torch.zeros_like(v)
    next_value[:, :-1] = v[:, 1:]
    delta = r + gamma * next_value - v
    adv = discounted_returns(delta, mask, gamma * lam)
    return adv, (adv + v).mul_(mask)


@register_estimator("ppo")
class PPO(Estimator):
    """GAE with a learned critic (the runner supplies ``values``)."""

    @dataclass(frozen=True)
    class Config:
        gamma: float = 1.0
        """Discount, in [0, 1]."""
        lam: float = 1.0
        """GAE lambda, in [0, 1] (1: Monte-Carlo return minus V; 0: one-step TD error)."""
        whiten: bool = True
        """Whiten the advantages over the batch's masked tokens."""

        def __post_init__(self) -> None:
            for key in ("gamma", "lam"):
                value = getattr(self, key)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} must be in [0, 1], got {value}")

    description = "PPO: GAE(gamma, lambda) on the critic's values, whitened over the batch (needs values)"

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"values"})

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        assert inputs.values is not None  # checked by Estimator.check_inputs
        mask = inputs.mask
        adv, returns = gae(token_level_rewards(inputs), inputs.values, mask, self.config.gamma, self.config.lam)
        if self.config.whiten:
            adv = masked_whiten(adv, mask)
        return AdvantageOutput(advantages=saturate(adv, mask.dtype), returns=saturate(returns, mask.dtype))
