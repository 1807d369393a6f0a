"""The testing plan: families, Holm within a family, the gate, and intervals that agree with the stars."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from rlbench_med.reports.stats import PAIRED_T, Comparison, Estimate, EvaluationSet, compare
from rlbench_med.reports.testing import (
    EXPLORATORY,
    MIN_TESTED_RECORDS,
    PRIMARY,
    REFERENCE,
    SECONDARY,
    apply_plan,
    best_floor,
    holm_adjusted,
    holm_family,
)
from tests.reports.test_stats import make_records


def test_holm_adjusted_p_values_by_hand() -> None:
    # m = 4: sorted 0.01 -> 4 x 0.01 = 0.04; 0.016 -> 3 x 0.016 = 0.048; 0.03 -> 2 x 0.03 = 0.06;
    # 0.04 -> 1 x 0.04, raised to the running maximum 0.06. Rejected at 5%: 0.01 and 0.016 only, as the
    # step-down procedure stops at 0.03 > 0.05 / 2 though 0.04 <= 0.05 / 1.
    assert holm_adjusted([0.03, 0.01, 0.04, 0.016]) == pytest.approx([0.06, 0.04, 0.06, 0.048])
    assert holm_adjusted([0.02]) == [0.02]
    assert holm_adjusted([0.5, float("nan")]) == [1.0, 1.0]


def _cell(diff: float, se: float, df: float = 3.0, domain: str = "overall") -> Comparison:
    est = Estimate(diff, se, df, 4, PAIRED_T)
    low, high = est.interval(0.05)
    return Comparison("a", "b", domain, "f1_strict", diff, low, high, est.p_value(), 4, PAIRED_T, estimate=est)


def test_a_tested_interval_excludes_zero_exactly_when_the_cell_is_starred() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        cells = [_cell(float(rng.normal(0, 0.05)), float(rng.uniform(0.005, 0.03)), float(rng.uniform(2, 40)))
                 for _ in range(int(rng.integers(1, 8)))]
        for alternative in ("two-sided", "greater"):
            for c in holm_family(cells, PRIMARY, alternative):
                excludes = c.low > 0 if alternative == "greater" else (c.low > 0 or c.high < 0)
                assert excludes == c.significant
                assert c.p_adjusted >= c.p_value and c.family == PRIMARY


def test_a_family_of_one_keeps_the_95_percent_interval_and_a_larger_family_widens_it() -> None:
    alone = holm_family([_cell(0.05, 0.02)], PRIMARY)[0]
    half = sps.t.ppf(0.975, 3) * 0.02
    assert (alone.low, alone.high) == pytest.approx((0.05 - half, 0.05 + half)) and alone.level == pytest.approx(0.95)
    # the smaller of two p-values is tested at 0.05 / 2 (Bonferroni's level at Holm's first step)
    pair = holm_family([_cell(0.05, 0.02), _cell(0.01, 0.02)], PRIMARY)
    half = sps.t.ppf(1 - 0.025 / 2, 3) * 0.02
    assert (pair[0].low, pair[0].high) == pytest.approx((0.05 - half, 0.05 + half))
    assert pair[0].p_adjusted == pytest.approx(2 * pair[0].p_value)


def _runs() -> dict:
    datasets = (("d1", "A"), ("d1", "B"), ("d2", "C"))
    runs = {}
    for s in range(4):
        runs[("drpo", s)] = make_records(10 + s, 0.95, n=30, datasets=datasets)
        runs[("grpo", s)] = make_records(20 + s, 0.45, n=30, datasets=datasets)
        runs[("rloo", s)] = make_records(30 + s, 0.44, n=30, datasets=datasets)
    runs[("base", 0)] = make_records(5, 0.4, n=30, datasets=datasets)
    runs[("floor:all", 0)] = [{**r, "predicted": ["x", "y", "z"]} for r in make_records(0, 1.0, n=30, datasets=datasets)]
    runs[("floor:majority", 0)] = [{**r, "predicted": ["x"]} for r in make_records(0, 1.0, n=30, datasets=datasets)]
    return runs


def _planned(d2_records: int = 30) -> list[Comparison]:
    runs = _runs()
    if d2_records < 30:  # a tiny domain: keep d2's first records only
        runs = {k: [r for r in v if r["dataset"] != "C"] + [r for r in v if r["dataset"] == "C"][:d2_records]
                for k, v in runs.items()}
    evalset = EvaluationSet.from_runs(runs, n_boot=300)
    comps = []
    for algo in ("drpo", "rloo"):
        comps += compare(evalset, algo, range(4), "grpo", range(4))
        comps += compare(evalset, algo, range(4), "base", [0], constant_baseline=True)
        comps += compare(evalset, algo, range(4), "floor:all", [0], constant_baseline=True)
        comps += compare(evalset, algo, range(4), "floor:majority", [0], constant_baseline=True)
    floor = best_floor(comps, "f1_strict", {"floor:all": 0.0, "floor:majority": 0.2})
    assert floor == "floor:majority"
    return apply_plan(comps, "f1_strict", floor)


def test_the_plan_gives_each_cell_its_family() -> None:
    planned = _planned()
    by = {(c.algo, c.baseline, c.domain, c.metric): c for c in planned}
    primary = [c for c in planned if c.family == PRIMARY]
    assert {(c.algo, c.baseline, c.domain, c.metric) for c in primary} == {
        ("drpo", "grpo", "overall", "f1_strict"), ("rloo", "grpo", "overall", "f1_strict")}
    # Holm across the two algorithms facing grpo
    raw = [c.estimate.p_value() for c in primary]
    assert [c.p_adjusted for c in primary] == pytest.approx(holm_adjusted(raw))
    reference = {(c.algo, c.baseline) for c in planned if c.family == REFERENCE}
    assert reference == {(a, b) for a in ("drpo", "rloo") for b in ("base", "floor:majority")}
    assert all(c.alternative == "greater" and c.metric == "f1_strict" and c.domain == "overall"
               for c in planned if c.family == REFERENCE)
    assert by[("drpo", "floor:all", "overall", "f1_strict")].family == EXPLORATORY  # not the best floor
    assert by[("drpo", "grpo", "overall", "acc")].family == EXPLORATORY
    for c in planned:
        if c.family == EXPLORATORY:
            assert not c.significant and math.isnan(c.p_adjusted) and c.level == pytest.approx(0.95)
    # drpo is far better than grpo: its primary test opens the gate, and its domains are tested (Holm)
    drpo = by[("drpo", "grpo", "overall", "f1_strict")]
    assert drpo.significant
    domains = [c for c in planned if (c.algo, c.baseline, c.metric) == ("drpo", "grpo", "f1_strict")
               and c.domain != "overall"]
    assert {c.family for c in domains} == {SECONDARY}
    assert [c.p_adjusted for c in domains] == pytest.approx(holm_adjusted([c.estimate.p_value() for c in domains]))
    # rloo is no better than grpo: its gate stays closed, no domain is tested
    rloo = by[("rloo", "grpo", "overall", "f1_strict")]
    assert not rloo.significant
    for c in planned:
        if (c.algo, c.baseline, c.metric) == ("rloo", "grpo", "f1_strict") and c.domain != "overall":
            assert c.family == SECONDARY and math.isnan(c.p_adjusted) and not c.significant


def test_a_tiny_domain_gets_an_interval_and_no_test() -> None:
    planned = _planned(d2_records=MIN_TESTED_RECORDS - 5)
    d2 = next(c for c in planned if (c.algo, c.baseline, c.domain, c.metric) == ("drpo", "grpo", "d2", "f1_strict"))
    d1 = next(c for c in planned if (c.algo, c.baseline, c.domain, c.metric) == ("drpo", "grpo", "d1", "f1_strict"))
    assert d2.n_samples < MIN_TESTED_RECORDS and math.isnan(d2.p_adjusted) and not d2.significant
    assert d2.low > 0  # its interval still says where the difference lies
    assert d1.significant and d1.p_adjusted == pytest.approx(d1.estimate.p_value())  # a family of one
