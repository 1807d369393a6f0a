"""Metrics against scikit-learn and a hand-worked example."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, multilabel_confusion_matrix
from sklearn.preprocessing import MultiLabelBinarizer

from rlbench_med.reports.stats import EvaluationSet
from rlbench_med.suites.catalogue import CATALOGUE, order_domains
from rlbench_med.suites.metrics import DatasetTruth, compute_metrics, dataset_scores


def _rows(rows: list[dict]) -> dict[tuple[str, str], tuple[float, int]]:
    return {(r["domain"], r["metric"]): (r["value"], r["n"]) for r in rows}


def test_hand_worked_example() -> None:
    # Class A: TP 1, FN 1, FP 1, TN 0 -> BA (0.5 + 0) / 2 = 0.25, F1 2 / 4 = 0.5.
    # Class B: TP 0, FN 1, FP 1, TN 1 -> BA (0 + 0.5) / 2 = 0.25, F1 0.
    records = [
        {"domain": "cxr", "dataset": "D1", "labels": ["A"], "predicted": ["a "]},
        {"domain": "cxr", "dataset": "D1", "labels": ["B"], "predicted": ["A"]},
        {"domain": "cxr", "dataset": "D1", "labels": ["A"], "predicted": ["B", "Unseen"]},
        # Second dataset: perfect -> acc 1, f1 1; the domain is the mean of the two datasets.
        {"domain": "cxr", "dataset": "D2", "labels": ["X"], "predicted": ["X"], "iou": 0.5},
        {"domain": "cxr", "dataset": "D2", "labels": ["Y"], "predicted": ["Y"], "iou": 0.1},
        # Binary single-class dataset in another domain: every record positive.
        {"domain": "mri", "dataset": "M", "labels": ["T"], "predicted": ["T"]},
        {"domain": "mri", "dataset": "M", "labels": ["T"], "predicted": []},
    ]
    got = _rows(compute_metrics(records))
    assert got[("cxr", "acc")] == (pytest.approx((0.25 + 1.0) / 2), 5)
    assert got[("cxr", "f1")] == (pytest.approx((0.25 + 1.0) / 2), 5)
    assert got[("cxr", "iou")] == (pytest.approx(0.3), 2)
    # T: TP 1, FN 1, no negatives -> BA is the sensitivity 0.5; F1 = 2 / 3.
    assert got[("mri", "acc")] == (pytest.approx(0.5), 2)
    assert got[("mri", "f1")] == (pytest.approx(2 / 3), 2)
    assert got[("overall", "acc")] == (pytest.approx((0.625 + 0.5) / 2), 7)
    assert got[("overall", "f1")] == (pytest.approx((0.625 + 2 / 3) / 2), 7)
    assert got[("overall", "iou")] == (pytest.approx(0.3), 2)
    assert ("mri", "iou") not in got
    # Metrics in report order within each domain: acc, f1, exact, f1_strict, labels, acc_release, iou.
    order = [(r["domain"], r["metric"]) for r in compute_metrics(records)]
    base = ["acc", "f1", "exact", "f1_strict", "labels", "acc_release"]
    assert order == (
        [("cxr", m) for m in base + ["iou"]] + [("mri", m) for m in base] + [("overall", m) for m in base + ["iou"]]
    )


def _sklearn_dataset(truth: list[list[str]], pred: list[list[str]]) -> tuple[float, float]:
    classes = sorted({c.lower() for t in truth for c in t})
    y = np.array([[c in {x.lower() for x in t} for c in classes] for t in truth], dtype=int)
    p = np.array([[c in {x.strip().lower() for x in q} for c in classes] for q in pred], dtype=int)
    if len(classes) > 1:
        f1 = f1_score(y, p, average="macro", zero_division=0)
        mcm = multilabel_confusion_matrix(y, p)  # [C, 2, 2]: [[TN, FP], [FN, TP]] per class
        tn, fp, fn, tp = (mcm[:, i, j].astype(float) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        assert f1 == pytest.approx(np.mean(2 * tp / (2 * tp + fp + fn)))
    else:  # a column vector is not a multilabel target for scikit-learn
        f1 = f1_score(y[:, 0], p[:, 0], zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class present in every record has no negatives
        ba = np.mean([balanced_accuracy_score(y[:, j], p[:, j]) for j in range(len(classes))])
    return float(ba), float(f1)


def test_matches_scikit_learn_on_random_predictions() -> None:
    rng = np.random.default_rng(7)
    datasets = {"cxr": {"C1": "ABCDE", "C2": "PQ"}, "ct": {"T1": "XYZ"}, "mri": {"M1": "KL", "M2": "UVW", "M3": "R"}}
    records = []
    per_dataset: dict[tuple[str, str], tuple[list, list]] = {}
    for domain, sets in datasets.items():
        for name, letters in sets.items():
            truth, pred = [], []
            for _ in range(int(rng.integers(20, 60))):
                k = int(rng.integers(1, min(3, len(letters)) + 1))
                t = list(rng.choice(list(letters), size=k, replace=False))
                q = [x if rng.random() < 0.5 else x.lower() + " " for x in rng.choice(list(letters + "#"), size=int(rng.integers(0, 4)))]
                truth.append(t)
                pred.append(q)
                records.append({"domain": domain, "dataset": name, "labels": t, "predicted": q})
            per_dataset[(domain, name)] = (truth, pred)
    got = _rows(compute_metrics(records))
    domain_means = {}
    for domain, sets in datasets.items():
        scores = [_sklearn_dataset(*per_dataset[(domain, name)]) for name in sets]
        for name in sets:
            acc, f1, _ = dataset_scores(*per_dataset[(domain, name)])
            assert (acc, f1) == pytest.approx(_sklearn_dataset(*per_dataset[(domain, name)]))
        domain_means[domain] = np.mean(scores, axis=0)
        assert got[(domain, "acc")][0] == pytest.approx(domain_means[domain][0])
        assert got[(domain, "f1")][0] == pytest.approx(domain_means[domain][1])
    overall = np.mean(list(domain_means.values()), axis=0)
    assert got[("overall", "acc")][0] == pytest.approx(overall[0])
    assert got[("overall", "f1")][0] == pytest.approx(overall[1])
    assert got[("overall", "acc")][1] == len(records)


def test_binary_task_equals_usual_balanced_accuracy() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.7, y, 1 - y)
    names = np.array(["No", "Yes"])
    records = [{"domain": "ihm48", "dataset": "MIMIC-IV", "labels": [names[a]], "predicted": [names[b]]} for a, b in zip(y, p)]
    got = _rows(compute_metrics(records))
    assert got[("ihm48", "acc")][0] == pytest.approx(balanced_accuracy_score(y, p))
    assert got[("ihm48", "f1")][0] == pytest.approx(f1_score(y, p, average="macro"))


def test_domains_follow_the_catalogue_then_sort_unknown_ones() -> None:
    assert order_domains(["zeta", "ecg", "mammography", "alpha", "cxr"]) == ("cxr", "mammography", "ecg", "alpha", "zeta")
    rows = compute_metrics(
        {"domain": d, "dataset": d, "labels": ["A"], "predicted": ["A"]} for d in ("zeta", "mammography", "cxr")
    )
    assert list(dict.fromkeys(r["domain"] for r in rows)) == ["cxr", "mammography", "zeta", "overall"]


def test_docstring_worked_example_of_the_hedging_proof_metrics() -> None:
    records = [
        {"domain": "derm", "dataset": "D", "labels": ["A"], "predicted": ["A", "B"]},
        {"domain": "derm", "dataset": "D", "labels": ["B"], "predicted": ["B"]},
        {"domain": "derm", "dataset": "D", "labels": ["A"], "predicted": []},
    ]
    got = _rows(compute_metrics(records))
    assert got[("derm", "f1")][0] == pytest.approx(2 / 3)
    assert got[("derm", "acc")][0] == pytest.approx(3 / 4)
    assert got[("derm", "f1_strict")][0] == pytest.approx(1 / 2)
    assert got[("derm", "exact")][0] == pytest.approx(1 / 3)
    assert got[("derm", "labels")][0] == pytest.approx(1.0)


def test_predicting_every_class_wins_f1_but_scores_zero_f1_strict_and_exact() -> None:
    # A single-label 4-class dataset, 10 records per class; the hedger names all four classes.
    classes = ["W", "X", "Y", "Z"]
    records = [
        {"domain": "fundus", "dataset": "F", "labels": [c], "predicted": list(classes)} for c in classes for _ in range(10)
    ]
    got = _rows(compute_metrics(records))
    # Per class TP 10, FP 30, FN 0 -> F1 = 20 / 50 = 0.4; sensitivity 1, specificity 0 -> BA 0.5.
    assert got[("fundus", "f1")][0] == pytest.approx(0.4)
    assert got[("fundus", "acc")][0] == pytest.approx(0.5)
    assert got[("fundus", "f1_strict")][0] == 0.0
    assert got[("fundus", "exact")][0] == 0.0
    assert got[("fundus", "labels")][0] == 4.0


def test_f1_strict_is_set_f1_on_multi_label_datasets_and_voided_macro_f1_on_single_label_ones() -> None:
    rng = np.random.default_rng(3)
    letters = "ABCD"
    single, multi = [], []
    for _ in range(80):
        pred = list(rng.choice(list(letters + "#"), size=int(rng.integers(0, 3)), replace=False))
        single.append({"domain": "ct", "dataset": "S", "labels": [str(rng.choice(list(letters)))], "predicted": pred})
        truth = list(rng.choice(list(letters), size=int(rng.integers(1, 3)), replace=False))
        multi.append({"domain": "cxr", "dataset": "M", "labels": truth, "predicted": pred})
    got = _rows(compute_metrics(single + multi))
    # Independent: scikit-learn's sample-averaged F1 on label indicators ("#", never true, is a label it
    # predicts), an empty answer to a non-empty truth scoring 0.
    binarizer = MultiLabelBinarizer(classes=list(letters + "#"))
    y = binarizer.fit_transform([r["labels"] for r in multi])
    p = binarizer.transform([r["predicted"] for r in multi])
    assert got[("cxr", "f1_strict")][0] == pytest.approx(f1_score(y, p, average="samples", zero_division=0))
    assert got[("cxr", "f1_strict")][0] != pytest.approx(got[("cxr", "f1")][0])
    # Single-label: an answer of more than one label becomes "no label"; scikit-learn's macro-F1 over the
    # classes present in the truth, with "no label" as an extra predicted class that is never true.
    y = [r["labels"][0] for r in single]
    p = [r["predicted"][0] if len(r["predicted"]) == 1 else "<none>" for r in single]
    present = sorted(set(y))
    assert got[("ct", "f1_strict")][0] == pytest.approx(f1_score(y, p, labels=present, average="macro", zero_division=0))
    exact = np.mean([r["predicted"] == r["labels"] for r in single])
    assert got[("ct", "exact")][0] == pytest.approx(exact)
    n_labels = np.mean([len(r["predicted"]) for r in multi])
    assert got[("cxr", "labels")][0] == pytest.approx(n_labels)


def test_answering_every_class_cannot_win_f1_strict_on_a_multi_label_dataset() -> None:
    # 14 CheXpert classes; truths of 1 or 2 findings. The hedger names all 14: per record 2k / (14 + k).
    classes = [c for e in CATALOGUE if e.dataset == "CheXpert" for c in e.classes]
    truths = [[classes[i % 14]] if i % 3 else [classes[i % 14], classes[(i + 5) % 14]] for i in range(30)]
    hedge = [{"domain": "cxr", "dataset": "CheXpert", "labels": t, "predicted": classes} for t in truths]
    model = [{"domain": "cxr", "dataset": "CheXpert", "labels": t, "predicted": t[:1]} for t in truths]
    expected = np.mean([2 * len(t) / (14 + len(t)) for t in truths])
    hedged = _rows(compute_metrics(hedge))
    assert hedged[("cxr", "f1_strict")][0] == pytest.approx(expected) and expected < 0.2
    assert _rows(compute_metrics(model))[("cxr", "f1_strict")][0] > 0.8  # naming one true finding


def test_one_record_cannot_switch_a_datasets_hedging_rule() -> None:
    # HAM10000 is declared single-label (the catalogue): a record that says multi_label, or that carries
    # two labels, does not turn off the voiding of hedged answers for the whole dataset.
    hedge = [{"domain": "dermoscopy", "dataset": "HAM10000", "labels": [c], "predicted": ["Melanoma", "Nevus"]}
             for c in ("Melanoma", "Nevus", "Melanoma")]
    hedge[0]["multi_label"] = True
    hedge.append({"domain": "dermoscopy", "dataset": "HAM10000", "labels": ["Melanoma", "Nevus"],
                  "predicted": ["Melanoma", "Nevus"]})
    assert _rows(compute_metrics(hedge))[("dermoscopy", "f1_strict")][0] == 0.0
    # CheXpert is declared multi-label: a test split whose records all have one finding stays multi-label.
    single = [{"domain": "cxr", "dataset": "CheXpert", "labels": ["Edema"], "predicted": ["Edema", "Fracture"]}]
    assert _rows(compute_metrics(single))[("cxr", "f1_strict")][0] == pytest.approx(2 / 3)
    # A caller holding the data passes a dataset's declaration (classes.json): it wins over the truth.
    mine = [{"domain": "mri", "dataset": "Mine", "labels": ["a", "b"], "predicted": ["a", "b"]},
            {"domain": "mri", "dataset": "Mine", "labels": ["a"], "predicted": ["a", "b"]}]
    assert DatasetTruth.from_records("mri", "Mine", mine).multi_label  # undeclared: the truth decides
    assert _rows(compute_metrics(mine, multi_label={"Mine": False}))[("mri", "f1_strict")][0] == 0.0


def test_the_generator_gives_several_labels_only_to_datasets_declared_multi_label() -> None:
    from rlbench_med.suites.synth import MULTI_LABEL_DATASETS

    declared = {e.dataset for e in CATALOGUE if e.multi_label}
    assert set(MULTI_LABEL_DATASETS) <= declared
    assert declared == {"MIMIC-CXR", "CheXpert", "PTB-XL", "Chapman-Shaoxing", "Georgia", "CPSC"}


def _rare_class_runs() -> dict:
    """One single-label dataset with a common, a middling and two rare classes, and two runs answering it."""
    rng = np.random.default_rng(11)
    sizes = {"A": 40, "B": 20, "C": 3, "D": 2}
    truth = [c for c, n in sizes.items() for _ in range(n)]
    runs = {}
    for seed in range(2):
        runs[("m", seed)] = [{"uid": f"r{i}", "domain": "derm", "dataset": "X", "labels": [c],
                              "predicted": [c if rng.random() < 0.7 else str(rng.choice(list(sizes)))]}
                             for i, c in enumerate(truth)]
    runs[("every", 0)] = [{"uid": f"r{i}", "domain": "derm", "dataset": "X", "labels": [c], "predicted": list(sizes)}
                          for i, c in enumerate(truth)]
    return runs


def test_bootstrap_replicates_keep_every_class_and_count_every_record_once_on_average() -> None:
    evalset = EvaluationSet.from_runs(_rare_class_runs(), n_boot=4000, seed=1)
    [weights], [truth] = evalset.weights, evalset.datasets
    # every class of the point estimate is in every replicate: each replicate is the same macro-F1
    per_class = weights @ truth.truth.astype(float)  # [R, C] weighted records of each class
    assert (per_class > 0).all()
    # each record weighs 1 on average (within Monte-Carlo error: 4,000 replicates), so every count of the
    # confusion matrix (TP, FP, FN, TN of every class) has the point estimate's expectation
    se = weights.std(0) / np.sqrt(len(weights))
    assert np.all(np.abs(weights.mean(0) - 1) <= 4 * se + 1e-12)


def test_answering_every_class_has_replicates_centred_on_its_point_estimate() -> None:
    # The hedger's F1 depends only on the class counts: replicates that drop a rare class averaged +0.05
    # above the point estimate on climb_vision; with the class counts kept they equal it.
    evalset = EvaluationSet.from_runs(_rare_class_runs(), n_boot=2000, seed=1)
    point = evalset.point(("every", 0))[("derm", "f1")]
    replicates = evalset.replicates(("every", 0))[("derm", "f1")]
    assert np.allclose(replicates, point)
