"""The controls: no signal (zero), no information (shuffle), the wrong sign (negate)."""

from __future__ import annotations

import numpy as np
import torch

from rlbench_med.algorithms import is_control, make_estimator
from rlbench_med.typed_config import parse_spec
from tests.algorithms import oracles
from tests.algorithms.helpers import batch, random_batch


def _per_rollout(adv: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The one value each rollout carries on its response tokens (every token holds the same)."""
    rows = []
    for a, m in zip(adv.double().numpy(), mask.numpy() != 0):
        assert np.all(a[m] == a[m][0]) and np.all(a[~m] == 0)
        rows.append(a[m][0])
    return np.array(rows)


def test_control_names_parse_as_names_with_options_after_the_last_colon() -> None:
    assert parse_spec("control:zero") == ("control:zero", {})
    assert parse_spec("control:shuffle:seed=3") == ("control:shuffle", {"seed": "3"})
    assert parse_spec("drpo:k_max=3,kl_damping=false") == ("drpo", {"k_max": "3", "kl_damping": "false"})
    assert make_estimator("control:shuffle:seed=3").config.seed == 3
    assert is_control("control:negate") and not is_control("grpo")


def test_zero_gives_zero_everywhere() -> None:
    inputs = random_batch(prompts=5, n=4, n_domains=2, t_len=6, seed=1)
    out = make_estimator("control:zero")(inputs)
    assert out.advantages.shape == inputs.response_mask.shape and not out.advantages.any() and not out.returns.any()


def test_negate_is_grpo_hand_worked_with_the_sign_flipped() -> None:
    # group 1: rewards 1, 0 -> mean 0.5, unbiased std sqrt(0.5), magnitude 1;
    # GRPO (1 - 0.5) / (sqrt(0.5) + 1e-6 * 1) and its negative; group 2 has no spread: 0
    inputs = batch([[1.0, 0.0], [0.5, 0.5]], t_len=2, lengths=[2, 1, 2, 2])
    adv = make_estimator("control:negate")(inputs).advantages
    a = 0.5 / (0.5**0.5 + 1e-6)
    expected = torch.tensor([[-a, -a], [a, 0.0], [0.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


def test_negate_equals_minus_the_grpo_loop_version_on_random_batches() -> None:
    for seed in range(5):
        inputs = random_batch(prompts=6, n=4, n_domains=3, t_len=5, seed=seed)
        adv = make_estimator("control:negate")(inputs).advantages
        expected, _ = oracles.grpo(oracles.Plain.of(inputs))
        np.testing.assert_allclose(adv.double().numpy(), -expected, atol=1e-6)


def test_shuffle_permutes_grpos_values_across_the_batch_and_breaks_their_link_to_the_rewards() -> None:
    inputs = random_batch(prompts=16, n=8, n_domains=3, t_len=5, seed=3, levels=5)
    est = make_estimator("control:shuffle")
    grpo, _ = oracles.grpo(oracles.Plain.of(inputs))
    grpo_values = _per_rollout(torch.from_numpy(grpo), inputs.response_mask)
    first = _per_rollout(est(inputs).advantages, inputs.response_mask)
    second = _per_rollout(est(inputs).advantages, inputs.response_mask)
    # the same magnitudes (the multiset of GRPO's per-rollout values) ...
    np.testing.assert_allclose(np.sort(first), np.sort(grpo_values), atol=1e-6)
    np.testing.assert_allclose(np.sort(second), np.sort(grpo_values), atol=1e-6)
    # ... placed elsewhere, differently at each call: no longer GRPO's (which tracks the rewards)
    assert not np.allclose(first, grpo_values) and not np.allclose(first, second)
    rewards = inputs.rewards.double().numpy()
    assert np.corrcoef(grpo_values, rewards)[0, 1] > 0.5
    assert abs(np.corrcoef(first, rewards)[0, 1]) < 0.3


def test_shuffle_is_seeded_and_resumes_from_its_state() -> None:
    inputs = random_batch(prompts=8, n=4, n_domains=2, t_len=3, seed=0)
    a, b = make_estimator("control:shuffle"), make_estimator("control:shuffle")
    assert torch.equal(a(inputs).advantages, b(inputs).advantages)
    other = make_estimator("control:shuffle:seed=1")(inputs).advantages
    assert not torch.equal(other, make_estimator("control:shuffle")(inputs).advantages)
    resumed = make_estimator("control:shuffle")
    resumed.load_state_dict(a.state_dict())
    assert torch.equal(resumed(inputs).advantages, a(inputs).advantages)
