"""The estimator contract: spec strings, declarations, input checks, the estimator table."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest
import torch

from rlbench_med.algorithms import (
    ESTIMATORS,
    FLOAT_INPUTS,
    AdvantageInputs,
    AdvantageOutput,
    Estimator,
    InputError,
    config_fields,
    describe_estimator,
    list_algorithms,
    list_controls,
    list_estimators,
    make_estimator,
    register_estimator,
)
from rlbench_med.registry import Registry, RegistryError
from rlbench_med.typed_config import ConfigError
from tests.algorithms.helpers import batch, full_inputs

REQUIRED = {
    "ppo", "grpo", "rloo", "remax", "reinforce_pp", "reinforce_pp_baseline",
    "drpo", "drpo_domain_only", "drpo_nokl", "drpo_release",
}


def test_every_required_estimator_is_registered_with_a_one_line_description() -> None:
    assert REQUIRED <= set(list_estimators())
    for name in list_estimators():
        text = describe_estimator(name)
        assert text and "\n" not in text
    names = [n for n, _ in list_algorithms()]
    controls = {"control:zero", "control:shuffle", "control:negate"}
    assert names[-1] == "sft" and set(names[:-1]) == set(list_estimators()) - controls
    assert [n for n, _ in list_controls()] == sorted(controls)


def test_spec_string_overrides_are_typed() -> None:
    est = make_estimator("drpo:k_max=3,kl_damping=false,tol=0.25,history_window=none")
    assert (est.config.k_max, est.config.kl_damping, est.config.tol) == (3, False, 0.25)
    assert est.name == "drpo"
    assert make_estimator("drpo_release:history_window=4").config.history_window == 4


def test_configs_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        make_estimator("grpo").config.std_norm = False  # type: ignore[misc]


def test_unknown_spec_key_names_the_key_and_the_accepted_fields() -> None:
    with pytest.raises(ConfigError) as info:
        make_estimator("drpo:kmax=3")
    message = str(info.value)
    assert "'kmax'" in message and "k_max" in message and "kl_damping" in message


def test_bad_spec_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="k_max"):
        make_estimator("drpo:k_max=three")
    with pytest.raises(ConfigError, match="kl_damping"):
        make_estimator("drpo:kl_damping=maybe")
    with pytest.raises(ConfigError, match="k_max must be >= 1"):
        make_estimator("drpo:k_max=0")
    with pytest.raises(ConfigError, match="kmeans"):
        make_estimator("drpo:kmeans=faiss")


def test_estimator_without_options_rejects_any_key() -> None:
    with pytest.raises(ConfigError, match=r"Accepted fields: \(none\)"):
        make_estimator("rloo:gamma=1")


def test_unknown_estimator_suggests_close_names() -> None:
    with pytest.raises(RegistryError) as info:
        make_estimator("dpro")
    assert "Did you mean" in str(info.value) and "'drpo'" in str(info.value) and "grpo" in str(info.value)


def test_config_fields_lists_the_spec_keys() -> None:
    assert config_fields("grpo") == ["std_norm", "eps"]
    assert "history_window" in config_fields("drpo_release")


def test_presets_change_only_their_defaults() -> None:
    assert make_estimator("drpo_nokl").config.kl_damping is False
    domain_only = make_estimator("drpo_domain_only").config
    assert (domain_only.clusters, domain_only.kl_damping) == (False, False)
    release = make_estimator("drpo_release").config
    assert (release.history, release.kl_damping) == (True, False)
    assert make_estimator("drpo_nokl:kl_damping=true").requires == {"old_logprobs", "ref_logprobs"}


def test_requires_and_min_group_size_are_declared() -> None:
    assert make_estimator("ppo").requires == {"values"}
    assert make_estimator("remax").requires == {"baseline_rewards"}
    assert make_estimator("grpo").requires == frozenset()
    for name in ("grpo", "rloo", "reinforce_pp_baseline", "drpo", "drpo_release"):
        assert make_estimator(name).min_group_size == 2
    for name in ("ppo", "remax", "reinforce_pp"):
        assert make_estimator(name).min_group_size == 1


def test_missing_required_input_is_named() -> None:
    with pytest.raises(InputError, match="'baseline_rewards'"):
        make_estimator("remax")(batch([[1.0, 0.0]]))
    with pytest.raises(InputError, match="'values'"):
        make_estimator("ppo")(batch([[1.0, 0.0]]))


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline", "drpo_nokl"])
def test_a_group_with_one_rollout_says_which_and_what_to_do(name: str) -> None:
    inputs = AdvantageInputs(
        rewards=torch.tensor([1.0, 0.0, 1.0]), response_mask=torch.ones(3, 2),
        group_ids=torch.tensor([4, 4, 7]), domains=torch.zeros(3, dtype=torch.int64), domain_names=("a",),
    )
    with pytest.raises(InputError) as info:
        make_estimator(name)(inputs)
    assert "group 7 has 1 rollout" in str(info.value) and "n_rollouts >= 2" in str(info.value)


def test_single_rollout_groups_are_fine_where_no_group_statistic_is_used() -> None:
    out = make_estimator("reinforce_pp")(batch([[1.0], [0.0]]))
    assert out.advantages.shape == (2, 3)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"rewards": torch.zeros(2, 1)}, "rewards must be a \\[B\\] tensor"),
        ({"rewards": torch.tensor([1, 0])}, "float"),
        ({"rewards": torch.tensor([1.0, float("nan")])}, r"rewards\[1\] is nan"),
        ({"group_ids": torch.tensor([0.0, 0.0])}, "group_ids must be an int64"),
        ({"domains": torch.tensor([0, 3])}, "outside domain_names"),
        ({"response_mask": torch.ones(3, 2)}, "response_mask must be \\[B, T\\]"),
        ({"values": torch.ones(2, 5)}, "values must have the shape"),
        ({"baseline_rewards": torch.ones(3)}, "baseline_rewards must be"),
    ],
)
def test_malformed_inputs_are_named(changes: dict[str, torch.Tensor], match: str) -> None:
    fields = dict(
        rewards=torch.tensor([1.0, 0.0]), response_mask=torch.ones(2, 2), group_ids=torch.tensor([0, 0]),
        domains=torch.tensor([0, 0]), domain_names=("a",),
    )
    fields.update(changes)
    with pytest.raises(InputError, match=match):
        AdvantageInputs(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", FLOAT_INPUTS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_input_is_refused_naming_the_field_and_its_first_bad_index(field: str, bad: float) -> None:
    # 4 rollouts of lengths 3, 2, 3, 1: token 2 of rollout 1 is padding, token 1 of rollout 2 is not
    lengths = [3, 2, 3, 1]
    clean = batch([[1.0, 0.0], [0.5, 0.5]], t_len=3, lengths=lengths)
    gen = torch.Generator().manual_seed(0)
    fields = {k: getattr(clean, k) for k in clean.__dataclass_fields__}
    fields.update(
        token_rewards=torch.randn(4, 3, generator=gen), values=torch.randn(4, 3, generator=gen),
        baseline_rewards=torch.rand(4, generator=gen), old_logprobs=-torch.rand(4, 3, generator=gen),
        ref_logprobs=-torch.rand(4, 3, generator=gen),
    )
    AdvantageInputs(**fields)  # finite: accepted
    value = fields[field].clone()
    if value.dim() == 1:
        value[3] = 1.0
        value[2] = bad
        first = "2"
    else:
        value[1, 2] = float("nan")  # padding: allowed, and earlier in row-major order than the bad token
        value[2, 1] = bad
        value[3, 0] = bad
        first = "2, 1"
    fields[field] = value
    with pytest.raises(InputError, match=rf"^{field}\[{first}\] is {bad}; {field} must be finite"):
        AdvantageInputs(**fields)


@pytest.mark.parametrize("field", FLOAT_INPUTS)
def test_finite_inputs_whose_sum_overflows_are_accepted(field: str) -> None:
    big = torch.finfo(torch.float32).max
    fields = {k: getattr(full_inputs(batch([[1.0, 0.0]], t_len=2)), k) for k in AdvantageInputs.__dataclass_fields__}
    fields[field] = torch.full((2,) if field in ("rewards", "baseline_rewards") else (2, 2), big)
    assert bool(torch.isinf(fields[field].sum()))
    AdvantageInputs(**fields)


@pytest.mark.parametrize(("name", "field"), [("ppo", "values"), ("ppo", "token_rewards"), ("reinforce_pp", "token_rewards"),
                                             ("remax", "baseline_rewards"), ("drpo", "old_logprobs")])
def test_nan_in_an_input_an_estimator_reads_never_reaches_it(name: str, field: str) -> None:
    inputs = full_inputs(batch([[1.0, 0.0], [0.5, 0.25]], t_len=2))
    fields = {k: getattr(inputs, k) for k in inputs.__dataclass_fields__}
    value = (fields[field] if fields[field] is not None else torch.zeros(4, 2)).clone()
    value.view(-1)[1] = float("nan")
    fields[field] = value
    with pytest.raises(InputError, match=f"^{field}\\["):
        make_estimator(name)(AdvantageInputs(**fields))


def test_stateless_estimators_have_an_empty_state() -> None:
    for name in list_estimators():
        est = make_estimator(name)
        if name not in ("drpo_release", "control:shuffle"):  # these keep a history / a permutation generator
            assert est.state_dict() == {}
            est.load_state_dict({})


def test_register_estimator_checks_the_declaration() -> None:
    local: Registry[type[Estimator]] = Registry("estimator")

    class NoDescription(Estimator):
        pass

    with pytest.raises(RegistryError, match="description"):
        register_estimator("x", registry=local)(NoDescription)

    class MutableConfig(Estimator):
        description = "x"

        @dataclass
        class Config:
            a: int = 1

    with pytest.raises(RegistryError, match="frozen dataclass"):
        register_estimator("x", registry=local)(MutableConfig)
    with pytest.raises(RegistryError, match="subclass"):
        register_estimator("x", registry=local)(dict)  # type: ignore[arg-type]


def test_a_new_estimator_registers_in_a_few_lines() -> None:
    local: Registry[type[Estimator]] = Registry("estimator")

    @register_estimator("constant", registry=local)
    class Constant(Estimator):
        description = "every response token gets the same advantage"

        @dataclass(frozen=True)
        class Config:
            value: float = 1.0

        def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
            adv = inputs.mask * self.config.value
            return AdvantageOutput(advantages=adv, returns=adv)

    est = make_estimator("constant:value=2.5", registry=local)
    assert est.name == "constant"
    assert est(batch([[1.0]])).advantages.tolist() == [[2.5, 2.5, 2.5]]
    assert "constant" not in ESTIMATORS
