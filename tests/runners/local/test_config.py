from __future__ import annotations

import pytest

from rlbench_med.runners.config import LocalConfig, parse_eval_input
from rlbench_med.typed_config import describe_fields
from rlbench_med.typed_config import ConfigError, apply_overrides


def test_defaults_are_valid_and_every_field_is_documented() -> None:
    config = LocalConfig()
    assert config.clip_low == 0.2 and config.clip_high == 0.3
    helps = describe_fields(LocalConfig)
    assert set(helps) == set(config.to_dict())
    assert all(text.strip() for text in helps.values())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"n_rollouts": 0}, "n_rollouts"),
        ({"clip_low": 1.0}, "clip_low"),
        ({"kl_coef": -0.1}, "kl_coef"),
        ({"sft_fraction": 0.0}, "sft_fraction"),
        ({"d_model": 30, "n_heads": 4}, "d_model"),
        ({"image_tokens": 3}, "image_tokens"),
        ({"reward_weights": "fancy"}, "reward_weights"),
        ({"reward": "fancy"}, "reward"),
        ({"eval_inputs": ("full", "smell+text")}, "eval_inputs"),
        ({"policy": "gpt"}, "policy"),
        ({"minibatches": 1000}, "minibatches"),
    ],
)
def test_bad_values_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        LocalConfig(**changes)


def test_overrides_convert_types_and_reject_unknown_keys() -> None:
    config = apply_overrides(LocalConfig(), {"steps": "7", "kl_mode": "reward", "eval_inputs": "full;text"})
    assert (config.steps, config.kl_mode, config.eval_inputs) == (7, "reward", ("full", "text"))
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        apply_overrides(LocalConfig(), {"stepz": "3"})
    with pytest.raises(ConfigError, match="kl_mode"):
        apply_overrides(LocalConfig(), {"kl_mode": "both"})


def test_eval_inputs_parse() -> None:
    assert parse_eval_input("full") == {"text", "vision", "ecg"}
    assert parse_eval_input("ecg+text") == {"ecg", "text"}
