"""Aggregates over suites (rliable): IQM, probability of improvement, performance profiles, against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from rlbench_med.reports.across_suites import (
    iqm,
    iqm_over_suites,
    probability_of_improvement,
    run_score_distribution,
)


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    # 8 runs: the 2 lowest and 2 highest are trimmed
    assert float(iqm(np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 1.0]))) == pytest.approx((0.2 + 0.3 + 0.4 + 0.5) / 4)


def test_iqm_interval_resamples_runs_within_each_suite() -> None:
    rng = np.random.default_rng(0)
    per_suite = {"a": list(rng.normal(0.3, 0.05, 6)), "b": list(rng.normal(0.7, 0.05, 6))}
    agg = iqm_over_suites(per_suite, n_boot=3000)
    assert agg.value == pytest.approx(sps.trim_mean(per_suite["a"] + per_suite["b"], 0.25))
    assert agg.low < agg.value < agg.high
    # an unstratified bootstrap could draw all twelve runs from one suite; within suites the pooled IQM
    # stays between the suites' levels, so its interval is far narrower than the spread of the runs
    assert agg.high - agg.low < 0.2
    one_seed = iqm_over_suites({"a": [0.3], "b": [0.6]})
    assert np.isnan(one_seed.low) and one_seed.text() == "0.450"


def test_probability_of_improvement_is_mann_whitney_averaged_over_suites() -> None:
    x = {"a": [0.5, 0.6, 0.7], "b": [0.2, 0.4]}
    y = {"a": [0.55, 0.6], "b": [0.1, 0.3, 0.4], "c": [0.9]}
    expected = np.mean([sps.mannwhitneyu(x[s], y[s]).statistic / (len(x[s]) * len(y[s])) for s in ("a", "b")])
    agg = probability_of_improvement(x, y, n_boot=500)
    assert agg is not None and agg.value == pytest.approx(expected)
    assert 0 <= agg.low <= agg.value <= agg.high <= 1
    assert probability_of_improvement({"a": [0.1]}, {"b": [0.2]}) is None


def test_performance_profile_is_the_share_of_runs_above_each_threshold_averaged_over_suites() -> None:
    taus = np.array([0.0, 0.35, 0.65])
    point, low, high = run_score_distribution({"a": [0.3, 0.5], "b": [0.7, 0.8, 0.9, 0.2]}, taus, n_boot=200)
    # tau 0.35: suite a 1/2, suite b 3/4 -> 0.625; tau 0.65: 0 and 3/4 -> 0.375
    assert point == pytest.approx([1.0, 0.625, 0.375])
    assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)
