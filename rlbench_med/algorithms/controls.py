"""Controls: estimators that carry no signal, or the wrong one, to calibrate a suite.

A comparison harness must tell a working estimator from one that does nothing. These three are
the yardsticks ``rlbench-med calibrate`` trains beside a reference estimator (never defaults;
``rlbench-med list algos`` lists them apart, under their own heading):

- ``control:zero``: every advantage is 0. The policy-gradient term vanishes, so the policy stays
  at its start (with ``kl_mode=loss`` the KL term's gradient is 0 there too): the score of doing
  nothing.
- ``control:shuffle``: GRPO's advantages of the batch permuted across its rollouts (a fresh
  permutation each step, from ``seed``): the same magnitudes and the same update size as GRPO,
  but no information about which answer was better. What RL noise alone does to a policy.
- ``control:negate``: GRPO's advantages times -1: the right signal with the wrong sign. A suite
  that can rank estimators must put it clearly below ``control:zero``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, register_estimator
from rlbench_med.algorithms.group_stats import EPS, broadcast_to_tokens
from rlbench_med.algorithms.grpo import grpo_scores

#: Names of the registered controls start with this prefix.
CONTROL_PREFIX = "control:"


def is_control(name: str) -> bool:
    """Whether an estimator name (or an algorithm label) is one of the controls."""
    return name.startswith(CONTROL_PREFIX)


@register_estimator("control:zero")
class ZeroControl(Estimator):
    """No signal: every advantage 0."""

    description = "every advantage 0 (no signal: only the KL term to the start moves the policy)"

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        adv = torch.zeros_like(inputs.mask)
        return AdvantageOutput(advantages=adv, returns=adv)


@register_estimator("control:shuffle")
class ShuffleControl(Estimator):
    """GRPO's per-rollout advantages, permuted across the batch's rollouts."""

    @dataclass(frozen=True)
    class Config:
        seed: int = 0
        """Seed of the permutations (one per call, from a generator kept in the estimator's state)."""

    description = "GRPO's advantages permuted across the batch's rollouts (same magnitudes, no information)"
    min_group_size = 2

    def __init__(self, config: Any | None = None, *, name: str | None = None) -> None:
        super().__init__(config, name=name)
        self.generator = torch.Generator().manual_seed(self.config.seed)

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        scores, _ = grpo_scores(inputs.rewards, inputs.group_ids, eps=EPS, groups=inputs.groups)
        order = torch.randperm(scores.numel(), generator=self.generator)
        adv = broadcast_to_tokens(scores[order], inputs.mask)
        return AdvantageOutput(advantages=adv, returns=adv)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


@register_estimator("control:negate")
class NegateControl(Estimator):
    """GRPO with its sign flipped."""

    description = "GRPO's advantages x -1 (the right signal with the wrong sign)"
    min_group_size = 2

    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        scores, _ = grpo_scores(inputs.rewards, inputs.group_ids, eps=EPS, groups=inputs.groups)
        adv = broadcast_to_tokens(-scores, inputs.mask)
        return AdvantageOutput(advantages=adv, returns=adv)
