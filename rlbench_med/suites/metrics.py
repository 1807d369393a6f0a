"""Evaluation metrics: per dataset, then averaged per domain and overall.

A prediction is a *set* of labels. For one dataset with records ``(T_i, P_i)`` (true and
predicted label sets, labels compared case- and whitespace-insensitively) and the classes ``C``
present in its ground truth (``∪ T_i``), each class ``c`` gives a binary task ``y_i = c ∈ T_i``,
``ŷ_i = c ∈ P_i`` with counts TP, FP, FN, TN. Predicted labels outside ``C`` only count through
the classes of ``C`` they fail to hit.

The paper's metrics (QoQ-Med, arXiv 2506.00711, Sec. 4: "balanced accuracy and macro-F1"):

- ``f1``: macro-F1, the mean over ``C`` of ``F1_c = 2 TP / (2 TP + FP + FN)``.
- ``acc``: balanced accuracy, the mean over ``C`` of ``(TP / (TP + FN) + TN / (TN + FP)) / 2``
  (when a class is in every record, TN + FP = 0 and the class scores its sensitivity, as
  scikit-learn's ``balanced_accuracy_score`` does).

Both pay for hedging: answering a single-label question with every class of its dataset scores
``acc`` 0.5 and an ``f1`` that can beat a trained model. So beside them (ours):

- ``exact``: the fraction of records whose predicted set equals the true set.
- ``f1_strict``, the headline, that answering every class cannot win on any dataset: on a
  *single-label* dataset, macro-F1 as ``f1`` except that an answer naming more than one label
  counts as no prediction (a miss for the true class, no false positive): predicting every class
  scores 0. On a *multi-label* dataset, the record-wise set F1, the mean over records of
  ``2 |P_i ∩ T_i| / (|P_i| + |T_i|)`` (1 when both are empty; every predicted label counts in
  ``|P_i|``, known or not): predicting every one of ``C`` classes scores ``2 |T_i| / (C + |T_i|)``
  per record, far below a model that names the findings. Whether a dataset is multi-label is its
  declaration (``multi_label`` in the catalogue or in classes.json, passed as ``multi_label``);
  a dataset declared nowhere is multi-label when one of its records has several true labels.
- ``labels``: the mean number of distinct labels per answer (compare with the truth's mean).
- ``iou``: the mean IoU of a domain's records that have one (pooled over its datasets, not a mean of
  dataset means); ``overall`` iou is the mean over the domains that have one.

The release's (QoQ-Med release, ``examples/reward_function/evaluation.py``):

- ``acc_release``: plain per-class accuracy ``(TP + TN) / N`` averaged over the classes with
  support, with exact case-sensitive labels read from the record's raw ``response`` by the
  release's "first ``\\boxed{}``" rule (:func:`~rlbench_med.suites.release.release_accuracy`;
  records without a ``response`` are read as ``\\boxed{<predicted labels>}``). True negatives
  inflate it: it is not balanced accuracy.

Worked example (one single-label dataset with classes A and B)::

    truth   A       B     A
    pred    A, B    B     (none)

    f1:        A: TP 1, FP 0, FN 1 -> 2/3;   B: TP 1, FP 1, FN 0 -> 2/3;   f1 = 2/3
    acc:       A: sens 1/2, spec 1/1 -> 3/4; B: sens 1/1, spec 1/2 -> 3/4; acc = 3/4
    f1_strict: "A, B" names two labels, so it counts as no prediction:
               A: TP 0, FN 2 -> 0;           B: TP 1, FP 0, FN 0 -> 1;     f1_strict = 1/2
    exact = 1/3;  labels = (2 + 1 + 0) / 3 = 1

A domain's value of every metric but ``iou`` is the mean over its datasets that have at least one
class; ``overall`` is the mean over domains. ``n`` of a row is the number of records behind it (for
``iou``: those with an IoU).

Every metric is computed from weighted counts (:func:`aggregate`), so the same code gives the
plain metric (all weights 1) and its bootstrap replicates (``reports/stats.py``). The replicates'
weights (:func:`bootstrap_weights`) resample a dataset's records within strata (each record's
rarest true class), so every class of the point estimate stays in every replicate and a replicate
measures the same metric: a resample that dropped a rare class would average over fewer classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlbench_med.suites.catalogue import declared_multi_label, normalize_label, order_domains
from rlbench_med.suites.release import multi_hot, release_class_accuracy, release_predicted, release_truth

METRICS = ("acc", "f1", "exact", "f1_strict", "labels", "acc_release", "iou")
"""Every metric :func:`compute_metrics` can write, in report order."""

DESCRIPTIVE_METRICS = frozenset({"labels"})
"""Metrics that describe answers rather than score them (no better/worse direction)."""


def label_list(value: Any) -> Sequence[str]:
    """The labels of a record field: a list, or a comma-separated string (results files), or None."""
    if value is None:
        return ()
    if isinstance(value, str):
        return [v for v in value.split(",") if v.strip()]
    return value


def release_response(rec: Mapping[str, Any]) -> str:
    """The record's raw ``response``, else the canonical ``\\boxed{}`` text of its predicted labels."""
    response = rec.get("response")
    if isinstance(response, str):
        return response
    return "\\boxed{" + ", ".join(label_list(rec.get("predicted"))) + "}"


def label_keys(value: Any) -> frozenset[str]:
    """The comparison keys (:func:`normalize_label`) of a record's labels."""
    return frozenset(normalize_label(x) for x in label_list(value))


@dataclass
class DatasetTruth:
    """The ground truth of one dataset's records: ``truth[i, j]`` is class ``classes[j]`` in ``T_i``."""

    domain: str
    dataset: str
    classes: list[str]  # comparison keys, sorted
    truth: np.ndarray  # [N, C] bool
    keys: list[frozenset[str]]  # T_i as comparison keys
    multi_label: bool
    release_classes: list[str] | None = None  # the release evaluation's classes (exact strings)
    release_truth: np.ndarray | None = None  # [N, C'] bool

    @property
    def n(self) -> int:
        return self.truth.shape[0]

    @classmethod
    def from_records(
        cls, domain: str, dataset: str, records: Sequence[Mapping[str, Any]], multi_label: bool | None = None
    ) -> DatasetTruth:
        """The truth of one dataset's records; ``multi_label``: its declaration (None: the catalogue's,
        else multi-label when a record has several true labels). A record's own field never decides."""
        keys = [label_keys(r["labels"]) for r in records]
        classes, truth = multi_hot(keys)
        multi = multi_label if multi_label is not None else declared_multi_label(dataset)
        if multi is None:
            multi = any(len(k) > 1 for k in keys)
        rel_classes, rel_truth = release_truth([", ".join(label_list(r["labels"])) for r in records])
        return cls(domain, dataset, classes, truth, keys, multi, rel_classes, rel_truth)

    def encode(self, records: Sequence[Mapping[str, Any]]) -> DatasetPredictions:
        """Encode predictions of the same records (same order) against this truth."""
        index = {c: j for j, c in enumerate(self.classes)}
        pred = np.zeros_like(self.truth)
        n_pred = np.zeros(self.n, dtype=np.float64)
        exact = np.zeros(self.n, dtype=bool)
        iou = np.full(self.n, np.nan)
        for i, rec in enumerate(records):
            keys = label_keys(rec.get("predicted"))
            for c in keys:
                j = index.get(c)
                if j is not None:
                    pred[i, j] = True
            n_pred[i] = len(keys)
            exact[i] = keys == self.keys[i]
            if rec.get("iou") is not None:
                iou[i] = float(rec["iou"])
        release = None
        if self.release_classes is not None:
            release = release_predicted(self.release_classes, [release_response(r) for r in records])
        return DatasetPredictions(pred, n_pred, exact, iou, release)


@dataclass
class DatasetPredictions:
    """One run's predictions of a dataset's records, encoded against its :class:`DatasetTruth`."""

    pred: np.ndarray  # [N, C] bool, predicted classes among the truth's classes
    n_pred: np.ndarray  # [N] distinct predicted labels (any label, known or not)
    exact: np.ndarray  # [N] bool, predicted set == true set
    iou: np.ndarray  # [N] float, nan where not scored
    release: np.ndarray | None = None  # [N, C'] bool, the release evaluation's reading of the responses


def _one_vs_rest(truth: np.ndarray, pred: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over present classes of balanced accuracy and F1 under sample weights ``w [R, N]`` -> ``[R]`` each."""
    t = truth.astype(np.float64)
    p = pred.astype(np.float64)
    tp = w @ (t * p)
    fn = w @ (t * (1 - p))
    fp = w @ ((1 - t) * p)
    tn = w @ ((1 - t) * (1 - p))
    present = (tp + fn) > 0  # a class counts when a (drawn) record has it
    negs = (tn + fp) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(present, tp / np.where(present, tp + fn, 1), np.nan)
        spec = np.where(negs, tn / np.where(negs, tn + fp, 1), np.nan)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        ba = np.where(np.isnan(spec), sens, (sens + spec) / 2)
    n_present = present.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_present > 0, np.where(present, ba, 0).sum(1) / np.maximum(n_present, 1), np.nan)
        f1m = np.where(n_present > 0, np.where(present, f1, 0).sum(1) / np.maximum(n_present, 1), np.nan)
    return acc, f1m


def _set_f1(truth: np.ndarray, pred: DatasetPredictions) -> np.ndarray:
    """Per record ``2 |P ∩ T| / (|P| + |T|)`` (1 when both are empty) -> ``[N]``."""
    hits = (truth & pred.pred).sum(1).astype(np.float64)
    size = pred.n_pred + truth.sum(1)
    return np.where(size > 0, 2 * hits / np.maximum(size, 1), 1.0)


def bootstrap_weights(truth: DatasetTruth, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, N]`` resampling weights of one dataset's records, stratified so every replicate keeps its classes.

    Each record's stratum is its rarest true class (ties: the first in ``classes``; a record
    without a true label is a stratum of its own kind). A stratum of ``m >= 2`` records draws
    ``m - 1`` of them with replacement and weighs each draw ``m / (m - 1)``: its total weight stays
    ``m``, and the bootstrap variance of a mean is the unbiased ``s^2 / m`` rather than the plain
    bootstrap's ``(m - 1) / m`` of it, which matters for the small strata of a test split (McCarthy and
    Snowden, 1985). A stratum of one record keeps it (weight 1): it has nothing to resample. Every
    class present in the data is then present in every replicate of a single-label dataset (and of a
    multi-label one unless a class only ever appears beside a rarer one).
    """
    t = truth.truth
    counts = t.sum(0)
    # a record's rarest class; records without a label get the stratum -1
    rank = np.where(t, counts[None, :] * (t.shape[1] + 1) + np.arange(t.shape[1])[None, :], np.iinfo(np.int64).max)
    strata = np.where(t.any(1), rank.argmin(1) if t.shape[1] else -1, -1)
    w = np.ones((n_boot, truth.n))
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        m = members.size
        if m >= 2:
            w[:, members] = rng.multinomial(m - 1, np.full(m, 1 / m), size=n_boot) * (m / (m - 1))
    return w


def dataset_values(truth: DatasetTruth, pred: DatasetPredictions, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric but ``iou`` of one dataset under sample weights ``[R, N]`` (ones: the plain metric) -> ``[R]``."""
    w = np.asarray(weights, dtype=np.float64)
    acc, f1 = _one_vs_rest(truth.truth, pred.pred, w)
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if truth.multi_label:
            f1_strict = (w @ _set_f1(truth.truth, pred)) / total
        else:
            _, f1_strict = _one_vs_rest(truth.truth, pred.pred & (pred.n_pred <= 1)[:, None], w)
        exact = (w @ pred.exact.astype(np.float64)) / total
        labels = (w @ pred.n_pred) / total
    out = {"acc": acc, "f1": f1, "exact": exact, "f1_strict": f1_strict, "labels": labels}
    if truth.release_truth is not None and pred.release is not None:
        out["acc_release"] = release_class_accuracy(truth.release_truth, pred.release, w)
    return out


def aggregate(
    datasets: Sequence[tuple[DatasetTruth, DatasetPredictions]], weights: Sequence[np.ndarray]
) -> dict[tuple[str, str], np.ndarray]:
    """``{(domain, metric): [R]}`` and ``("overall", metric)`` of one run under per-dataset weights ``[R, N_d]``.

    A domain's metric is the mean over its datasets that have a class (``iou``: pooled over its
    records with an IoU); ``overall`` is the mean over domains (nan where a replicate drew none).
    """
    per: dict[tuple[str, str], list[np.ndarray]] = {}
    iou_sum: dict[str, np.ndarray] = {}
    iou_count: dict[str, np.ndarray] = {}
    for (truth, pred), w in zip(datasets, weights):
        w = np.asarray(w, dtype=np.float64)
        if truth.classes:
            for metric, value in dataset_values(truth, pred, w).items():
                per.setdefault((truth.domain, metric), []).append(value)
        has = ~np.isnan(pred.iou)
        if has.any():
            wh = w[:, has]
            iou_sum[truth.domain] = iou_sum.get(truth.domain, 0.0) + wh @ pred.iou[has]
            iou_count[truth.domain] = iou_count.get(truth.domain, 0.0) + wh.sum(1)
    out: dict[tuple[str, str], np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for key, values in per.items():
            out[key] = _mean_defined(values)
        for domain in iou_sum:
            out[(domain, "iou")] = iou_sum[domain] / iou_count[domain]
    by_metric: dict[str, list[np.ndarray]] = {}
    for (_, metric), value in out.items():
        by_metric.setdefault(metric, []).append(value)
    for metric in METRICS:
        if metric in by_metric:
            out[("overall", metric)] = _mean_defined(by_metric[metric])
    return out


def _mean_defined(values: Sequence[np.ndarray]) -> np.ndarray:
    """Element-wise mean of ``[R]`` arrays over the ones that are not nan (nan where none is)."""
    if len(values) == 1:
        return values[0]
    arr = np.stack(values)
    defined = ~np.isnan(arr)
    count = defined.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(defined, arr, 0.0).sum(0) / count, np.nan)


def group_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Records grouped by ``(domain, dataset)``, domains in report order, file order within a group."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault((str(rec["domain"]), str(rec["dataset"])), []).append(rec)
    order = {d: i for i, d in enumerate(order_domains(d for d, _ in groups))}
    return dict(sorted(groups.items(), key=lambda item: order[item[0][0]]))


def compute_metrics(
    records: Iterable[Mapping[str, Any]], multi_label: Mapping[str, bool] | None = None
) -> list[dict[str, Any]]:
    """Rows ``{"domain", "metric", "value", "n"}`` per domain and ``overall``, metrics in :data:`METRICS` order.

    ``records``: mappings with ``domain``, ``dataset``, ``labels`` (true, list), ``predicted``
    (list) and optionally ``iou`` (float or None). ``iou`` rows appear where any record of the
    domain has one. ``multi_label``: ``{dataset: declared multi-label}`` (e.g. a loaded data set's
    ``multi_label``) for datasets whose declaration is not the catalogue's (module docstring).
    """
    groups = group_records(records)
    declared = multi_label or {}
    encoded = []
    for (domain, dataset), recs in groups.items():
        truth = DatasetTruth.from_records(domain, dataset, recs, declared.get(dataset))
        encoded.append((truth, truth.encode(recs)))
    values = aggregate(encoded, [np.ones((1, t.n)) for t, _ in encoded])
    counts: dict[str, int] = {}
    scored: dict[str, int] = {}
    for truth, pred in encoded:
        counts[truth.domain] = counts.get(truth.domain, 0) + truth.n
        scored[truth.domain] = scored.get(truth.domain, 0) + int((~np.isnan(pred.iou)).sum())
    counts["overall"] = sum(counts.values())
    scored["overall"] = sum(scored.values())
    rows: list[dict[str, Any]] = []
    for domain in [*order_domains(counts.keys() - {"overall"}), "overall"]:
        for metric in METRICS:
            if (domain, metric) in values:
                n = scored[domain] if metric == "iou" else counts[domain]
                rows.append({"domain": domain, "metric": metric, "value": float(values[(domain, metric)][0]), "n": n})
    return rows


def dataset_scores(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> tuple[float, float, int]:
    """(acc, f1, number of classes) of one dataset's records, as defined in the module docstring."""
    records = [{"labels": t, "predicted": p} for t, p in zip(truth, predicted)]
    encoded = DatasetTruth.from_records("", "", records)
    if not encoded.classes:
        return float("nan"), float("nan"), 0
    values = dataset_values(encoded, encoded.encode(records), np.ones((1, encoded.n)))
    return float(values["acc"][0]), float(values["f1"][0]), len(encoded.classes)
