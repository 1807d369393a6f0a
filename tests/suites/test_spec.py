"""The suite registry and what each spec promises."""

from __future__ import annotations

import pytest

from rlbench_med.registry import RegistryError
from rlbench_med.suites.catalogue import VISION_DOMAINS
from rlbench_med.suites.rewards import RewardWeights
from rlbench_med.suites.spec import EVAL_INPUTS, RUN_KEYS, SUITES, SuiteSpec, get_suite, list_suites


def test_registry_holds_every_suite() -> None:
    assert list_suites() == sorted(
        ["climb_vision", "climb_ecg", "grounding", "mimic_fusion", "ablation_clusters", "ablation_rewards", "runtime"]
    )
    with pytest.raises(RegistryError, match="climb_vision"):
        get_suite("climb_visoin")


def test_specs_name_data_domains_metrics_algos_seeds_profiles() -> None:
    for name in list_suites():
        spec = get_suite(name)
        assert spec.description and spec.default_algos and set(spec.profiles) == {"quick", "full"}
        # a timing suite runs once; every suite that compares estimators has four seeds
        assert spec.seeds("quick") == ((0,) if name == "runtime" else (0, 1, 2, 3))
        for profile in spec.profiles:
            assert set(spec.run_overrides(profile)) <= RUN_KEYS
    assert get_suite("climb_vision").seeds("full") == (0, 1, 2, 3)
    assert get_suite("climb_vision").domains == VISION_DOMAINS
    assert get_suite("climb_vision").default_algos == ("drpo", "grpo")
    assert get_suite("mimic_fusion").eval_inputs == EVAL_INPUTS == ("full", "text", "ecg+text", "vision+text")
    assert get_suite("mimic_fusion").domains == ("los", "ihm48")
    assert get_suite("ablation_clusters").default_algos == ("drpo:k_max=1", "drpo:k_max=3", "drpo:k_max=10", "drpo:k_max=20")
    assert get_suite("runtime").data == "none"


def test_reward_ablation_variants_are_parseable_weights() -> None:
    variants = get_suite("ablation_rewards").variants
    weights = {label: RewardWeights.parse(v["reward_weights"]) for label, v in variants.items()}
    assert {(w.accuracy, w.iou) for w in weights.values()} == {(0.6, 0.2), (0.2, 0.6)}


def test_spec_invariants_are_checked() -> None:
    base = get_suite("climb_ecg")
    with pytest.raises(ValueError, match="run keys"):
        SuiteSpec(**{**base.__dict__, "profiles": {"quick": {"data": {}, "run": {"lr": 1}, "seeds": (0,)}}})
    with pytest.raises(ValueError, match="eval_inputs"):
        SuiteSpec(**{**base.__dict__, "eval_inputs": ("text",)})
    with pytest.raises(ValueError, match="profile"):
        base.seeds("huge")
    assert "climb_ecg" in SUITES
