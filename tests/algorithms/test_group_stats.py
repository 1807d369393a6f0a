"""The shared group statistics and masked whitening against plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbench_med.algorithms.group_stats import group_stats, last_token_rewards, masked_whiten


def loop_group_stats(values: list[float], ids: list[int]) -> dict[int, tuple[int, float, float, float]]:
    """id -> (count, mean, unbiased std (0 for a single value), max |value|), by explicit loops."""
    out: dict[int, tuple[int, float, float, float]] = {}
    for gid in sorted(set(ids)):
        xs = [v for v, i in zip(values, ids) if i == gid]
        mean = sum(xs) / len(xs)
        var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
        out[gid] = (len(xs), mean, math.sqrt(var), max(abs(x) for x in xs))
    return out


grouped = st.lists(
    st.tuples(st.integers(min_value=-5, max_value=40), st.floats(min_value=-10, max_value=10, allow_nan=False, width=32)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(grouped)
def test_group_stats_matches_a_python_loop_on_random_grouped_batches(pairs: list[tuple[int, float]]) -> None:
    ids = [p[0] for p in pairs]
    values = [p[1] for p in pairs]
    stats = group_stats(torch.tensor(values, dtype=torch.float32), torch.tensor(ids, dtype=torch.int64))
    expected = loop_group_stats([float(torch.tensor(v, dtype=torch.float32)) for v in values], ids)
    assert stats.ids.tolist() == sorted(expected)
    for q, gid in enumerate(stats.ids.tolist()):
        count, mean, std, abs_max = expected[gid]
        assert int(stats.counts[q]) == count
        assert float(stats.abs_max[q]) == abs_max
        assert math.isclose(float(stats.mean[q]), mean, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(float(stats.std[q]), std, rel_tol=1e-9, abs_tol=1e-9)
    assert [int(stats.ids[i]) for i in stats.index.tolist()] == ids


def test_identical_values_give_exactly_zero_std() -> None:
    stats = group_stats(torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7]), torch.tensor([3, 3, 3, 9, 9]))
    assert stats.std.tolist() == [0.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=7), st.integers(min_value=0, max_value=10_000))
def test_masked_whiten_matches_a_loop_over_masked_tokens(b: int, t: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, generator=gen, dtype=torch.float64)
    mask = (torch.rand(b, t, generator=gen) < 0.6).double()
    out = masked_whiten(x, mask)
    on = [float(x[i, j]) for i in range(b) for j in range(t) if mask[i, j]]
    n = len(on)
    mean = sum(on) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in on) / (n - 1) if n > 1 else 0.0
    magnitude = max((abs(v) for v in on), default=0.0)  # the eps is relative: 1e-8 x max |x|^2
    for i in range(b):
        for j in range(t):
            expected = (float(x[i, j]) - mean) / math.sqrt(var + 1e-8 * magnitude**2) if mask[i, j] else 0.0
            assert math.isclose(float(out[i, j]), expected, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("scale", [1e-20, 1e20, 1e30, 1e38])
def test_masked_whiten_of_float32_values_matches_the_loop_up_to_float32s_limit(scale: float) -> None:
    # the variance of 1e20-sized values overflows float32 (it used to whiten everything to 0)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 5, generator=gen, dtype=torch.float64) * 2 - 1).mul(scale).float()
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] + [0.0] * 4])
    out = masked_whiten(x, mask)
    assert out.dtype == torch.float32
    on = [float(x[i, j]) for i in range(3) for j in range(5) if mask[i, j]]
    mean = sum(on) / len(on)
    var = sum((v - mean) ** 2 for v in on) / (len(on) - 1)
    den = math.sqrt(var + 1e-8 * max(abs(v) for v in on) ** 2)
    expected = [[(float(x[i, j]) - mean) / den if mask[i, j] else 0.0 for j in range(5)] for i in range(3)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float32))


def test_masked_whiten_ignores_nan_off_the_mask() -> None:
    x = torch.tensor([[1.0, 2.0, float("nan")], [3.0, float("inf"), 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = masked_whiten(x, mask)
    # masked tokens 1, 2, 3: mean 2, unbiased var 1, max |x| = 3
    expected = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]) / math.sqrt(1 + 1e-8 * 3**2)
    torch.testing.assert_close(out, expected)


def test_last_token_rewards_puts_the_reward_on_the_last_response_token() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    out = last_token_rewards(torch.tensor([2.0, -1.0, 5.0]), mask)
    assert out.tolist() == [[0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]
