"""The QoQ-Med paper's numbers (arXiv 2506.00711), shown beside ours and labelled as the paper's.

The CSVs in ``reports/data/`` are copies of the paper's Table 2 (RL methods on the CLIMB vision
domains, Qwen2.5-VL-7B, mean of 4 runs), Table 3 (DRPO cluster limit and reward-weight
ablations) and Table 4 (MIMIC-IV length of stay / 48 h mortality by input modalities). They are
reference figures from the paper, never measured here.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

SOURCE = "QoQ-Med paper, arXiv 2506.00711"
TABLES = {
    "climb_vision": "Table 2",
    "ablation_clusters": "Table 3 (cluster limit)",
    "ablation_rewards": "Table 3 (reward weights acc:iou)",
    "mimic_fusion": "Table 4",
}
#: Our estimator names -> the paper's method names (Table 2).
TABLE2_METHODS = {
    "sft": "SFT", "ppo": "PPO", "remax": "ReMax", "reinforce_pp": "Reinforce++", "rloo": "RLOO",
    "grpo": "GRPO", "drpo_domain_only": "DRPO_DomainOnly", "drpo_nokl": "DRPO_NoKL", "drpo": "DRPO",
}
#: Table 4: (estimator, eval inputs) -> method.
TABLE4_METHODS = {
    ("grpo", "full"): "GRPO-Full", ("drpo", "full"): "DRPO-Full", ("drpo", "text"): "DRPO-TextOnly",
    ("drpo", "ecg+text"): "DRPO-ECG+T", ("drpo", "vision+text"): "DRPO-Vision+T",
}


@lru_cache(maxsize=None)
def _read(name: str) -> tuple[dict[str, str], ...]:
    text = resources.files("rlbench_med.reports").joinpath("data", name).read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return tuple(csv.DictReader(lines))


def _numbers(rows: Any, **match: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for row in rows:
        if all(row[k] == v for k, v in match.items()):
            domain = row.get("domain") or row.get("task")
            out[(domain, "acc")] = float(row["acc"])
            out[(domain, "f1")] = float(row["f1"])
    return out


def _reward_config(variant_overrides: Mapping[str, Any] | None, label: str) -> str | None:
    """``"0.6:0.2"`` from a variant's reward weights (first two numbers: acc, iou) or its label.

    None for a variant whose reward the paper did not run (another accuracy form or reward function).
    """
    overrides = variant_overrides or {}
    if overrides.get("accuracy_reward", "set_f1") != "set_f1" or overrides.get("reward", "paper") != "paper":
        return None
    text = str(overrides.get("reward_weights", "")) or label
    numbers = re.findall(r"\d*\.\d+|\d+", text)
    if len(numbers) < 2:
        return None
    return f"{float(numbers[0]):g}:{float(numbers[1]):g}"


def paper_numbers(suite: str, algo: str, variants: Mapping[str, Mapping[str, Any]] | None = None) -> dict[tuple[str, str], float]:
    """The paper's ``{(domain, metric): value}`` for a results.csv algo label, or ``{}`` when it has none.

    ``variants``: the suite's variants (label -> config overrides) to read ablation reward weights.
    """
    base, _, inputs = algo.partition("@")
    name, _, variant = base.partition("[")
    variant = variant.rstrip("]")
    estimator, _, spec = name.partition(":")
    if suite == "climb_vision" and not spec and not variant and not inputs and estimator in TABLE2_METHODS:
        return _numbers(_read("paper_table2_rl_methods.csv"), method=TABLE2_METHODS[estimator])
    if suite == "ablation_clusters" and estimator == "drpo" and not inputs:
        k = re.search(r"k_max=(\d+)", spec)
        if k:
            return _numbers(_read("paper_table3_ablations.csv"), ablation="cluster_limit", config=k.group(1))
    if suite == "ablation_rewards" and estimator == "drpo" and variant and not spec:
        config = _reward_config((variants or {}).get(variant), variant)
        if config:
            return _numbers(_read("paper_table3_ablations.csv"), ablation="reward_acc_iou", config=config)
    if suite == "mimic_fusion" and not spec and not variant:
        method = TABLE4_METHODS.get((estimator, inputs or "full"))
        if method:
            return _numbers(_read("paper_table4_mimic_fusion.csv"), method=method)
    return {}


def paper_caption(suite: str) -> str | None:
    table = TABLES.get(suite)
    return f"{SOURCE}, {table}: the paper's numbers (Qwen2.5-VL-7B on CLIMB / MIMIC-IV), not measured here" if table else None
