"""Properties every estimator must have: padding is inert, prompt order does not matter, never NaN."""

from __future__ import annotations

import math

import pytest
import torch

from rlbench_med.algorithms import AdvantageInputs, list_estimators, make_estimator
from tests.algorithms.helpers import batch, full_inputs, random_batch

ALL = list_estimators()


def _with(inputs: AdvantageInputs, **changes: object) -> AdvantageInputs:
    fields = {k: getattr(inputs, k) for k in inputs.__dataclass_fields__}
    fields.update(changes)
    return AdvantageInputs(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("garbage", [1e6, float("nan")])
def test_values_off_the_mask_never_change_the_output(name: str, garbage: float) -> None:
    inputs = random_batch(prompts=6, n=3, n_domains=2, t_len=6, seed=1)
    off = inputs.response_mask == 0
    assert off.any()
    token_rewards = torch.randn(inputs.response_mask.shape, generator=torch.Generator().manual_seed(5))
    clean = _with(inputs, token_rewards=token_rewards * inputs.response_mask)

    def dirty(x: torch.Tensor) -> torch.Tensor:
        return torch.where(off, torch.full_like(x, garbage), x)

    noisy = _with(
        clean,
        token_rewards=dirty(clean.token_rewards),
        values=dirty(clean.values),
        old_logprobs=dirty(clean.old_logprobs),
        ref_logprobs=dirty(clean.ref_logprobs),
    )
    a, b = make_estimator(name)(clean), make_estimator(name)(noisy)
    torch.testing.assert_close(a.advantages, b.advantages, equal_nan=False)
    torch.testing.assert_close(a.returns, b.returns)
    assert torch.all(a.advantages[off] == 0)


@pytest.mark.parametrize("name", ALL)
def test_padding_tokens_appended_to_every_rollout_change_nothing(name: str) -> None:
    inputs = random_batch(prompts=5, n=3, n_domains=2, t_len=4, seed=2)
    b = inputs.rewards.shape[0]

    def pad(x: torch.Tensor | None, fill: float) -> torch.Tensor | None:
        return None if x is None else torch.cat([x, torch.full((b, 3), fill)], dim=1)

    padded = _with(
        inputs,
        response_mask=pad(inputs.response_mask, 0.0),
        values=pad(inputs.values, 7.0),
        old_logprobs=pad(inputs.old_logprobs, -3.0),
        ref_logprobs=pad(inputs.ref_logprobs, 4.0),
    )
    a, p = make_estimator(name)(inputs), make_estimator(name)(padded)
    torch.testing.assert_close(p.advantages[:, :4], a.advantages)
    assert torch.all(p.advantages[:, 4:] == 0)


# control:shuffle places its values by a random permutation of the rollouts, by design.
@pytest.mark.parametrize("name", [n for n in ALL if n != "control:shuffle"])
def test_permuting_prompts_permutes_the_output(name: str) -> None:
    inputs = random_batch(prompts=8, n=3, n_domains=3, t_len=5, seed=4)
    b = inputs.rewards.shape[0]
    prompt_order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    perm = (prompt_order[:, None] * 3 + torch.arange(3)).reshape(-1)  # keeps rollout order within a prompt
    new_ids = torch.randperm(1000, generator=torch.Generator().manual_seed(1))[:8]  # relabel the groups too
    permuted = AdvantageInputs(
        rewards=inputs.rewards[perm],
        response_mask=inputs.response_mask[perm],
        group_ids=new_ids[inputs.group_ids[perm]],
        domains=inputs.domains[perm],
        domain_names=inputs.domain_names,
        values=inputs.values[perm],
        baseline_rewards=inputs.baseline_rewards[perm],
        old_logprobs=inputs.old_logprobs[perm],
        ref_logprobs=inputs.ref_logprobs[perm],
    )
    a, p = make_estimator(name)(inputs), make_estimator(name)(permuted)
    assert p.advantages.shape == (b, 5)
    torch.testing.assert_close(p.advantages, a.advantages[perm], atol=1e-5, rtol=1e-5)
    assert p.diagnostics.keys() == a.diagnostics.keys()
    for key in a.diagnostics:
        assert p.diagnostics[key] == pytest.approx(a.diagnostics[key], rel=1e-6, abs=1e-9)


EDGE_CASES = {
    "all_zero": ([[0.0, 0.0, 0.0]] * 4, [0, 0, 1, 1]),
    "all_equal": ([[0.7, 0.7, 0.7]] * 4, [0, 1, 1, 1]),
    "single_question_domain": ([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], [0, 1, 1]),
    "empty_domain": ([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], [0, 2]),
    "negative_rewards": ([[-1.0, -2.0, 0.0], [-1.0, -1.0, -3.0]], [0, 1]),
    "huge_rewards": ([[1e6, 0.0, 1e6], [3e5, 1e6, 0.0]], [0, 0]),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("name", ALL)
def test_edge_cases_never_give_nan_or_inf(name: str, case: str) -> None:
    groups, domains = EDGE_CASES[case]
    inputs = full_inputs(batch(groups, domains=domains, domain_names=("a", "b", "c"), t_len=4, lengths=[4, 3, 1] * len(groups)))
    out = make_estimator(name)(inputs)
    assert torch.isfinite(out.advantages).all() and torch.isfinite(out.returns).all()
    assert all(math.isfinite(v) for v in out.diagnostics.values())
    if case in ("all_zero", "all_equal") and name not in ("ppo", "remax", "reinforce_pp"):
        assert torch.all(out.advantages == 0)


@pytest.mark.parametrize("name", ALL)
def test_an_empty_batch_gives_empty_outputs(name: str) -> None:
    empty = AdvantageInputs(
        rewards=torch.zeros(0), response_mask=torch.zeros(0, 4), group_ids=torch.zeros(0, dtype=torch.int64),
        domains=torch.zeros(0, dtype=torch.int64), domain_names=("a",), values=torch.zeros(0, 4),
        baseline_rewards=torch.zeros(0), old_logprobs=torch.zeros(0, 4), ref_logprobs=torch.zeros(0, 4),
    )
    out = make_estimator(name)(empty)
    assert out.advantages.shape == (0, 4)
