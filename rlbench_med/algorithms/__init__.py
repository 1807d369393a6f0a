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
from rlbench_med.algorithms.controls import CONTROL_PREFIX, is_control
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
    """``(name, one-line description)`` of every estimator but the controls, plus ``sft``; for ``rlbench-med list algos``."""
    rows = [(name, describe_estimator(name)) for name in list_estimators() if not is_control(name)]
    return rows + [(SFT_NAME, SFT_DESCRIPTION)]


def list_controls() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of the controls (``control:*``), listed apart from the estimators."""
    return [(name, describe_estimator(name)) for name in list_estimators() if is_control(name)]


__all__ = [
    "CONTROL_PREFIX",
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
    "is_control",
    "list_algorithms",
    "list_controls",
    "list_estimators",
    "make_estimator",
    "masked_whiten",
    "register_estimator",
]
