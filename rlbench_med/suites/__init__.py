"""Suites: specs, clinical data (SynthCLIMB and real CLIMB / MIMIC-IV exports), rewards, metrics.

- :mod:`.catalogue`: the CLIMB dataset catalogue (domains, class lists, sizes).
- :mod:`.data`: the JSONL export format, loading and validation (:func:`load_data`, :func:`check_data`).
- :mod:`.source`: where a data set lives and which records a suite uses (:class:`DataSource`).
- :mod:`.records`: reading records without their media (domains, datasets, labels, confined paths).
- :mod:`.media`: image, mask, video and signal readers.
- :mod:`.release_format`: the QoQ-Med release's data conventions (label splitting, paths, frames).
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
    DataSource,
    Problem,
    Sample,
    check_data,
    load_data,
    load_image,
    load_mask,
    load_sample_mask,
    load_signal,
    load_video_frames,
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
    "DataSource",
    "Problem",
    "ReleaseReward",
    "RewardBreakdown",
    "RewardFunction",
    "RewardWeights",
    "Sample",
    "SuiteSpec",
    "answer_text",
    "answer_to_text",
    "check_data",
    "compute_metrics",
    "generate",
    "get_suite",
    "list_suites",
    "load_data",
    "load_image",
    "load_mask",
    "load_sample_mask",
    "load_signal",
    "load_video_frames",
    "make_reward",
    "normalize_label",
    "parse_answer",
    "split_release_labels",
    "validate_dir",
]
