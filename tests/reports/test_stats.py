"""Metrics under bootstrap weights and the paired bootstrap, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from rlbench_med.reports.stats import ComparisonError, mean_std, paired_bootstrap, weighted_scores
from rlbench_med.suites import compute_metrics

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


def indicator(labels, classes):
    return np.array([[c in ls for c in classes] for ls in labels])


def test_weighted_scores_with_unit_weights_match_sklearn_one_vs_rest() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    p = np.where(rng.random(50) < 0.6, y, rng.integers(0, 3, 50))
    t, q = np.eye(3, dtype=bool)[y], np.eye(3, dtype=bool)[p]
    acc, f1 = weighted_scores(t, q, np.ones((1, 50)))
    expected_acc = np.mean([balanced_accuracy_score(y == c, p == c) for c in range(3)])
    assert acc[0] == pytest.approx(expected_acc)
    assert f1[0] == pytest.approx(f1_score(y, p, average="macro", labels=[0, 1, 2]))


def test_integer_weights_equal_duplicated_records() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 30)
    p = np.where(rng.random(30) < 0.5, y, rng.integers(0, 3, 30))
    w = rng.multinomial(30, np.full(30, 1 / 30))
    acc, f1 = weighted_scores(np.eye(3, dtype=bool)[y], np.eye(3, dtype=bool)[p], w[None, :])
    recs = [{"domain": "d", "dataset": "s", "labels": [str(y[i])], "predicted": [str(p[i])]}
            for i in range(30) for _ in range(w[i])]
    rows = {r["metric"]: r["value"] for r in compute_metrics(recs) if r["domain"] == "d"}
    assert acc[0] == pytest.approx(rows["acc"])
    assert f1[0] == pytest.approx(rows["f1"])


def test_class_in_every_sample_uses_sensitivity_like_suites_metrics() -> None:
    t = indicator([["x"], ["x", "y"], ["x"]], ["x", "y"])
    p = indicator([["x"], ["y"], []], ["x", "y"])
    acc, f1 = weighted_scores(t, p, np.ones((1, 3)))
    recs = [{"domain": "d", "dataset": "s", "labels": a, "predicted": b}
            for a, b in ((["x"], ["x"]), (["x", "y"], ["y"]), (["x"], []))]
    rows = {r["metric"]: r["value"] for r in compute_metrics(recs) if r["domain"] == "d"}
    assert (acc[0], f1[0]) == pytest.approx((rows["acc"], rows["f1"]))
    # by hand: x is in every sample (sensitivity 1/3, no negatives: BA = 1/3, F1 = 2 * 1 * (1/3) / (4/3) = 0.5);
    # y: TP 1, no FP, TN 2 -> BA 1, F1 1; means: acc 2/3, f1 0.75
    assert (acc[0], f1[0]) == pytest.approx((2 / 3, 0.75))


def test_identical_predictions_give_zero_difference_and_no_mark() -> None:
    a = {s: make_records(s, 0.6) for s in (0, 1)}
    for c in paired_bootstrap(a, a, n_boot=200):
        assert (c.diff, c.low, c.high) == (0.0, 0.0, 0.0)
        assert not c.significant


def test_point_estimate_is_difference_of_seed_means_of_suite_metrics() -> None:
    a = {s: make_records(10 + s, 0.9) for s in (0, 1)}
    b = {s: make_records(20 + s, 0.4) for s in (0, 1)}
    comps = {(c.domain, c.metric): c for c in paired_bootstrap(a, b, n_boot=200)}

    def value(records, domain, metric):
        return next(r["value"] for r in compute_metrics(records) if r["domain"] == domain and r["metric"] == metric)

    for key in [("d1", "f1"), ("d2", "acc"), ("overall", "f1")]:
        expected = np.mean([value(a[s], *key) for s in (0, 1)]) - np.mean([value(b[s], *key) for s in (0, 1)])
        assert comps[key].diff == pytest.approx(expected)
        assert comps[key].significant and comps[key].low > 0  # 0.9 vs 0.4 accuracy: clearly better
    assert comps[("overall", "f1")].n_samples == 120 and comps[("d1", "f1")].n_samples == 80


def test_domain_iou_pools_the_records_of_its_datasets_like_results_csv() -> None:
    # domain g: dataset S1 has 2 records, S2 has 4. Pooled IoU of A = (0.2 + 0.4 + 4 * 0.8) / 6 = 3.8 / 6,
    # not the mean of the dataset means (0.3 + 0.8) / 2 = 0.55; B has IoU 0.5 everywhere.
    def recs(ious_s1, ious_s2):
        return [{"uid": f"{ds}:{i}", "domain": "g", "dataset": ds, "labels": ["x"], "predicted": ["x"], "iou": v}
                for ds, ious in (("S1", ious_s1), ("S2", ious_s2)) for i, v in enumerate(ious)]

    a = {0: recs([0.2, 0.4], [0.8] * 4)}
    b = {0: recs([0.5] * 2, [0.5] * 4)}
    comps = {(c.domain, c.metric): c for c in paired_bootstrap(a, b, n_boot=50)}
    expected = 3.8 / 6 - 0.5
    assert comps[("g", "iou")].diff == pytest.approx(expected)
    assert comps[("overall", "iou")].diff == pytest.approx(expected)
    # the same number as results.csv (suites/metrics.compute_metrics)
    iou = {(r["domain"]): r["value"] for r in compute_metrics(a[0]) if r["metric"] == "iou"}
    assert iou["g"] == pytest.approx(3.8 / 6)


def loop_bootstrap(a, b, n_boot, rng):
    """Independent loop version: resample seeds, then records within each dataset, via compute_metrics."""
    seeds = sorted(a)
    diffs = []
    by_ds = {}
    for i, rec in enumerate(a[seeds[0]]):
        by_ds.setdefault(rec["dataset"], []).append(i)
    for _ in range(n_boot):
        drawn = rng.choice(seeds, size=len(seeds))
        va, vb = [], []
        for s in drawn:
            idx = [i for ids in by_ds.values() for i in rng.choice(ids, size=len(ids))]
            for recs, out in ((a[s], va), (b[s], vb)):
                out.append(next(r["value"] for r in compute_metrics([recs[i] for i in idx])
                                if r["domain"] == "overall" and r["metric"] == "f1"))
        diffs.append(np.mean(va) - np.mean(vb))
    return np.quantile(diffs, [0.025, 0.975])


def test_bootstrap_ci_matches_a_loop_implementation() -> None:
    # seeds of different quality, so the seed level of the resampling shows in the interval
    a = {s: make_records(30 + s, q, n=25) for s, q in zip((0, 1, 2), (0.95, 0.45, 0.75))}
    b = {s: make_records(40 + s, 0.6, n=25) for s in (0, 1, 2)}
    comp = next(c for c in paired_bootstrap(a, b, n_boot=1000, seed=3) if (c.domain, c.metric) == ("overall", "f1"))
    low, high = loop_bootstrap(a, b, 500, np.random.default_rng(7))
    width = high - low
    assert comp.low == pytest.approx(low, abs=0.15 * width)
    assert comp.high == pytest.approx(high, abs=0.15 * width)


def test_different_held_out_sets_are_refused() -> None:
    a = {0: make_records(0, 0.5, n=10)}
    b = {0: make_records(0, 0.5, n=12)}
    with pytest.raises(ComparisonError, match="other samples"):
        paired_bootstrap(a, b, n_boot=10)
    with pytest.raises(ComparisonError, match="share no seed"):
        paired_bootstrap({0: a[0]}, {1: a[0]}, n_boot=10)


def test_mean_std_is_sample_std() -> None:
    assert mean_std([0.2, 0.4, 0.9]) == pytest.approx((0.5, 0.13**0.5, 3))
    assert mean_std([0.7]) == (0.7, 0.0, 1)
