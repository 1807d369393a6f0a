"""Metrics under bootstrap weights, the intervals and Holm's correction, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score

from rlbench_med.reports.stats import (
    BOOTSTRAP,
    EVALUATION_FLOOR,
    PAIRED_T,
    TIED,
    EvaluationSet,
    compare,
    estimate,
    mean_std,
    variance_parts,
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
        assert not c.significant and c.p_value == 1.0 and c.method == TIED


def test_point_estimate_is_difference_of_seed_means_of_suite_metrics() -> None:
    a = {s: make_records(10 + s, 0.9) for s in (0, 1, 2)}
    b = {s: make_records(20 + s, 0.4) for s in (0, 1, 2)}
    runs = {("a", s): r for s, r in a.items()} | {("b", s): r for s, r in b.items()}
    comps = {(c.domain, c.metric): c for c in compare(EvaluationSet.from_runs(runs, n_boot=300), "a", [0, 1, 2], "b", [0, 1, 2])}
    for key in [("d1", "f1"), ("d2", "acc"), ("overall", "f1"), ("overall", "f1_strict"), ("d1", "exact")]:
        expected = np.mean([_value(a[s], *key) for s in a]) - np.mean([_value(b[s], *key) for s in b])
        assert comps[key].diff == pytest.approx(expected)
        assert comps[key].low > 0  # 0.9 vs 0.4 accuracy: clearly better
        assert comps[key].method in (PAIRED_T, EVALUATION_FLOOR) and comps[key].n_seeds == 3
    assert comps[("overall", "f1")].n_samples == 120 and comps[("d1", "f1")].n_samples == 80
    assert ("overall", "labels") not in comps  # a description, not a score


def test_a_clear_difference_has_intervals_above_zero_in_every_cell_with_eight_seeds() -> None:
    runs = {("a", s): make_records(10 + s, 0.9) for s in range(8)} | {("b", s): make_records(20 + s, 0.4) for s in range(8)}
    comps = compare(EvaluationSet.from_runs(runs, n_boot=200), "a", list(range(8)), "b", list(range(8)))
    assert len(comps) == 3 * 5  # (d1, d2, overall) x (acc, f1, exact, f1_strict, acc_release)
    assert all(c.low > 0 and c.p_value < 0.001 for c in comps)
    assert all(not c.significant and c.family == "" for c in comps)  # untested until the testing plan


def test_constant_baseline_pairs_every_seed_with_its_mean_over_runs() -> None:
    a = {s: make_records(10 + s, q) for s, q in zip((0, 1), (0.8, 0.6))}
    floor = {k: make_records(50 + k, 0.0) for k in range(3)}  # three draws of a random answer
    runs = {("a", s): r for s, r in a.items()} | {("f", k): r for k, r in floor.items()}
    evalset = EvaluationSet.from_runs(runs, n_boot=100)
    comps = {(c.domain, c.metric): c for c in compare(evalset, "a", [0, 1], "f", [0, 1, 2], constant_baseline=True)}
    key = ("overall", "acc")
    f = np.mean([_value(r, *key) for r in floor.values()])
    d = np.array([_value(a[s], *key) - f for s in a])
    assert comps[key].diff == pytest.approx(d.mean())
    # every seed of a is paired with the mean of the draws, replicate by replicate: the floor's evaluation
    # noise is shared by both seeds
    f_boot = np.mean([evalset.replicates(("f", k))[key] for k in range(3)], axis=0)
    boot = np.stack([evalset.replicates(("a", s))[key] - f_boot for s in (0, 1)])
    assert (comps[key].low, comps[key].high) == pytest.approx(estimate(d, boot).interval(0.05))


def test_without_evaluation_noise_the_estimate_is_the_paired_t_test() -> None:
    d = np.array([0.05, -0.01, 0.12, 0.03])
    est = estimate(d, np.repeat(d[:, None], 500, axis=1))  # replicates that never move: no evaluation noise
    ref = sps.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.95)
    assert est.interval(0.05) == pytest.approx((ci.low, ci.high))
    assert est.p_value() == pytest.approx(ref.pvalue) and est.method == PAIRED_T and est.df == pytest.approx(3)
    assert est.p_value("greater") == pytest.approx(sps.ttest_1samp(d, 0.0, alternative="greater").pvalue)


def test_variance_parts_match_a_loop_over_pairs_of_seeds() -> None:
    rng = np.random.default_rng(5)
    for seeds in (2, 3, 6):
        d = rng.normal(0.02, 0.05, seeds)
        shared = rng.normal(0, 0.03, 400)
        boot = d[:, None] + shared[None, :] + rng.normal(0, 0.02, (seeds, 400))
        s2, c, e = variance_parts(d, boot)
        covs = [np.cov(boot[i], boot[j])[0, 1] for i in range(seeds) for j in range(seeds) if i != j]
        variances = [np.var(boot[i], ddof=1) for i in range(seeds)]
        assert s2 == pytest.approx(np.var(d, ddof=1))
        assert c == pytest.approx(max(np.mean(covs), 0.0))
        assert e == pytest.approx(max(np.mean(variances) - max(np.mean(covs), 0.0), 0.0))


def test_standard_error_is_seed_spread_plus_shared_evaluation_noise_with_satterthwaite_df() -> None:
    d = np.array([0.10, 0.02, 0.07, 0.13])
    rng = np.random.default_rng(1)
    boot = d[:, None] + rng.normal(0, 0.02, (1, 2000)) + rng.normal(0, 0.01, (4, 2000))
    s2, c, e = (float(x) for x in variance_parts(d, boot))
    assert s2 > e  # the seed spread exceeds the unshared evaluation noise: no floor
    est = estimate(d, boot)
    se2 = s2 / 4 + c
    assert est.se == pytest.approx(np.sqrt(se2)) and est.method == PAIRED_T
    assert est.df == pytest.approx(3 * (se2 / (s2 / 4)) ** 2)  # Satterthwaite, the bootstrap term known
    half = sps.t.ppf(0.975, est.df) * np.sqrt(se2)
    assert est.interval(0.05) == pytest.approx((d.mean() - half, d.mean() + half))


def test_tied_seeds_fall_back_to_the_evaluation_noise_instead_of_a_zero_width_verdict() -> None:
    d = np.array([0.04, 0.04])  # two seeds that tied: s^2 = 0
    rng = np.random.default_rng(2)
    boot = d[:, None] + rng.normal(0, 0.03, (2, 3000))  # each seed's evaluation noise, not shared
    est = estimate(d, boot)
    _, c, e = (float(x) for x in variance_parts(d, boot))
    assert est.method == TIED and est.se == pytest.approx(np.sqrt(e / 2 + c)) and est.se > 0
    assert est.p_value() == pytest.approx(2 * sps.norm.sf(0.04 / est.se))
    low, high = est.interval(0.05)
    assert low < 0.04 < high and high - low == pytest.approx(2 * 1.959964 * est.se, rel=1e-5)
    # nothing varies at all but the difference is not 0: no test can be made, never significant
    flat = estimate(d, np.repeat(d[:, None], 100, axis=1))
    assert np.isnan(flat.p_value()) and flat.interval(0.05) == (0.04, 0.04)


def test_a_seed_spread_below_the_evaluation_noise_is_floored() -> None:
    d = np.array([0.050, 0.051, 0.049, 0.050])
    rng = np.random.default_rng(3)
    boot = d[:, None] + rng.normal(0, 0.04, (4, 3000))
    est = estimate(d, boot)
    _, c, e = (float(x) for x in variance_parts(d, boot))
    assert est.method == EVALUATION_FLOOR and est.se == pytest.approx(np.sqrt(e / 4 + c))


def test_compare_hands_each_seeds_replicates_to_the_estimate() -> None:
    runs = {("a", s): make_records(10 + s, 0.8) for s in range(3)} | {("b", s): make_records(20 + s, 0.5) for s in range(3)}
    evalset = EvaluationSet.from_runs(runs, n_boot=300)
    cell = next(c for c in compare(evalset, "a", [0, 1, 2], "b", [0, 1, 2]) if (c.domain, c.metric) == ("overall", "f1"))
    key = ("overall", "f1")
    d = np.array([evalset.point(("a", s))[key] - evalset.point(("b", s))[key] for s in range(3)])
    boot = np.stack([evalset.replicates(("a", s))[key] - evalset.replicates(("b", s))[key] for s in range(3)])
    expected = estimate(d, boot)
    assert (cell.diff, cell.p_value) == pytest.approx((expected.diff, expected.p_value()))
    assert cell.estimate.shared_var == pytest.approx(expected.shared_var) and cell.estimate.shared_var > 0


def test_one_seed_interval_is_a_percentile_bootstrap_over_evaluation_records() -> None:
    a = make_records(3, 0.7, n=25)
    b = make_records(4, 0.5, n=25)
    evalset = EvaluationSet.from_runs({("a", 0): a, ("b", 0): b}, n_boot=1000, seed=3)
    comp = next(c for c in compare(evalset, "a", [0], "b", [0]) if (c.domain, c.metric) == ("overall", "f1"))
    assert comp.method == BOOTSTRAP and comp.n_seeds == 1
    # Independent loop version: in each dataset, the records of each class draw m - 1 of themselves with
    # replacement, each draw weighing m / (m - 1); scikit-learn's weighted macro-F1 of both runs.
    rng = np.random.default_rng(7)
    strata: dict[tuple[str, str], list[int]] = {}
    for i, rec in enumerate(a):
        strata.setdefault((rec["dataset"], rec["labels"][0]), []).append(i)

    def overall_f1(records, weights):
        per_domain: dict[str, list[float]] = {}
        for ds in sorted({r["dataset"] for r in records}):
            idx = [i for i, r in enumerate(records) if r["dataset"] == ds]
            y = [records[i]["labels"][0] for i in idx]
            p = [records[i]["predicted"][0] for i in idx]
            score = f1_score(y, p, labels=sorted(set(y)), average="macro", sample_weight=weights[idx], zero_division=0)
            per_domain.setdefault(records[idx[0]]["domain"], []).append(score)
        return np.mean([np.mean(v) for v in per_domain.values()])

    diffs = []
    for _ in range(600):
        w = np.zeros(len(a))
        for members in strata.values():
            m = len(members)
            if m == 1:
                w[members] = 1.0
                continue
            for j in rng.choice(members, size=m - 1):
                w[j] += m / (m - 1)
        diffs.append(overall_f1(a, w) - overall_f1(b, w))
    low, high = np.quantile(diffs, [0.025, 0.975])
    width = high - low
    assert comp.low == pytest.approx(low, abs=0.15 * width)
    assert comp.high == pytest.approx(high, abs=0.15 * width)
    p_loop = min(1.0, 2 * min(np.mean(np.array(diffs) <= 0), np.mean(np.array(diffs) >= 0)))
    assert comp.p_value == pytest.approx(p_loop, abs=0.05)


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


def test_bootstrap_replicates_use_one_blas_thread_and_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    import rlbench_med.reports.stats as stats_module
    from rlbench_med.suites.metrics import aggregate

    rng = np.random.default_rng(3)
    truth = [{"uid": str(i), "domain": "d", "dataset": "x", "labels": [str(rng.integers(4))]} for i in range(60)]
    runs = {("a", 0): [{**r, "predicted": [str(rng.integers(4))]} for r in truth]}
    threads: list[int] = []

    def counting(*args, **kwargs):
        threads.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return aggregate(*args, **kwargs)

    monkeypatch.setattr(stats_module, "aggregate", counting)
    evalset = EvaluationSet.from_runs(runs, n_boot=500)
    with threadpool_limits(2, user_api="blas"):  # what a 2-core machine gives numpy by default
        got = evalset.replicates(("a", 0))
        expected = aggregate(list(zip(evalset.datasets, evalset.preds[("a", 0)])), evalset.weights)
    assert threads == [1]
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k], equal_nan=True) for k in got)
