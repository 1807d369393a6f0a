"""The power and MDE of the report's test: against the noncentral t, simulations of the test as run, and formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rlbench_med.reports.stats import estimate
from rlbench_med.suites.metrics import compute_metrics
from rlbench_med.suites.power import (
    EVALUATION_ONLY,
    GREATER,
    SEEDS_AND_SHARED,
    difference_sd,
    evaluation_mde,
    mde_rows,
    minimum_detectable_effect,
    record_sd,
    seed_test_mde,
    seed_test_power,
    standard_error,
)

Z_SUM = 1.959964 + 0.841621  # z_{0.975} + z_{0.8}


@pytest.mark.parametrize("seeds", [2, 4, 8])
def test_without_evaluation_noise_the_power_is_the_paired_t_tests(seeds: int) -> None:
    # Independent: the paired t-test's power from the noncentral t distribution.
    crit = stats.t.ppf(0.975, seeds - 1)
    for delta in (0.02, 0.05, 0.1):
        nc = delta * math.sqrt(seeds) / 0.05
        expected = stats.nct.sf(crit, seeds - 1, nc) + stats.nct.sf(crit, seeds - 1, -nc)
        assert seed_test_power(delta, 0.05, seeds) == pytest.approx(expected, abs=2e-5)


def _simulated_power(delta: float, seeds: int, train_sd: float, shared_sd: float, eval_sd: float,
                     alternative: str = "two-sided", sims: int = 4000, replicates: int = 400) -> float:
    """Rejection rate of the report's test (``reports.stats.estimate``) on simulated seed differences
    ``d_s = delta + G + tau_s + eps_s`` whose bootstrap replicates carry the shared part ``G`` (sd
    ``shared_sd``) and the per-seed part ``eps_s`` (sd ``eval_sd``) of the evaluation noise."""
    rng = np.random.default_rng(seeds)
    rejected = 0
    for _ in range(sims):
        d = delta + shared_sd * rng.normal() + train_sd * rng.normal(size=seeds) + eval_sd * rng.normal(size=seeds)
        boot = (d[:, None] + shared_sd * rng.normal(size=(1, replicates))
                + eval_sd * rng.normal(size=(seeds, replicates)))
        rejected += estimate(d, boot).p_value(alternative) <= 0.05
    return rejected / sims


@pytest.mark.parametrize(("seeds", "train_sd", "shared_sd", "eval_sd"),
                         [(2, 0.03, 0.02, 0.02), (4, 0.02, 0.03, 0.01), (8, 0.03, 0.01, 0.03)])
def test_the_mde_has_80_percent_power_in_a_simulation_of_the_test_as_run(seeds, train_sd, shared_sd, eval_sd) -> None:
    seed_sd = math.hypot(train_sd, eval_sd)  # one seed's spread: training and unshared evaluation noise
    mde = seed_test_mde(seed_sd, seeds, shared_sd=shared_sd, eval_sd=eval_sd)
    # 4,000 experiments: the rate's standard error is 0.006; 400 replicates estimate c and e to a few %.
    assert _simulated_power(mde, seeds, train_sd, shared_sd, eval_sd) == pytest.approx(0.8, abs=0.03)
    assert _simulated_power(0.0, seeds, train_sd, shared_sd, eval_sd) == pytest.approx(0.05, abs=0.015)


def test_a_one_sided_mde_is_smaller_and_keeps_its_power() -> None:
    two = seed_test_mde(0.04, 4, shared_sd=0.02, eval_sd=0.02)
    one = seed_test_mde(0.04, 4, shared_sd=0.02, eval_sd=0.02, alternative=GREATER)
    assert one < two
    assert _simulated_power(one, 4, math.sqrt(0.04**2 - 0.02**2), 0.02, 0.02, GREATER) == pytest.approx(0.8, abs=0.03)


def test_standard_error_by_hand() -> None:
    # s^2 = 0.004 over 4 seeds, c = 0.001, e = 0.002: se^2 = 0.001 + 0.001; df = 3 (0.002 / 0.001)^2 = 12.
    se, df, floored = standard_error(0.004, 0.001, 0.002, 4)
    assert (float(se), float(df), bool(floored)) == pytest.approx((math.sqrt(0.002), 12.0, False))
    # A spread below the unshared evaluation noise is replaced by it; tied seeds give infinite df.
    se, df, floored = standard_error(0.001, 0.001, 0.002, 4)
    assert float(se) == pytest.approx(math.sqrt(0.002 / 4 + 0.001)) and bool(floored)
    assert float(df) == pytest.approx(3 * (0.0015 / 0.00025) ** 2)
    assert float(standard_error(0.0, 0.0, 0.002, 2)[1]) == math.inf


def test_many_seeds_approach_the_normal_formula() -> None:
    assert seed_test_mde(0.1, 400) == pytest.approx(Z_SUM * 0.1 / 20, rel=0.005)
    # The shared evaluation noise does not shrink with seeds: it bounds the MDE from below.
    assert seed_test_mde(0.1, 400, shared_sd=0.05) > Z_SUM * 0.05


def test_planning_mde_is_the_larger_of_all_shared_and_none_shared() -> None:
    effect = minimum_detectable_effect(100, 4, 0.03, 0.5)
    assert effect.method == SEEDS_AND_SHARED and effect.seeds == 4 and effect.n == 100
    assert effect.diff_sd == pytest.approx(math.sqrt(2 * (0.03**2 + 0.5**2 / 100)), rel=1e-12)
    train, evaluation = math.sqrt(2) * 0.03, math.sqrt(2) * 0.05
    # all shared: the test at this MDE has 80% power in simulation; none shared: at least 80%.
    assert _simulated_power(effect.mde, 4, train, evaluation, 0.0) == pytest.approx(0.8, abs=0.03)
    assert _simulated_power(effect.mde, 4, train, 0.0, evaluation) >= 0.8 - 0.02


def test_one_seed_measures_evaluation_noise_only() -> None:
    effect = minimum_detectable_effect(100, 1, seed_sd=0.2, record_sd=0.5)
    # (z_.975 + z_.8) * sqrt(2) * 0.5 / sqrt(100); the seed sd cannot enter with one seed.
    assert effect.mde == pytest.approx(Z_SUM * math.sqrt(2) * 0.05, rel=1e-5)
    assert effect.method == EVALUATION_ONLY
    assert evaluation_mde(0.05) == pytest.approx(Z_SUM * 0.05, rel=1e-5)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="2 seeds"):
        seed_test_power(0.1, 0.1, 1)
    with pytest.raises(ValueError, match="cannot exceed"):
        seed_test_power(0.1, 0.01, 4, eval_sd=0.02)
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
    # variance given the class sizes (the bootstrap keeps them) is (s(1-s)/n_pos + p(1-p)/n_neg) / 4.
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
        assert row["method"] == (EVALUATION_ONLY if row["seeds"] == 1 else SEEDS_AND_SHARED)
