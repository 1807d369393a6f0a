"""The release's evaluation accuracy (``acc_release``) against hand-worked examples and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlbench_med.suites.metrics import compute_metrics
from rlbench_med.suites.release import (
    extract_eval_answer,
    release_accuracy,
    release_class_accuracy,
    release_predicted,
    release_truth,
)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("think \\boxed{A} then \\boxed{B}", "A"),  # the FIRST box (the reward takes the last)
        ("\\boxed{\\text{A}} ", "\\text{A"),  # content up to the first "}"
        ("no box but [A, B] and [C]", "A, B"),  # first [...] on one line
        ("[A\nB] fallback", "[A\nB] fallback"),  # [...] must sit on one line: the whole response
        ("\\boxed{A", "\\boxed{A"),  # an unclosed box is not a box: the whole response
        ("Melanoma", "Melanoma"),
    ],
)
def test_extract_eval_answer(response: str, expected: str) -> None:
    assert extract_eval_answer(response) == expected


def test_hand_worked_release_accuracy() -> None:
    # Predictions: A (first box), A (first box of two), C (first [...]).
    # Class A: r1 TP, r2 TP, r3 TN -> 3/3.  Class B: r1 TN, r2 FN, r3 FN -> 1/3.  C: support 0, left out.
    truths = ["A", "A, B", "B"]
    responses = ["\\boxed{A}", "so \\boxed{A} or maybe \\boxed{B}", "answer: [C]"]
    assert release_accuracy(truths, responses) == pytest.approx((1 + 1 / 3) / 2)


def test_a_class_in_every_record_scores_its_recall() -> None:
    # Class A in both records: TN + FP = 0, accuracy (TP + TN) / N = 1/2 = recall; B is invented.
    assert release_accuracy(["A", "A"], ["\\boxed{A}", "\\boxed{B}"]) == pytest.approx(0.5)


def test_invented_labels_are_left_out() -> None:
    # A: r1 TP, r2 TN -> 1.  B: r1 TN, r2 FN -> 1/2.  X and Y have no support -> (1 + 1/2) / 2.
    assert release_accuracy(["A", "B"], ["\\boxed{A, X}", "\\boxed{Y}"]) == pytest.approx(0.75)


def test_a_never_predicted_class_counts_its_true_negatives() -> None:
    # A: r1 TP, r2 FP, r3 FP -> 1/3.  B (never predicted): r1 TN, r2 FN, r3 FN -> 1/3.
    responses = ["\\boxed{A}"] * 3
    assert release_accuracy(["A", "B", "B"], responses) == pytest.approx(1 / 3)


def test_none_labels_are_exact_and_the_whole_response_is_a_fallback() -> None:
    # r1 "None" predicts nothing: A FN.  r2 whole response "a" != "A" (case-sensitive): A FN, B TN.
    # r3 whole response "B": B TP, A TN.  A: TN 1 of 3 -> 1/3.  B: r1 TN, r2 TN, r3 TP -> 1.
    truths = ["A", "A", "B"]
    assert release_accuracy(truths, ["None", "a", "B"]) == pytest.approx((1 / 3 + 1) / 2)
    assert math.isnan(release_accuracy([], []))


def test_acc_release_in_compute_metrics_per_dataset_domain_and_overall() -> None:
    records = [
        # cxr / D1: the hand-worked example above -> 2/3. A record without response reads as
        # \boxed{<predicted>}.
        {"domain": "cxr", "dataset": "D1", "labels": ["A"], "predicted": ["A"]},
        {"domain": "cxr", "dataset": "D1", "labels": ["A", "B"], "predicted": ["B"],
         "response": "so \\boxed{A} or maybe \\boxed{B}"},
        {"domain": "cxr", "dataset": "D1", "labels": ["B"], "predicted": [], "response": "answer: [C]"},
        # cxr / D2: X: TP, TN -> 1; Y: TN, FN -> 1/2 -> 3/4.
        {"domain": "cxr", "dataset": "D2", "labels": ["X"], "predicted": ["X"], "response": "\\boxed{X}"},
        {"domain": "cxr", "dataset": "D2", "labels": ["Y"], "predicted": [], "response": "\\boxed{Z}"},
        # mri / M: T in every record, one hit -> 1/2.
        {"domain": "mri", "dataset": "M", "labels": ["T"], "predicted": ["T"], "response": "\\boxed{T}"},
        {"domain": "mri", "dataset": "M", "labels": ["T"], "predicted": [], "response": "nothing"},
    ]
    rows = {(r["domain"], r["metric"]): (r["value"], r["n"]) for r in compute_metrics(records)}
    cxr = (2 / 3 + 3 / 4) / 2
    assert rows[("cxr", "acc_release")] == (pytest.approx(cxr), 5)
    assert rows[("mri", "acc_release")] == (pytest.approx(0.5), 2)
    assert rows[("overall", "acc_release")] == (pytest.approx((cxr + 0.5) / 2), 7)
    # Not the balanced accuracy, which reads the predicted lists: D1 A (1/2 + 1) / 2, B (1/2 + 1) / 2 -> 3/4;
    # D2 X 1, Y (0 + 1) / 2 -> 3/4; cxr acc 3/4.
    assert rows[("cxr", "acc")][0] == pytest.approx(0.75)


def test_weighted_counts_equal_duplicated_records() -> None:
    # Bootstrap weights (2, 0, 1) must give the accuracy of the records r1, r1, r3 written out:
    # truths A, A, B; predictions A, A, C -> A: TP 2, TN 1 -> 1; B: TN 2, FN 1 -> 2/3 -> 5/6.
    truths = ["A", "A, B", "B"]
    responses = ["\\boxed{A}", "so \\boxed{A} or maybe \\boxed{B}", "answer: [C]"]
    classes, truth = release_truth(truths)
    pred = release_predicted(classes, responses)
    weights = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    got = release_class_accuracy(truth, pred, weights)
    # Row 3 draws r3 only: class A has no support, B: FN 3 -> 0.
    assert got == pytest.approx([2 / 3, 5 / 6, 0.0])
    assert got[1] == pytest.approx(release_accuracy(["A", "A", "B"], [responses[0], responses[0], responses[2]]))
