"""Hand-worked small cases for every non-DRPO estimator (expected numbers written out)."""

from __future__ import annotations

import math

import pytest
import torch

from rlbench_med.algorithms import make_estimator
from tests.algorithms.helpers import batch

# Prompt groups: A = [1, 0, 0, 1], B = [2, 2], C = [0, 3].
GROUPS = [[1.0, 0.0, 0.0, 1.0], [2.0, 2.0], [0.0, 3.0]]


def first_token(out: torch.Tensor) -> list[float]:
    return out[:, 0].tolist()


def test_grpo_hand_worked() -> None:
    # eps is relative to the group's max |R| (M_q): std_q + 1e-6 M_q.
    # A: mean 0.5, unbiased std sqrt(1/3) = 0.5773503, M = 1 -> +-0.5 / (0.5773503 + 1e-6) = +-0.8660239
    # B: std 0 -> 0.   C: mean 1.5, std sqrt(4.5) = 2.1213203, M = 3 -> +-1.5 / 2.1213233 = +-0.7071058
    out = make_estimator("grpo")(batch(GROUPS))
    expected = [0.8660239, -0.8660239, -0.8660239, 0.8660239, 0.0, 0.0, -0.7071058, 0.7071058]
    assert first_token(out.advantages) == pytest.approx(expected, abs=1e-6)
    assert out.diagnostics["grpo/zero_std_frac"] == pytest.approx(1 / 3)


def test_dr_grpo_drops_the_std() -> None:
    out = make_estimator("grpo:std_norm=false")(batch(GROUPS))
    assert first_token(out.advantages) == pytest.approx([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, -1.5, 1.5], abs=1e-6)


def test_rloo_hand_worked() -> None:
    # A: 1 - (0 + 0 + 1) / 3 = 2/3 ; 0 - (1 + 0 + 1) / 3 = -2/3.  C: 0 - 3 = -3 ; 3 - 0 = 3.
    out = make_estimator("rloo")(batch(GROUPS))
    assert first_token(out.advantages) == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0.0, 0.0, -3.0, 3.0], abs=1e-6)


def test_remax_subtracts_the_greedy_reward() -> None:
    inputs = batch([[1.0, 0.5]], baseline_rewards=torch.tensor([0.25, 0.5]))
    out = make_estimator("remax")(inputs)
    assert out.advantages.flatten().tolist() == pytest.approx([0.75] * 3 + [0.0] * 3)


def test_reinforce_pp_whitens_returns_over_masked_tokens() -> None:
    # gamma = 1: G = [[1, 1, 1], [0, 0, -]]; masked tokens 1, 1, 1, 0, 0: mean 0.6, unbiased var 0.3,
    # max |G| = 1 -> (1 - 0.6) / sqrt(0.3 + 1e-8 * 1^2) = 0.7302967, (0 - 0.6) / sqrt(0.3 + 1e-8) = -1.0954451
    inputs = batch([[1.0, 0.0]], t_len=3, lengths=[3, 2])
    out = make_estimator("reinforce_pp")(inputs)
    assert out.advantages.tolist()[0] == pytest.approx([0.7302967] * 3, abs=1e-6)
    assert out.advantages.tolist()[1] == pytest.approx([-1.0954451, -1.0954451, 0.0], abs=1e-6)
    assert out.returns.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_reinforce_pp_discounts_with_gamma() -> None:
    # R = 1 on the last of 3 tokens, gamma 0.5: G = [0.25, 0.5, 1]
    out = make_estimator("reinforce_pp:gamma=0.5")(batch([[1.0, 0.0]], t_len=3))
    assert out.returns.tolist() == [[0.25, 0.5, 1.0], [0.0, 0.0, 0.0]]


def test_reinforce_pp_uses_token_rewards_when_given() -> None:
    token_rewards = torch.tensor([[0.5, 0.0, 1.0], [0.0, -1.0, 9.0]])
    inputs = batch([[7.0, 7.0]], t_len=3, lengths=[3, 2], token_rewards=token_rewards)
    out = make_estimator("reinforce_pp")(inputs)
    # row 0: G = [1.5, 1, 1]; row 1 (2 tokens, the 9 is padding): G = [-1, -1, 0]
    assert out.returns.tolist() == [[1.5, 1.0, 1.0], [-1.0, -1.0, 0.0]]


def test_reinforce_pp_baseline_hand_worked() -> None:
    # groups [1, 0] and [3, 3]: R - mean = 0.5, -0.5, 0, 0 on 2 tokens each; mean 0, unbiased var 1/7,
    # max |R - mean| = 0.5 (the whitening eps is 1e-8 x max^2)
    out = make_estimator("reinforce_pp_baseline")(batch([[1.0, 0.0], [3.0, 3.0]], t_len=2))
    a = 0.5 / math.sqrt(1 / 7 + 1e-8 * 0.5**2)
    assert out.advantages.flatten().tolist() == pytest.approx([a, a, -a, -a, 0.0, 0.0, 0.0, 0.0], abs=1e-6)


def test_ppo_gae_hand_worked_gamma_lambda_one() -> None:
    # V = [0.5, 0.2, 0.4], R = 1 on the last token: deltas [-0.3, 0.2, 0.6] -> A = [0.5, 0.8, 0.6], returns = 1
    inputs = batch([[1.0]], t_len=3, values=torch.tensor([[0.5, 0.2, 0.4]]))
    out = make_estimator("ppo:whiten=false")(inputs)
    assert out.advantages.tolist()[0] == pytest.approx([0.5, 0.8, 0.6])
    assert out.returns.tolist()[0] == pytest.approx([1.0, 1.0, 1.0])


def test_ppo_gae_hand_worked_discounted() -> None:
    # gamma 0.9, lambda 0.5: deltas t2 = 1 - 0.4 = 0.6; t1 = 0.9 * 0.4 - 0.2 = 0.16; t0 = 0.9 * 0.2 - 0.5 = -0.32
    # A2 = 0.6; A1 = 0.16 + 0.45 * 0.6 = 0.43; A0 = -0.32 + 0.45 * 0.43 = -0.1265; returns = A + V
    inputs = batch([[1.0]], t_len=3, values=torch.tensor([[0.5, 0.2, 0.4]]))
    out = make_estimator("ppo:gamma=0.9,lam=0.5,whiten=false")(inputs)
    assert out.advantages.tolist()[0] == pytest.approx([-0.1265, 0.43, 0.6])
    assert out.returns.tolist()[0] == pytest.approx([0.3735, 0.63, 1.0])


def test_ppo_value_past_the_last_response_token_is_zero() -> None:
    # 2 response tokens of 3: V = [0.5, 0.2, (pad 100)], R = 1 on token 1: A = [1 - 0.5, 1 - 0.2, 0]
    inputs = batch([[1.0]], t_len=3, lengths=[2], values=torch.tensor([[0.5, 0.2, 100.0]]))
    out = make_estimator("ppo:whiten=false")(inputs)
    assert out.advantages.tolist()[0] == pytest.approx([0.5, 0.8, 0.0])


def test_ppo_whitens_by_default() -> None:
    inputs = batch([[1.0, 0.0]], t_len=3, values=torch.tensor([[0.5, 0.2, 0.4], [0.1, 0.1, 0.1]]))
    # raw GAE (gamma = lambda = 1): row 0 as above [0.5, 0.8, 0.6]; row 1 (R = 0, V = 0.1): deltas
    # [0, 0, -0.1] -> A = [-0.1, -0.1, -0.1]; whitened over the 6 tokens with the unbiased variance
    # and eps 1e-8 x max |A|^2 = 1e-8 x 0.8^2
    raw = torch.tensor([0.5, 0.8, 0.6, -0.1, -0.1, -0.1], dtype=torch.float64)
    expected = (raw - raw.mean()) / torch.sqrt(raw.var() + 1e-8 * 0.8**2)
    out = make_estimator("ppo")(inputs).advantages.flatten().double()
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
