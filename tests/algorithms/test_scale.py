"""Every estimator at reward scales from 1e-20 to float32's max: against float64 loops, and exactly
invariant (normalised estimators) or equivariant (unnormalised ones) under scaling."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbench_med.algorithms import AdvantageInputs, list_estimators, make_estimator
from rlbench_med.typed_config import parse_spec
from tests.algorithms import oracles
from tests.algorithms.helpers import batch, random_batch

F32_MAX = float(torch.finfo(torch.float32).max)

#: spec -> float64 loop version (see tests/algorithms/oracles.py).
ORACLES: dict[str, Callable[[oracles.Plain], tuple[np.ndarray, np.ndarray]]] = {
    "grpo": oracles.grpo,
    "grpo:std_norm=false": lambda b: oracles.grpo(b, std_norm=False),
    "rloo": oracles.rloo,
    "remax": oracles.remax,
    "reinforce_pp": oracles.reinforce_pp,
    "reinforce_pp:gamma=0.9": lambda b: oracles.reinforce_pp(b, gamma=0.9),
    "reinforce_pp_baseline": oracles.reinforce_pp_baseline,
    "ppo": oracles.ppo,
    "ppo:gamma=0.9,lam=0.8,whiten=false": lambda b: oracles.ppo(b, gamma=0.9, lam=0.8, whitened=False),
    "drpo_domain_only": lambda b: oracles.drpo_without_clusters(b, one_cluster_per_domain=False, kl=False),
    "drpo_nokl:k_max=1": lambda b: oracles.drpo_without_clusters(b, one_cluster_per_domain=True, kl=False),
    "drpo:k_max=1": lambda b: oracles.drpo_without_clusters(b, one_cluster_per_domain=True, kl=True),
    "control:zero": lambda b: (np.zeros(b.mask.shape), np.zeros(b.mask.shape)),
    "control:negate": lambda b: tuple(-x for x in oracles.grpo(b)),
}

#: Power of c in advantages and returns when every reward-like input (rewards, token_rewards,
#: values, baseline_rewards) is multiplied by c > 0: 0 = invariant, 1 = scaled by c.
SCALING = {
    "grpo": (0, 0),
    "grpo:std_norm=false": (1, 1),
    "rloo": (1, 1),
    "remax": (1, 1),
    "reinforce_pp": (0, 1),
    "reinforce_pp_baseline": (0, 1),
    "ppo": (0, 1),
    "ppo:whiten=false": (1, 1),
    "drpo": (0, 0),
    "drpo_nokl": (0, 0),
    "drpo_domain_only": (0, 0),
    "drpo_release": (0, 0),
    "control:zero": (0, 0),
    "control:shuffle": (0, 0),
    "control:negate": (0, 0),
}
REWARD_LIKE = ("rewards", "token_rewards", "values", "baseline_rewards")


def scaled(inputs: AdvantageInputs, c: float) -> AdvantageInputs:
    """``inputs`` with every reward-like input multiplied by ``c`` (in float64, then rounded)."""
    fields = {k: getattr(inputs, k) for k in inputs.__dataclass_fields__}
    for key in REWARD_LIKE:
        if fields[key] is not None:
            fields[key] = (fields[key].double() * c).to(fields[key].dtype)
    return AdvantageInputs(**fields)  # type: ignore[arg-type]


unit = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-1.0, 1.0, width=32))
scales = st.one_of(st.integers(-20, 30).map(lambda k: 10.0**k), st.just(F32_MAX))


@st.composite
def scaled_batches(draw: st.DrawFn) -> AdvantageInputs:
    """1-4 prompts of 2-4 rollouts (the same number for all), up to 3 domains and 4 tokens;
    rewards, token rewards, values and baselines drawn in [-1, 1], then times a scale from
    1e-20 to 1e30 or float32's max; log-probabilities are scale-free."""
    n_groups, n, t_len = draw(st.integers(1, 4)), draw(st.integers(2, 4)), draw(st.integers(1, 4))
    b = n_groups * n
    c = draw(scales)
    groups = [[x * c for x in draw(st.lists(unit, min_size=n, max_size=n))] for _ in range(n_groups)]
    domains = draw(st.lists(st.integers(0, 2), min_size=n_groups, max_size=n_groups))
    lengths = draw(st.lists(st.integers(1, t_len), min_size=b, max_size=b))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))

    def reward_like(*shape: int) -> torch.Tensor:
        return ((torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * c).float()

    old = -3 * torch.rand(b, t_len, generator=gen)
    return batch(
        groups, domains=domains, domain_names=("a", "b", "c"), t_len=t_len, lengths=lengths,
        token_rewards=reward_like(b, t_len) if draw(st.booleans()) else None,
        values=reward_like(b, t_len), baseline_rewards=reward_like(b),
        old_logprobs=old, ref_logprobs=old + (2 * torch.rand(b, t_len, generator=gen) - 1),
    )


def assert_matches(actual: torch.Tensor, expected: np.ndarray) -> None:
    """``actual`` is the float64 result clamped to float32's range (as documented) and rounded to
    float32 (below float32's smallest normal, 1.2e-38, that rounding is coarse: subnormals)."""
    want = np.clip(expected, -F32_MAX, F32_MAX).astype(np.float32).astype(np.float64)
    got = actual.double().numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max(initial=0.0)))


@pytest.mark.parametrize("spec", sorted(ORACLES))
@settings(max_examples=40, deadline=None)
@given(inputs=scaled_batches())
def test_every_estimator_matches_a_float64_loop_at_scales_from_1e_minus_20_to_float32_max(
    spec: str, inputs: AdvantageInputs
) -> None:
    out = make_estimator(spec)(inputs)
    advantages, returns = ORACLES[spec](oracles.Plain.of(inputs))
    assert_matches(out.advantages, advantages)
    assert_matches(out.returns, returns)


def _two_steps(spec: str, first: AdvantageInputs, second: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns of ``second``, after ``first`` (which fills drpo_release's history)."""
    est = make_estimator(spec)
    est(first)
    out = est(second)
    return out.advantages, out.returns


@pytest.mark.parametrize("spec", sorted(SCALING))
@settings(max_examples=12, deadline=None)
@given(k=st.integers(-66, 100), seed=st.integers(0, 10**6))
def test_scaling_rewards_by_a_power_of_two_scales_the_output_exactly_as_documented(spec: str, k: int, seed: int) -> None:
    # c = 2^k (1.4e-20 .. 1.3e30) scales float32 values exactly, and with relative eps terms every
    # float64 step of an estimator commutes with it, so the outputs must match bit for bit.
    c = 2.0**k
    first, second = (random_batch(prompts=6, n=3, n_domains=3, t_len=4, seed=seed + i, levels=5) for i in (0, 1))
    adv, ret = _two_steps(spec, first, second)
    adv_c, ret_c = _two_steps(spec, scaled(first, c), scaled(second, c))
    adv_power, ret_power = SCALING[spec]
    assert torch.equal(adv_c, adv * c**adv_power)
    assert torch.equal(ret_c, ret * c**ret_power)


def test_every_registered_estimator_has_a_documented_scaling() -> None:
    assert set(list_estimators()) <= {parse_spec(spec)[0] for spec in SCALING}


@pytest.mark.parametrize("name", list_estimators())
def test_rewards_at_float32s_limit_give_finite_advantages(name: str) -> None:
    # rewards in {-max, 0, max}, values in [-max, max]: R - mean, the GAE sums and the whitening
    # variance all overflow float32 (they used to give inf / NaN)
    base = random_batch(prompts=6, n=3, n_domains=2, t_len=4, seed=7)
    rewards = (base.rewards * 2 - 1) * F32_MAX
    fields = {k: getattr(base, k) for k in base.__dataclass_fields__}
    fields.update(rewards=rewards, baseline_rewards=-rewards, values=base.values.clamp(-1, 1) * F32_MAX)
    out = make_estimator(name)(AdvantageInputs(**fields))  # type: ignore[arg-type]
    assert torch.isfinite(out.advantages).all() and torch.isfinite(out.returns).all()
    assert all(math.isfinite(v) for v in out.diagnostics.values())
    assert (out.advantages.abs().max() > 0) == (name != "control:zero")  # zero gives 0 by design


@pytest.mark.parametrize("name", ["reinforce_pp", "reinforce_pp_baseline", "ppo"])
def test_whitening_does_not_collapse_for_rewards_of_1e20(name: str) -> None:
    inputs = random_batch(prompts=6, n=3, n_domains=2, t_len=4, seed=3)
    plain, big = make_estimator(name)(inputs), make_estimator(name)(scaled(inputs, 1e20))
    assert big.advantages.abs().max() > 0.5
    torch.testing.assert_close(big.advantages, plain.advantages, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["drpo", "drpo_nokl", "drpo_domain_only", "drpo_release"])
@pytest.mark.parametrize("c", [1e4, 1e-8])
def test_drpo_advantages_keep_their_size_when_rewards_are_rescaled(name: str, c: float) -> None:
    # rewards 0, 0.5, 1 times 1e4 are exact in float32; the published eps shrank A to 0.037 here
    inputs = random_batch(prompts=12, n=4, n_domains=3, t_len=3, seed=5)
    plain, rescaled = make_estimator(name)(inputs), make_estimator(name)(scaled(inputs, c))
    assert rescaled.advantages.abs().max() > 1.0
    torch.testing.assert_close(rescaled.advantages, plain.advantages, rtol=1e-5, atol=1e-5)
