"""Paired comparison of two algorithms: per-domain difference with a hierarchical bootstrap CI.

Both algorithms are evaluated on the same held-out samples with the same seeds, so the
difference is paired. One bootstrap replicate draws ``S`` seeds with replacement from the ``S``
seeds both algorithms ran, and for each drawn seed resamples the evaluation samples of every
dataset with replacement (the same draw for both algorithms). Each algorithm's metric is then
recomputed from the resampled predictions (weighted counts, see :func:`weighted_scores`),
averaged over the drawn seeds, and the replicate's difference is ``A - B``. The CI is the
percentile interval of the replicates; the point estimate is the difference of the seed means
on the full evaluation set.

Metrics follow ``suites/metrics.py``: per dataset, one-vs-rest over the classes present in the
ground truth, ``f1`` = macro-F1, ``acc`` = mean over classes of (sensitivity + specificity) / 2
(sensitivity alone when a class is in every sample); a domain is the mean over its datasets,
``overall`` the mean over domains; a domain's ``iou`` is the mean IoU of all its samples that have
one (pooled over its datasets, not a mean of dataset means).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlbench_med.suites.catalogue import normalize_label
from rlbench_med.suites.metrics import _labels  # results.csv label parsing

Record = Mapping[str, Any]


class ComparisonError(ValueError):
    """Predictions that cannot be compared (different evaluation samples, no common seed)."""


@dataclass(frozen=True)
class Comparison:
    """``diff`` = mean over seeds of A minus mean over seeds of B, with a ``level`` bootstrap CI."""

    domain: str
    metric: str
    diff: float
    low: float
    high: float
    n_seeds: int
    n_samples: int
    level: float = 0.95

    @property
    def significant(self) -> bool:
        """True when the CI excludes 0."""
        return bool(self.low > 0 or self.high < 0)


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """The records of a predictions JSONL file (``domain``, ``dataset``, ``labels``, ``predicted``, ``iou``?)."""
    records = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
    return records


@dataclass
class _Dataset:
    domain: str
    truth: np.ndarray  # [N, C] bool
    classes: list[str]
    preds: dict[tuple[str, int], np.ndarray]  # (algo, seed) -> [N, C] bool
    ious: dict[tuple[str, int], np.ndarray]  # (algo, seed) -> [N] float, nan where not scored


def _encode(runs: Mapping[tuple[str, int], Sequence[Record]]) -> list[_Dataset]:
    """Group every run's records by (domain, dataset); check all runs hold the same samples.

    Samples are matched by ``uid`` when every record has one, else by their order in the file.
    """
    grouped: dict[tuple[str, str], dict[tuple[str, int], list[Record]]] = {}
    for key, records in runs.items():
        for rec in records:
            grouped.setdefault((str(rec["domain"]), str(rec["dataset"])), {}).setdefault(key, []).append(rec)
    for per_run in grouped.values():
        for key, recs in per_run.items():
            if all("uid" in r for r in recs):  # align samples by id when the files carry one
                per_run[key] = sorted(recs, key=lambda r: str(r["uid"]))
    out: list[_Dataset] = []
    for (domain, dataset), per_run in grouped.items():
        missing = [k for k in runs if k not in per_run]
        if missing:
            raise ComparisonError(f"dataset {dataset} ({domain}) has no predictions in run {missing[0][0]} seed {missing[0][1]}")
        truths = {k: [frozenset(normalize_label(x) for x in _labels(r["labels"])) for r in recs] for k, recs in per_run.items()}
        reference = next(iter(truths.values()))
        for k, t in truths.items():
            if t != reference:
                raise ComparisonError(
                    f"dataset {dataset} ({domain}): run {k[0]} seed {k[1]} was evaluated on other samples "
                    f"({len(t)} vs {len(reference)}, or a different order); the comparison needs the same held-out set"
                )
        classes = sorted(set().union(*reference)) if reference else []
        index = {c: j for j, c in enumerate(classes)}
        truth = np.zeros((len(reference), len(classes)), dtype=bool)
        for i, labels in enumerate(reference):
            for c in labels:
                truth[i, index[c]] = True
        preds: dict[tuple[str, int], np.ndarray] = {}
        ious: dict[tuple[str, int], np.ndarray] = {}
        for k, recs in per_run.items():
            p = np.zeros_like(truth)
            iou = np.full(len(recs), np.nan)
            for i, rec in enumerate(recs):
                for x in _labels(rec.get("predicted")):
                    j = index.get(normalize_label(x))
                    if j is not None:
                        p[i, j] = True
                if rec.get("iou") is not None:
                    iou[i] = float(rec["iou"])
            preds[k] = p
            ious[k] = iou
        out.append(_Dataset(domain, truth, classes, preds, ious))
    return out


def weighted_scores(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(acc, f1) of one dataset under sample weights.

    Args:
        truth, pred: ``[N, C]`` bool indicators of the true / predicted classes.
        weights: ``[R, N]`` non-negative sample weights (bootstrap counts; all ones = the plain metric).

    Returns:
        ``acc [R]``, ``f1 [R]``: with weighted counts ``TP = W @ (t & p)`` etc., per class
        ``F1 = 2TP / (2TP + FP + FN)`` and ``BA = (TP/(TP+FN) + TN/(TN+FP)) / 2`` (one term when the
        other is undefined), averaged over the classes with ``TP + FN > 0``.
    """
    t = truth.astype(np.float64)
    p = pred.astype(np.float64)
    w = weights.astype(np.float64)
    tp = w @ (t * p)
    fn = w @ (t * (1 - p))
    fp = w @ ((1 - t) * p)
    tn = w @ ((1 - t) * (1 - p))
    present = (tp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(present, tp / np.where(present, tp + fn, 1), np.nan)
        negs = (tn + fp) > 0
        spec = np.where(negs, tn / np.where(negs, tn + fp, 1), np.nan)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        ba = np.where(np.isnan(spec), sens, np.where(np.isnan(sens), spec, (sens + spec) / 2))
        n_present = present.sum(1)
        acc = np.where(n_present > 0, np.where(present, ba, 0).sum(1) / np.maximum(n_present, 1), np.nan)
        f1m = np.where(n_present > 0, np.where(present, f1, 0).sum(1) / np.maximum(n_present, 1), np.nan)
    return acc, f1m


def _domain_values(datasets: Sequence[_Dataset], key: tuple[str, int], weights: Sequence[np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """``{(domain, metric): [R]}`` (and ``overall``) of one run under per-dataset weights.

    ``acc`` / ``f1`` of a domain are the mean over its datasets; its ``iou`` is pooled over the
    records of all its datasets (weighted sum of IoUs / weighted count of records with an IoU), as
    ``suites/metrics.compute_metrics`` does, so that it matches results.csv.
    """
    per: dict[tuple[str, str], list[np.ndarray]] = {}
    iou_sum: dict[str, np.ndarray] = {}
    iou_count: dict[str, np.ndarray] = {}
    for ds, w in zip(datasets, weights):
        acc, f1 = weighted_scores(ds.truth, ds.preds[key], w)
        per.setdefault((ds.domain, "acc"), []).append(acc)
        per.setdefault((ds.domain, "f1"), []).append(f1)
        iou = ds.ious[key]
        has = ~np.isnan(iou)
        if has.any():
            wh = w[:, has].astype(np.float64)
            iou_sum[ds.domain] = iou_sum.get(ds.domain, 0.0) + wh @ iou[has]
            iou_count[ds.domain] = iou_count.get(ds.domain, 0.0) + wh.sum(1)
    out: dict[tuple[str, str], np.ndarray] = {}
    for (domain, metric), values in per.items():
        out[(domain, metric)] = np.stack(values).mean(0)
        if metric == "f1" and domain in iou_sum:
            with np.errstate(invalid="ignore", divide="ignore"):  # nan where no record with an IoU was drawn
                out[(domain, "iou")] = iou_sum[domain] / iou_count[domain]
    for metric in ("acc", "f1", "iou"):
        domain_vals = [v for (d, m), v in out.items() if m == metric]
        if domain_vals:
            out[("overall", metric)] = np.mean(np.stack(domain_vals), 0)
    return out


def paired_bootstrap(
    a: Mapping[int, Sequence[Record]],
    b: Mapping[int, Sequence[Record]],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> list[Comparison]:
    """Per-domain (and overall) difference A - B with a hierarchical paired bootstrap CI.

    Args:
        a, b: ``{seed: predictions records}`` of the two algorithms (records as in a predictions
            file). Only the seeds present in both are used.
        n_boot: bootstrap replicates; ``level``: CI coverage; ``seed``: RNG seed (deterministic).
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ComparisonError("the two algorithms share no seed; run them with the same --seeds")
    runs = {("A", s): a[s] for s in seeds} | {("B", s): b[s] for s in seeds}
    datasets = _encode(runs)
    rng = np.random.default_rng(seed)
    S = len(seeds)
    drawn = rng.integers(0, S, size=(n_boot, S))  # [R, S] seed index per slot
    acc_a: dict[tuple[str, str], np.ndarray] = {}
    acc_b: dict[tuple[str, str], np.ndarray] = {}
    for slot in range(S):
        weights = [rng.multinomial(ds.truth.shape[0], np.full(ds.truth.shape[0], 1 / ds.truth.shape[0]), size=n_boot)
                   for ds in datasets]
        for si, s in enumerate(seeds):
            # Score seed s only on the replicates that drew it in this slot (~n_boot / S of them).
            use = np.flatnonzero(drawn[:, slot] == si)
            if use.size == 0:
                continue
            sub = [w[use] for w in weights]
            va = _domain_values(datasets, ("A", s), sub)
            vb = _domain_values(datasets, ("B", s), sub)
            for k in va:
                acc_a.setdefault(k, np.zeros(n_boot))[use] += va[k] / S
                acc_b.setdefault(k, np.zeros(n_boot))[use] += vb[k] / S
    ones = [np.ones((1, ds.truth.shape[0])) for ds in datasets]
    point_a = {s: _domain_values(datasets, ("A", s), ones) for s in seeds}
    point_b = {s: _domain_values(datasets, ("B", s), ones) for s in seeds}
    counts: dict[str, int] = {}
    for ds in datasets:
        counts[ds.domain] = counts.get(ds.domain, 0) + ds.truth.shape[0]
    counts["overall"] = sum(ds.truth.shape[0] for ds in datasets)
    alpha = (1 - level) / 2
    out: list[Comparison] = []
    for key in acc_a:
        diffs = acc_a[key] - acc_b[key]
        diff = float(np.mean([point_a[s][key][0] for s in seeds]) - np.mean([point_b[s][key][0] for s in seeds]))
        low, high = np.nanquantile(diffs, [alpha, 1 - alpha])
        out.append(Comparison(key[0], key[1], diff, float(low), float(high), S, counts[key[0]], level))
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of finite values, and their count."""
    arr = np.asarray([v for v in values if v == v], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan"), 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std, int(arr.size)
