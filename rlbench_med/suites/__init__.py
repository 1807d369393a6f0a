"""Suites: specs, clinical data (SynthCLIMB and real CLIMB / MIMIC-IV exports), rewards, metrics.

- :mod:`.catalogue`: the CLIMB dataset catalogue (domains, class lists, sizes).
- :mod:`.data`: the JSONL export format, loading, validation, image / mask / signal readers.
- :mod:`.synth`: SynthCLIMB, deterministic synthetic data in that format.
- :mod:`.rewards`: answer parsing and the reward functions (``paper``, ``release``).
- :mod:`.release`: the QoQ-Med release's reward and evaluation, reproduced (pure functions).
- :mod:`.metrics`: per-domain balanced accuracy, macro-F1, the release's accuracy and IoU.
- :mod:`.spec`: the suite registry.
"""

from rlbench_med.suites.catalogue import CATALOGUE, MIMIC_TASKS, VISION_DOMAINS, CatalogueEntry, normalize_label
from rlbench_med.suites.data import (
    ClinicalData,
    DataError,
    Problem,
    Sample,
    load_data,
    load_image,
    load_mask,
    load_signal,
    validate_dir,
)
from rlbench_med.suites.metrics import compute_metrics
from rlbench_med.suites.release import split_release_labels
from rlbench_med.suites.rewards import (
    REWARD_PRESETS,
    REWARDS,
    Answer,
    ReleaseReward,
    RewardBreakdown,
    RewardFunction,
    RewardWeights,
    answer_text,
    answer_to_text,
    make_reward,
    parse_answer,
)
from rlbench_med.suites.spec import SUITES, SuiteSpec, get_suite, list_suites
from rlbench_med.suites.synth import DEFAULT_IMBALANCE, generate

__all__ = [
    "CATALOGUE",
    "DEFAULT_IMBALANCE",
    "MIMIC_TASKS",
    "REWARDS",
    "REWARD_PRESETS",
    "SUITES",
    "VISION_DOMAINS",
    "Answer",
    "CatalogueEntry",
    "ClinicalData",
    "DataError",
    "Problem",
    "ReleaseReward",
    "RewardBreakdown",
    "RewardFunction",
    "RewardWeights",
    "Sample",
    "SuiteSpec",
    "answer_text",
    "answer_to_text",
    "compute_metrics",
    "generate",
    "get_suite",
    "list_suites",
    "load_data",
    "load_image",
    "load_mask",
    "load_signal",
    "make_reward",
    "normalize_label",
    "parse_answer",
    "split_release_labels",
    "validate_dir",
]
