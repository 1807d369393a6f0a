from dataclasses import dataclass
from typing import Literal

import pytest

from rlbench_med.typed_config import ConfigError, apply_overrides, check_fields, parse_spec


@dataclass(frozen=True)
class Demo:
    k_max: int = 10
    tol: float = 0.1
    kl_damping: bool = True
    mode: Literal["loss", "reward"] = "loss"
    window: int | None = None
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if self.k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {self.k_max}")


def test_parse_spec_splits_name_and_overrides():
    assert parse_spec("drpo") == ("drpo", {})
    assert parse_spec(" drpo:k_max=3, kl_damping=false ") == ("drpo", {"k_max": "3", "kl_damping": "false"})


@pytest.mark.parametrize("bad", [":k=1", "drpo:=3", "drpo:k=1,k=2", "drpo:k_max=3,kl"])
def test_parse_spec_rejects_malformed(bad):
    with pytest.raises(ConfigError):
        parse_spec(bad)


def test_a_name_may_hold_colons_before_its_options():
    # "drpo:k_max" is then a name, which the registry refuses as unknown (with a did-you-mean)
    assert parse_spec("drpo:k_max") == ("drpo:k_max", {})
    assert parse_spec("control:shuffle:seed=1,x=2") == ("control:shuffle", {"seed": "1", "x": "2"})


def test_overrides_are_converted_to_declared_types():
    cfg = apply_overrides(Demo(), {"k_max": "3", "tol": "0.25", "kl_damping": "false", "mode": "reward",
                                   "window": "none", "seeds": "0,1,2"})
    assert cfg == Demo(k_max=3, tol=0.25, kl_damping=False, mode="reward", window=None, seeds=(0, 1, 2))
    assert apply_overrides(Demo(), {"window": "5"}).window == 5


def test_unknown_key_names_the_key_and_the_accepted_fields():
    with pytest.raises(ConfigError) as err:
        apply_overrides(Demo(), {"kmax": "3"}, what="drpo")
    msg = str(err.value)
    assert "'kmax'" in msg and "k_max" in msg and "kl_damping" in msg and msg.startswith("drpo")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [("k_max", "three", "integer"), ("kl_damping", "maybe", "true or false"), ("tol", "x", "number"),
     ("mode", "both", "'loss'"), ("k_max", "0", "k_max must be >= 1")],
)
def test_bad_values_raise_naming_the_key(key, value, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Demo(), {key: value})
    assert fragment in str(err.value)
    if fragment != "k_max must be >= 1":
        assert key in str(err.value)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_floats_must_be_finite(text):
    with pytest.raises(ConfigError, match="tol: expected a finite number"):
        apply_overrides(Demo(), {"tol": text})


def test_ints_must_fit_in_64_bits():
    assert apply_overrides(Demo(), {"k_max": str(2**63 - 1)}).k_max == 2**63 - 1
    with pytest.raises(ConfigError, match="k_max: 9223372036854775808 does not fit in a 64-bit integer"):
        apply_overrides(Demo(), {"k_max": str(2**63)})
    with pytest.raises(ConfigError, match="window"):
        apply_overrides(Demo(), {"window": str(-(2**63) - 1)})


def test_check_fields_applies_the_same_domain_to_python_values():
    check_fields(Demo(tol=0.5, window=None))
    with pytest.raises(ConfigError, match="tol: expected a finite number"):
        check_fields(Demo(tol=float("nan")))
    with pytest.raises(ConfigError, match="seeds: .* does not fit"):
        check_fields(Demo(seeds=(0, 2**64)))
