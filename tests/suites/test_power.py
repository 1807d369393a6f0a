"""Minimum detectable effect: checked against simulated paired t-tests and hand-worked formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rlbench_med.suites.metrics import compute_metrics
from rlbench_med.suites.power import (
    EVALUATION_ONLY,
    PAIRED_T,
    difference_sd,
    mde_rows,
    minimum_detectable_effect,
    paired_t_mde,
    record_sd,
)

Z_SUM = 1.959964 + 0.841621  # z_{0.975} + z_{0.8}


@pytest.mark.parametrize("seeds", [2, 4, 8])
def test_a_paired_t_test_at_the_mde_rejects_with_the_promised_power(seeds: int) -> None:
    diff_sd = 0.05
    mde = paired_t_mde(diff_sd, seeds)
    rng = np.random.default_rng(seeds)
    sims = 40_000
    p_true = stats.ttest_1samp(rng.normal(mde, diff_sd, size=(sims, seeds)), 0.0, axis=1).pvalue
    p_null = stats.ttest_1samp(rng.normal(0.0, diff_sd, size=(sims, seeds)), 0.0, axis=1).pvalue
    # 40,000 draws: the rates' standard errors are 0.002 (power) and 0.001 (level).
    assert abs((p_true < 0.05).mean() - 0.80) < 0.01
    assert abs((p_null < 0.05).mean() - 0.05) < 0.005


def test_many_seeds_approach_the_normal_formula() -> None:
    assert paired_t_mde(0.1, 400) == pytest.approx(Z_SUM * 0.1 / 20, rel=0.005)
    # Few seeds cost more than the normal formula says: t quantiles and the noncentral t.
    assert paired_t_mde(0.1, 4) > 1.5 * Z_SUM * 0.1 / 2


def test_difference_sd_and_the_four_seed_worked_example() -> None:
    # sqrt(2 * (0.03^2 + 0.5^2 / 100)) = sqrt(2 * 0.0034)
    assert difference_sd(100, 0.03, 0.5) == pytest.approx(math.sqrt(0.0068), rel=1e-12)
    effect = minimum_detectable_effect(100, 4, 0.03, 0.5)
    assert effect.method == PAIRED_T and effect.seeds == 4 and effect.n == 100
    assert effect.mde == pytest.approx(0.1755, abs=5e-4)


def test_one_seed_measures_evaluation_noise_only() -> None:
    effect = minimum_detectable_effect(100, 1, seed_sd=0.2, record_sd=0.5)
    # (z_.975 + z_.8) * sqrt(2) * 0.5 / sqrt(100); the seed sd cannot enter with one seed.
    assert effect.mde == pytest.approx(Z_SUM * math.sqrt(2) * 0.05, rel=1e-5)
    assert effect.method == EVALUATION_ONLY


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="2 seeds"):
        paired_t_mde(0.1, 1)
    with pytest.raises(ValueError, match="n"):
        difference_sd(0, 0.1, 0.1)
    with pytest.raises(ValueError, match=">= 1"):
        minimum_detectable_effect(10, 0, 0.1, 0.1)


def _binary_records(n_pos: int, n_neg: int, sens: float, spec: float) -> list[dict]:
    hits_pos, hits_neg = round(sens * n_pos), round(spec * n_neg)
    records = []
    for i in range(n_pos):
        records.append({"domain": "d", "dataset": "x", "labels": ["A"], "predicted": ["A" if i < hits_pos else "B"]})
    for i in range(n_neg):
        records.append({"domain": "d", "dataset": "x", "labels": ["B"], "predicted": ["B" if i < hits_neg else "A"]})
    return records


def test_record_sd_matches_the_binomial_variance_of_balanced_accuracy() -> None:
    records = _binary_records(200, 200, 0.7, 0.6)
    # Two classes, one-vs-rest: both classes' balanced accuracies equal (sens + spec) / 2, whose
    # variance is (s(1-s)/n_pos + p(1-p)/n_neg) / 4.
    expected_se = math.sqrt((0.7 * 0.3 / 200 + 0.6 * 0.4 / 200) / 4)
    sd, n = record_sd(records, "acc", draws=2000, seed=1)["d"]
    assert n == 400
    assert sd == pytest.approx(expected_se * math.sqrt(400), rel=0.06)


def test_mde_rows_cover_every_domain_metric_and_seed_count() -> None:
    records = _binary_records(30, 30, 0.8, 0.7) + [
        {**r, "domain": "e", "dataset": "y"} for r in _binary_records(20, 40, 0.6, 0.9)
    ]
    perfect = [{**r, "predicted": r["labels"]} for r in records]
    rows = mde_rows([perfect, records], ["acc", "f1"], [1, 4], seed_sd=0.02, draws=50)
    keys = {(r["domain"], r["metric"], r["seeds"]) for r in rows}
    assert keys == {(d, m, k) for d in ("d", "e", "overall") for m in ("acc", "f1") for k in (1, 4)}
    sizes = {r["domain"]: r["n"] for r in compute_metrics(records)}
    noisiest = {d: record_sd(records, "acc", draws=50)[d][0] for d in sizes}
    for row in rows:
        if row["metric"] == "acc":  # the perfect predictions have no evaluation noise: the noisier set is used
            assert row["record_sd"] == pytest.approx(noisiest[row["domain"]]) and row["record_sd"] > 0
        assert row["n"] == sizes[row["domain"]]
        expected = minimum_detectable_effect(row["n"], row["seeds"], 0.02, row["record_sd"])
        assert row["mde"] == pytest.approx(expected.mde)
        assert row["method"] == (EVALUATION_ONLY if row["seeds"] == 1 else PAIRED_T)
