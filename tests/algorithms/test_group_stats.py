"""The shared group statistics and masked whitening against plain Python loops."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbench_med.algorithms.group_stats import group_stats, last_token_rewards, masked_whiten


def loop_group_stats(values: list[float], ids: list[int]) -> dict[int, tuple[int, float, float]]:
    """id -> (count, mean, unbiased std; 0 for a single value), by explicit loops."""
    out: dict[int, tuple[int, float, float]] = {}
    for gid in sorted(set(ids)):
        xs = [v for v, i in zip(values, ids) if i == gid]
        mean = sum(xs) / len(xs)
        var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
        out[gid] = (len(xs), mean, math.sqrt(var))
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
        count, mean, std = expected[gid]
        assert int(stats.counts[q]) == count
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
