"""Advantage estimators: pure tensor math, one module per family, one signature.

``AdvantageInputs -> AdvantageOutput``; build one with ``make_estimator("name:key=value")``.
"""

from rlbench_med.algorithms.base import (
    ESTIMATORS,
    FLOAT_INPUTS,
    OPTIONAL_INPUTS,
    AdvantageInputs,
    AdvantageOutput,
    Estimator,
    InputError,
    config_fields,
    describe_estimator,
    list_estimators,
    make_estimator,
    register_estimator,
)
from rlbench_med.algorithms.drpo import DRPO, DRPOConfig, DRPODomainOnly, DRPONoKL, DRPORelease
from rlbench_med.algorithms.group_stats import GroupStats, group_stats, masked_whiten
from rlbench_med.algorithms.grpo import GRPO
from rlbench_med.algorithms.ppo import PPO
from rlbench_med.algorithms.reinforce import ReinforcePP, ReinforcePPBaseline
from rlbench_med.algorithms.remax import ReMax
from rlbench_med.algorithms.rloo import RLOO

#: Accepted by ``--algos`` beside the estimators: supervised fine-tuning, run by the runner itself.
SFT_NAME = "sft"
SFT_DESCRIPTION = "SFT: supervised fine-tuning on the reference answers (the baseline; no advantage estimator)"


def list_algorithms() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every estimator, plus ``sft``; for ``rlbench-med list algos``."""
    return [(name, describe_estimator(name)) for name in list_estimators()] + [(SFT_NAME, SFT_DESCRIPTION)]


__all__ = [
    "DRPO",
    "ESTIMATORS",
    "FLOAT_INPUTS",
    "GRPO",
    "OPTIONAL_INPUTS",
    "PPO",
    "RLOO",
    "SFT_DESCRIPTION",
    "SFT_NAME",
    "AdvantageInputs",
    "AdvantageOutput",
    "DRPOConfig",
    "DRPODomainOnly",
    "DRPONoKL",
    "DRPORelease",
    "Estimator",
    "GroupStats",
    "InputError",
    "ReMax",
    "ReinforcePP",
    "ReinforcePPBaseline",
    "config_fields",
    "describe_estimator",
    "group_stats",
    "list_algorithms",
    "list_estimators",
    "make_estimator",
    "masked_whiten",
    "register_estimator",
]
