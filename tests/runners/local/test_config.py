from __future__ import annotations

import pytest

from rlbench_med.runners.config import LocalConfig, parse_eval_input
from rlbench_med.typed_config import describe_settings
from rlbench_med.typed_config import ConfigError, apply_overrides


def test_defaults_are_valid_and_every_field_is_documented() -> None:
    config = LocalConfig()
    assert config.clip_low == 0.2 and config.clip_high == 0.3
    docs = {d.name: d for d in describe_settings(LocalConfig)}
    assert set(docs) == set(config.to_dict())
    assert all(d.help.strip() for d in docs.values())
    # types, defaults and allowed values as `rlbench-med list settings` prints them
    assert (docs["steps"].type, docs["steps"].default) == ("int", 150)
    assert (docs["kl_mode"].allowed, docs["kl_mode"].default) == (("loss", "reward"), "loss")
    assert docs["modality_dropout"].type == "float or none"
    assert docs["eval_inputs"].type.startswith("list of str")


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


NON_FINITE = [("clip_high", "nan"), ("kl_coef", "nan"), ("grad_clip", "nan"), ("lr", "inf"), ("temperature", "inf"),
              ("clip_low", "-inf"), ("modality_dropout", "nan"), ("sft_fraction", "nan")]


@pytest.mark.parametrize(("field", "text"), NON_FINITE)
def test_non_finite_numbers_are_refused_whichever_way_they_come(field: str, text: str) -> None:
    # NaN passes every `value < 0` check, so without this kl_coef=nan switches the KL off silently.
    with pytest.raises(ConfigError, match=f"--set.{field}: expected a finite number"):
        apply_overrides(LocalConfig(), {field: text}, what="--set")
    with pytest.raises(ConfigError, match=f"{field}: expected a finite number"):
        LocalConfig(**{field: float(text)})


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**20])
def test_integers_beyond_int64_are_refused(value: int) -> None:
    with pytest.raises(ConfigError, match="base_seed: .* does not fit in a 64-bit integer"):
        apply_overrides(LocalConfig(), {"base_seed": str(value)}, what="--set")
    with pytest.raises(ConfigError, match="base_seed"):
        LocalConfig(base_seed=value)
    assert LocalConfig(base_seed=2**63 - 1).base_seed == 2**63 - 1


def test_python_values_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(ConfigError, match="steps: expected an integer, got 2.5"):
        LocalConfig(steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="kl_mode"):
        LocalConfig(kl_mode="both")  # type: ignore[arg-type]
