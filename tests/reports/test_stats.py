"""Metrics under bootstrap weights, the intervals and Holm's correction, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score

from rlbench_med.reports.stats import (
    BOOTSTRAP,
    PAIRED_T,
    Comparison,
    EvaluationSet,
    compare,
    holm,
    mean_std,
    seed_interval,
)
from rlbench_med.suites import compute_metrics
from rlbench_med.suites.metrics import DatasetTruth, dataset_values

CLASSES = ["x", "y", "z"]


def make_records(seed: int, quality: float, n: int = 40, datasets=(("d1", "A"), ("d1", "B"), ("d2", "C"))):
    truth_rng = np.random.default_rng(99)
    rng = np.random.default_rng(seed)
    out = []
    for domain, dataset in datasets:
        for i in range(n):
            label = CLASSES[int(truth_rng.integers(3))]
            pred = label if rng.random() < quality else CLASSES[int(rng.integers(3))]
            out.append({"uid": f"{dataset}:{i:03d}", "domain": domain, "dataset": dataset, "labels": [label], "predicted": [pred]})
    return out


def _value(records, domain, metric):
    return next(r["value"] for r in compute_metrics(records) if r["domain"] == domain and r["metric"] == metric)


def _values(truth_labels, pred_labels, weights):
    recs = [{"labels": t, "predicted": p} for t, p in zip(truth_labels, pred_labels)]
    truth = DatasetTruth.from_records("d", "s", recs)
    return dataset_values(truth, truth.encode(recs), weights)


def test_unit_weights_match_sklearn_one_vs_rest() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    p = np.where(rng.random(50) < 0.6, y, rng.integers(0, 3, 50))
    v = _values([[str(a)] for a in y], [[str(b)] for b in p], np.ones((1, 50)))
    expected_acc = np.mean([balanced_accuracy_score(y == c, p == c) for c in range(3)])
    assert v["acc"][0] == pytest.approx(expected_acc)
    assert v["f1"][0] == pytest.approx(f1_score(y, p, average="macro", labels=[0, 1, 2]))
    assert v["exact"][0] == pytest.approx(np.mean(y == p))


def test_integer_weights_equal_duplicated_records_for_every_metric() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 30)
    p = np.where(rng.random(30) < 0.5, y, rng.integers(0, 3, 30))
    hedge = rng.random(30) < 0.3  # some answers name two labels
    pred = [[str(p[i])] + ([str((p[i] + 1) % 3)] if hedge[i] else []) for i in range(30)]
    w = rng.multinomial(30, np.full(30, 1 / 30))
    v = _values([[str(a)] for a in y], pred, w[None, :].astype(float))
    recs = [{"domain": "d", "dataset": "s", "labels": [str(y[i])], "predicted": pred[i]} for i in range(30) for _ in range(w[i])]
    rows = {r["metric"]: r["value"] for r in compute_metrics(recs) if r["domain"] == "d"}
    for metric in ("acc", "f1", "exact", "f1_strict", "labels"):
        assert v[metric][0] == pytest.approx(rows[metric]), metric


def test_identical_predictions_give_zero_difference_and_no_mark() -> None:
    runs = {("a", s): make_records(s, 0.6) for s in (0, 1)} | {("b", s): make_records(s, 0.6) for s in (0, 1)}
    for c in compare(EvaluationSet.from_runs(runs, n_boot=200), "a", [0, 1], "b", [0, 1]):
        assert (c.diff, c.low, c.high) == (0.0, 0.0, 0.0)
        assert not c.significant and c.p_value == 1.0


def test_point_estimate_is_difference_of_seed_means_of_suite_metrics() -> None:
    a = {s: make_records(10 + s, 0.9) for s in (0, 1, 2)}
    b = {s: make_records(20 + s, 0.4) for s in (0, 1, 2)}
    runs = {("a", s): r for s, r in a.items()} | {("b", s): r for s, r in b.items()}
    comps = {(c.domain, c.metric): c for c in compare(EvaluationSet.from_runs(runs, n_boot=300), "a", [0, 1, 2], "b", [0, 1, 2])}
    for key in [("d1", "f1"), ("d2", "acc"), ("overall", "f1"), ("overall", "f1_strict"), ("d1", "exact")]:
        expected = np.mean([_value(a[s], *key) for s in a]) - np.mean([_value(b[s], *key) for s in b])
        assert comps[key].diff == pytest.approx(expected)
        assert comps[key].low > 0  # 0.9 vs 0.4 accuracy: clearly better
        assert comps[key].method == PAIRED_T and comps[key].n_seeds == 3
    assert comps[("overall", "f1")].n_samples == 120 and comps[("d1", "f1")].n_samples == 80
    assert ("overall", "labels") not in comps  # a description, not a score


def test_a_clear_difference_stays_significant_after_holm_with_eight_seeds() -> None:
    runs = {("a", s): make_records(10 + s, 0.9) for s in range(8)} | {("b", s): make_records(20 + s, 0.4) for s in range(8)}
    comps = compare(EvaluationSet.from_runs(runs, n_boot=200), "a", list(range(8)), "b", list(range(8)))
    assert len(comps) == 3 * 5  # (d1, d2, overall) x (acc, f1, exact, f1_strict, acc_release)
    assert all(c.significant for c in comps)


def test_constant_baseline_pairs_every_seed_with_its_mean_over_runs() -> None:
    a = {s: make_records(10 + s, q) for s, q in zip((0, 1), (0.8, 0.6))}
    floor = {k: make_records(50 + k, 0.0) for k in range(3)}  # three draws of a random answer
    runs = {("a", s): r for s, r in a.items()} | {("f", k): r for k, r in floor.items()}
    comps = {(c.domain, c.metric): c for c in
             compare(EvaluationSet.from_runs(runs, n_boot=100), "a", [0, 1], "f", [0, 1, 2], constant_baseline=True)}
    key = ("overall", "acc")
    f = np.mean([_value(r, *key) for r in floor.values()])
    d = np.array([_value(a[s], *key) - f for s in a])
    assert comps[key].diff == pytest.approx(d.mean())
    half = sps.t.ppf(0.975, 1) * d.std(ddof=1) / np.sqrt(2)
    assert comps[key].high - comps[key].low >= 2 * half - 1e-12


def test_seed_interval_is_the_paired_t_interval_when_the_evaluation_records_add_nothing() -> None:
    d = np.array([0.05, -0.01, 0.12, 0.03])
    low, high, p, method = seed_interval(d, np.full(500, d.mean()))
    ref = sps.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert p == pytest.approx(ref.pvalue) and method == PAIRED_T


def test_seed_interval_is_never_narrower_than_the_paired_t_interval() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        s = int(rng.integers(2, 9))
        d = rng.normal(0.02, 0.05, s)
        boot = rng.normal(d.mean(), rng.uniform(0, 0.05), 300)
        low, high, _, _ = seed_interval(d, boot)
        ci = sps.ttest_1samp(d, 0.0).confidence_interval(0.95)
        assert low <= ci.low + 1e-12 and high >= ci.high - 1e-12
        # and the added width is the bootstrap variance: se^2 = var(d)/S + var(boot)
        se = (high - low) / 2 / sps.t.ppf(0.975, s - 1)
        assert se**2 == pytest.approx(d.var(ddof=1) / s + boot.var(ddof=1))


def test_one_seed_interval_is_a_percentile_bootstrap_over_evaluation_records() -> None:
    a = make_records(3, 0.7, n=25)
    b = make_records(4, 0.5, n=25)
    evalset = EvaluationSet.from_runs({("a", 0): a, ("b", 0): b}, n_boot=1000, seed=3)
    comp = next(c for c in compare(evalset, "a", [0], "b", [0]) if (c.domain, c.metric) == ("overall", "f1"))
    assert comp.method == BOOTSTRAP and comp.n_seeds == 1
    # Independent loop version: resample the records of each dataset (the same draw for both), recompute.
    rng = np.random.default_rng(7)
    by_ds: dict[str, list[int]] = {}
    for i, rec in enumerate(a):
        by_ds.setdefault(rec["dataset"], []).append(i)
    diffs = []
    for _ in range(600):
        idx = [i for ids in by_ds.values() for i in rng.choice(ids, size=len(ids))]
        diffs.append(_value([a[i] for i in idx], "overall", "f1") - _value([b[i] for i in idx], "overall", "f1"))
    low, high = np.quantile(diffs, [0.025, 0.975])
    width = high - low
    assert comp.low == pytest.approx(low, abs=0.15 * width)
    assert comp.high == pytest.approx(high, abs=0.15 * width)
    p_loop = min(1.0, 2 * min(np.mean(np.array(diffs) <= 0), np.mean(np.array(diffs) >= 0)))
    assert comp.p_value == pytest.approx(p_loop, abs=0.05)


def test_holm_step_down_by_hand() -> None:
    def c(p):
        return Comparison("a", "b", f"d{p}", "f1", 0.1, 0.0, 0.2, p, 4, PAIRED_T)

    # m = 4 at alpha 0.05: thresholds 0.0125, 0.01667, 0.025, 0.05. Sorted p: 0.01 (<= 0.0125: reject),
    # 0.016 (<= 0.01667: reject), 0.03 (> 0.025: stop), so 0.04 is kept too though 0.04 <= 0.05.
    out = holm([c(0.03), c(0.01), c(0.04), c(0.016)], 0.05)
    assert [x.significant for x in out] == [False, True, False, True]
    assert [x.significant for x in holm([c(0.02)], 0.05)] == [True]


def test_domain_iou_pools_the_records_of_its_datasets_like_results_csv() -> None:
    # domain g: dataset S1 has 2 records, S2 has 4. Pooled IoU of A = (0.2 + 0.4 + 4 * 0.8) / 6 = 3.8 / 6,
    # not the mean of the dataset means (0.3 + 0.8) / 2 = 0.55; B has IoU 0.5 everywhere.
    def recs(ious_s1, ious_s2):
        return [{"uid": f"{ds}:{i}", "domain": "g", "dataset": ds, "labels": ["x"], "predicted": ["x"], "iou": v}
                for ds, ious in (("S1", ious_s1), ("S2", ious_s2)) for i, v in enumerate(ious)]

    runs = {("a", 0): recs([0.2, 0.4], [0.8] * 4), ("b", 0): recs([0.5] * 2, [0.5] * 4)}
    comps = {(c.domain, c.metric): c for c in compare(EvaluationSet.from_runs(runs, n_boot=50), "a", [0], "b", [0])}
    expected = 3.8 / 6 - 0.5
    assert comps[("g", "iou")].diff == pytest.approx(expected)
    assert comps[("overall", "iou")].diff == pytest.approx(expected)
    assert _value(runs[("a", 0)], "g", "iou") == pytest.approx(3.8 / 6)


def test_runs_on_other_records_are_left_out_with_the_reason() -> None:
    runs = {("a", 0): make_records(0, 0.5, n=10), ("b", 0): make_records(0, 0.5, n=12)}
    evalset = EvaluationSet.from_runs(runs, n_boot=10)
    assert ("b", 0) not in evalset and "other samples" in evalset.excluded[("b", 0)]
    from rlbench_med.reports.stats import ComparisonError

    with pytest.raises(ComparisonError, match="share no evaluated seed"):
        compare(evalset, "a", [0], "b", [0])


def test_mean_std_is_sample_std() -> None:
    assert mean_std([0.2, 0.4, 0.9]) == pytest.approx((0.5, 0.13**0.5, 3))
    assert mean_std([0.7]) == (0.7, 0.0, 1)
