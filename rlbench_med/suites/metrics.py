"""Evaluation metrics: per-dataset one-vs-rest balanced accuracy and macro-F1, averaged up.

For one dataset with records ``(T_i, P_i)`` (true and predicted label sets) and the classes ``C``
present in the ground truth (``∪ T_i``), each class ``c`` gives a binary task
``y_i = c ∈ T_i``, ``ŷ_i = c ∈ P_i`` with counts TP, FP, FN, TN:

- ``F1_c = 2 TP / (2 TP + FP + FN)``; ``f1`` = mean over ``C`` (macro-F1);
- ``BA_c = (TP / (TP + FN) + TN / (TN + FP)) / 2`` (when a class is in every record, TN + FP = 0
  and ``BA_c`` is its sensitivity, as scikit-learn's ``balanced_accuracy_score`` does);
  ``acc`` = mean over ``C``.

Predicted labels outside ``C`` only count through the classes of ``C`` they fail to hit. Labels
are compared case- and whitespace-insensitively. A domain's ``acc`` / ``f1`` is the mean over its
datasets; ``overall`` is the mean over domains. ``iou`` is the mean of the records' ``iou`` values
in a domain (records without one are not counted), and ``overall`` iou the mean over the domains
that have one. ``n`` is the number of records behind a row (for ``iou``: those with an IoU).

``acc_release`` is the QoQ-Med release's evaluation accuracy (:func:`~rlbench_med.suites.release.release_accuracy`):
per class ``(TP + TN) / N`` over the ground-truth classes, exact case-sensitive labels, read from
the record's raw ``response`` with the release's "first ``\\boxed{}``" rule (records without a
``response`` are read as ``\\boxed{<predicted labels>}``); averaged over datasets and domains like ``acc``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rlbench_med.suites.catalogue import normalize_label, order_domains
from rlbench_med.suites.release import release_accuracy

METRICS = ("acc", "f1", "iou", "acc_release")


def _labels(value: Any) -> Sequence[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return [v for v in value.split(",") if v.strip()]
    return value


def _release_response(rec: Mapping[str, Any]) -> str:
    """The record's raw ``response``, else the canonical ``\\boxed{}`` text of its predicted labels."""
    response = rec.get("response")
    if isinstance(response, str):
        return response
    return "\\boxed{" + ", ".join(_labels(rec.get("predicted"))) + "}"


def one_vs_rest_scores(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (balanced accuracy, F1) from bool indicator matrices ``[n_records, n_classes]``."""
    t = truth.astype(bool)
    p = predicted.astype(bool)
    tp = (t & p).sum(0).astype(np.float64)
    fn = (t & ~p).sum(0).astype(np.float64)
    fp = (~t & p).sum(0).astype(np.float64)
    tn = (~t & ~p).sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    ba = np.nanmean(np.stack([sens, spec]), axis=0)
    return ba, f1


def dataset_scores(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> tuple[float, float, int]:
    """(acc, f1, number of classes) of one dataset's records, as defined in the module docstring."""
    norm: dict[str, str] = {}

    def key(label: str) -> str:
        k = norm.get(label)
        if k is None:
            k = norm[label] = normalize_label(label)
        return k

    true_keys = [{key(x) for x in labels} for labels in truth]
    classes = sorted(set().union(*true_keys)) if true_keys else []
    if not classes:
        return float("nan"), float("nan"), 0
    index = {c: j for j, c in enumerate(classes)}
    n = len(true_keys)
    t = np.zeros((n, len(classes)), dtype=bool)
    p = np.zeros((n, len(classes)), dtype=bool)
    for i, (tk, labels) in enumerate(zip(true_keys, predicted)):
        for c in tk:
            t[i, index[c]] = True
        for x in labels:
            j = index.get(key(x))
            if j is not None:
                p[i, j] = True
    ba, f1 = one_vs_rest_scores(t, p)
    return float(ba.mean()), float(f1.mean()), len(classes)


def compute_metrics(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{"domain", "metric", "value", "n"}`` per domain and ``overall``.

    ``records``: mappings with ``domain``, ``dataset``, ``labels`` (true, list), ``predicted``
    (list) and optionally ``iou`` (float or None) and ``response`` (the raw text). Metrics: ``acc``,
    ``f1``, ``acc_release``, and ``iou`` where any record of the domain has one.
    """
    groups: dict[str, dict[str, tuple[list[Sequence[str]], list[Sequence[str]]]]] = {}
    ious: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    release_inputs: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
    for rec in records:
        domain = str(rec["domain"])
        by_dataset = groups.setdefault(domain, {})
        truth, pred = by_dataset.setdefault(str(rec["dataset"]), ([], []))
        truth.append(_labels(rec["labels"]))
        pred.append(_labels(rec.get("predicted")))
        counts[domain] = counts.get(domain, 0) + 1
        truths, responses = release_inputs.setdefault(domain, {}).setdefault(str(rec["dataset"]), ([], []))
        truths.append(", ".join(_labels(rec["labels"])))
        responses.append(_release_response(rec))
        iou = rec.get("iou")
        if iou is not None:
            ious.setdefault(domain, []).append(float(iou))
    rows: list[dict[str, Any]] = []
    summary: dict[str, list[float]] = {m: [] for m in METRICS}
    for domain in order_domains(groups):
        accs, f1s = [], []
        for truth, pred in groups[domain].values():
            acc, f1, n_classes = dataset_scores(truth, pred)
            if n_classes:
                accs.append(acc)
                f1s.append(f1)
        values = {"acc": float(np.mean(accs)) if accs else float("nan"), "f1": float(np.mean(f1s)) if f1s else float("nan")}
        release = [a for t, r in release_inputs[domain].values() if not np.isnan(a := release_accuracy(t, r))]
        values["acc_release"] = float(np.mean(release)) if release else float("nan")
        if domain in ious:
            values["iou"] = float(np.mean(ious[domain]))
        for metric, value in values.items():
            n = len(ious[domain]) if metric == "iou" else counts[domain]
            rows.append({"domain": domain, "metric": metric, "value": value, "n": n})
            summary[metric].append(value)
    totals = {"acc": sum(counts.values()), "f1": sum(counts.values()), "iou": sum(len(v) for v in ious.values()),
              "acc_release": sum(counts.values())}
    for metric in METRICS:
        if summary[metric]:
            rows.append({"domain": "overall", "metric": metric, "value": float(np.mean(summary[metric])), "n": totals[metric]})
    return rows
