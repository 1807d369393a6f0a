"""Comparisons of two algorithms with intervals that keep their promise.

Every run of a report (algorithm x seed, ``base``, the floors) was evaluated on the same held-out
records, so differences are paired. :class:`EvaluationSet` encodes those records once (metrics as
in ``suites/metrics.py``) and draws one set of bootstrap weights for the whole report: replicate
``r`` resamples the records of every dataset with replacement, the same draw for every run.

For ``A - B`` on one (domain, metric) cell, with ``S`` seeds of ``A`` (and of ``B``, paired by
seed; or a *constant* ``B``: ``base`` and the floors do not depend on the training seed), the
seed-level differences are ``d_s = A_s - B_s`` and ``diff = mean(d_s)``.

- ``S >= 2`` (method ``paired-t``): ``se = sqrt(var(d_s) / S + var_eval)``, where ``var(d_s)`` is
  the sample variance over seeds and ``var_eval`` the bootstrap variance of ``diff`` under
  resampled evaluation records (the test set is shared by all seeds, so seed-to-seed spread alone
  misses its sampling noise). The interval is ``diff ± t(S-1, 0.975) se`` and the p-value is the
  two-sided Student-t tail of ``diff / se`` with ``S - 1`` degrees of freedom. Since
  ``var_eval >= 0`` it is never narrower than the paired t-interval over seed-level differences.
- ``S = 1`` (method ``bootstrap-samples``): the percentile interval of the bootstrap differences
  and the two-sided bootstrap p-value ``min(1, 2 min(#{D_r <= 0}, #{D_r >= 0}) / R)``. It covers
  evaluation-sample uncertainty only: a second training seed could land elsewhere.

``significant`` is decided after Holm's correction over the (domain, metric) cells of one
comparison (one algorithm against one baseline), at level ``1 - level``. ``labels`` (a
description, not a score) is not compared.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from rlbench_med.suites.metrics import (
    DESCRIPTIVE_METRICS,
    DatasetPredictions,
    DatasetTruth,
    aggregate,
    group_records,
    label_keys,
)

Record = Mapping[str, Any]
RunKey = tuple[str, int]  # (algo label, seed)

COMPARISON_COLUMNS = (
    "algo", "baseline", "domain", "metric", "diff", "ci_low", "ci_high", "p_value", "n_seeds", "method", "significant",
)
PAIRED_T = "paired-t"
BOOTSTRAP = "bootstrap-samples"


class ComparisonError(ValueError):
    """Predictions that cannot be compared (different evaluation records, no common seed)."""


@dataclass(frozen=True)
class Comparison:
    """``diff`` = mean over seeds of ``algo`` minus ``baseline``, with a ``level`` interval (module docstring)."""

    algo: str
    baseline: str
    domain: str
    metric: str
    diff: float
    low: float
    high: float
    p_value: float
    n_seeds: int
    method: str
    significant: bool = False
    n_samples: int = 0
    level: float = 0.95

    def row(self) -> dict[str, Any]:
        """The comparisons.csv row."""
        return {"algo": self.algo, "baseline": self.baseline, "domain": self.domain, "metric": self.metric,
                "diff": self.diff, "ci_low": self.low, "ci_high": self.high, "p_value": self.p_value,
                "n_seeds": self.n_seeds, "method": self.method, "significant": self.significant}


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """The records of a predictions JSONL file (``domain``, ``dataset``, ``labels``, ``predicted``, ``iou``?)."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:  # a file cut short (a full disk, a copy that stopped)
                    raise ComparisonError(f"{path}:{number}: not valid JSON ({exc.msg}); the predictions file is "
                                          "damaged: restore it (its job's MLflow run holds a copy) or train the job "
                                          "again") from None
    return records


class EvaluationSet:
    """The held-out records shared by a report's runs, encoded once, with one set of bootstrap weights.

    Build it with :meth:`from_runs` (prediction records) or directly from encoded arrays:
    ``datasets`` (the truth of each dataset) and ``preds[run key]`` (that run's predictions of each
    dataset, in the same order). Replicate ``r`` draws ``weights[d][r]`` (multinomial counts) for
    the records of dataset ``d``, the same draw for every run.
    """

    def __init__(
        self,
        datasets: Sequence[DatasetTruth],
        preds: Mapping[RunKey, Sequence[DatasetPredictions]],
        *,
        n_boot: int = 2000,
        seed: int = 0,
        excluded: Mapping[RunKey, str] | None = None,
    ) -> None:
        self.datasets = list(datasets)
        self.preds = {k: list(v) for k, v in preds.items()}
        self.excluded = dict(excluded or {})
        rng = np.random.default_rng(seed)
        self.weights = [rng.multinomial(t.n, np.full(t.n, 1 / t.n), size=n_boot).astype(np.float64)
                        for t in self.datasets]
        self._point: dict[RunKey, dict[tuple[str, str], float]] = {}
        self._boot: dict[RunKey, dict[tuple[str, str], np.ndarray]] = {}
        self.n_samples: dict[str, int] = {}
        for t in self.datasets:
            self.n_samples[t.domain] = self.n_samples.get(t.domain, 0) + t.n
        self.n_samples["overall"] = sum(t.n for t in self.datasets)

    @classmethod
    def from_runs(cls, runs: Mapping[RunKey, Sequence[Record]], *, n_boot: int = 2000, seed: int = 0) -> EvaluationSet:
        """From ``{(label, seed): prediction records}``.

        Records are matched by ``uid`` when every record has one, else by their order; a run whose
        records are not the first run's (other samples, another order) is left out and named in
        :attr:`excluded`.
        """
        if not runs:
            raise ComparisonError("no predictions to compare")
        grouped = {key: _aligned_groups(records) for key, records in runs.items()}
        reference = next(iter(grouped.values()))
        datasets = [DatasetTruth.from_records(d, ds, recs) for (d, ds), recs in reference.items()]
        preds: dict[RunKey, list[DatasetPredictions]] = {}
        excluded: dict[RunKey, str] = {}
        for key, groups in grouped.items():
            problem = _mismatch(datasets, groups)
            if problem:
                excluded[key] = problem
                continue
            preds[key] = [t.encode(groups[(t.domain, t.dataset)]) for t in datasets]
        return cls(datasets, preds, n_boot=n_boot, seed=seed, excluded=excluded)

    def __contains__(self, key: RunKey) -> bool:
        return key in self.preds

    def point(self, key: RunKey) -> dict[tuple[str, str], float]:
        """``{(domain, metric): value}`` of one run: the same numbers as results.csv."""
        if key not in self._point:
            values = aggregate(list(zip(self.datasets, self.preds[key])), [np.ones((1, t.n)) for t in self.datasets])
            self._point[key] = {k: float(v[0]) for k, v in values.items()}
        return self._point[key]

    def replicates(self, key: RunKey) -> dict[tuple[str, str], np.ndarray]:
        """``{(domain, metric): [R]}`` of one run under the shared bootstrap weights."""
        if key not in self._boot:
            self._boot[key] = aggregate(list(zip(self.datasets, self.preds[key])), self.weights)
        return self._boot[key]


def _aligned_groups(records: Sequence[Record]) -> dict[tuple[str, str], list[Record]]:
    groups = group_records(records)
    for key, recs in groups.items():
        if recs and all("uid" in r for r in recs):  # align samples by id when the files carry one
            groups[key] = sorted(recs, key=lambda r: str(r["uid"]))
    return groups


def _mismatch(datasets: Sequence[DatasetTruth], groups: Mapping[tuple[str, str], Sequence[Record]]) -> str | None:
    """Why a run's records are not the reference's, or None when they are the same records."""
    names = {(t.domain, t.dataset) for t in datasets}
    if set(groups) != names:
        missing = sorted(names - set(groups)) or sorted(set(groups) - names)
        return f"dataset {missing[0][1]} ({missing[0][0]}) is in one run's predictions and not in the other's"
    for t in datasets:
        recs = groups[(t.domain, t.dataset)]
        if [label_keys(r["labels"]) for r in recs] != t.keys:
            return (f"dataset {t.dataset} ({t.domain}) was evaluated on other samples ({len(recs)} vs {t.n}, or "
                    "another order); a comparison needs the same held-out records")
    return None


def seed_interval(d: np.ndarray, boot: np.ndarray, level: float = 0.95) -> tuple[float, float, float, str]:
    """``(low, high, p_value, method)`` of ``mean(d)`` (module docstring).

    Args:
        d: ``[S]`` seed-level differences ``A_s - B_s``.
        boot: ``[R]`` bootstrap replicates of ``mean(d)`` under resampled evaluation records
            (nan where a replicate is undefined; those are left out).
    """
    d = np.asarray(d, dtype=np.float64)
    boot = np.asarray(boot, dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    diff = float(d.mean())
    alpha = 1 - level
    if d.size >= 2:
        var_eval = float(boot.var(ddof=1)) if boot.size >= 2 else 0.0
        se = math.sqrt(float(d.var(ddof=1)) / d.size + var_eval)
        if se == 0.0:
            return diff, diff, (1.0 if diff == 0 else 0.0), PAIRED_T
        half = float(sps.t.ppf(1 - alpha / 2, d.size - 1)) * se
        p = float(2 * sps.t.sf(abs(diff) / se, d.size - 1))
        return diff - half, diff + half, p, PAIRED_T
    if boot.size == 0:
        return float("nan"), float("nan"), float("nan"), BOOTSTRAP
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(int((boot <= 0).sum()), int((boot >= 0).sum())) / boot.size)
    return float(low), float(high), float(p), BOOTSTRAP


def compare(
    evalset: EvaluationSet,
    algo: str,
    a_seeds: Sequence[int],
    baseline: str,
    b_seeds: Sequence[int],
    *,
    constant_baseline: bool = False,
    level: float = 0.95,
    metrics: Collection[str] | None = None,
) -> list[Comparison]:
    """``algo - baseline`` on every (domain, metric) cell, Holm-corrected (module docstring).

    With ``constant_baseline`` the baseline's value is the mean over its runs ``b_seeds`` (one run
    for ``base``; the draws of ``floor:random``) and pairs with every seed of ``algo``; otherwise
    seeds are paired and only seeds both ran count. ``metrics`` limits the cells (default: every
    metric both runs have, but the descriptive ones).
    """
    a_seeds = [s for s in a_seeds if (algo, s) in evalset]
    b_seeds = [s for s in b_seeds if (baseline, s) in evalset]
    if constant_baseline:
        seeds = a_seeds
    else:
        seeds = sorted(set(a_seeds) & set(b_seeds))
    if not seeds or not b_seeds:
        raise ComparisonError(f"{algo} and {baseline} share no evaluated seed; run them with the same --seeds")
    a_point = [evalset.point((algo, s)) for s in seeds]
    a_boot = [evalset.replicates((algo, s)) for s in seeds]
    if constant_baseline:
        b_point = [_mean_dicts([evalset.point((baseline, s)) for s in b_seeds])] * len(seeds)
        b_boot = [_mean_dicts([evalset.replicates((baseline, s)) for s in b_seeds])] * len(seeds)
    else:
        b_point = [evalset.point((baseline, s)) for s in seeds]
        b_boot = [evalset.replicates((baseline, s)) for s in seeds]
    out: list[Comparison] = []
    for cell in a_point[0]:
        domain, metric = cell
        if metric in DESCRIPTIVE_METRICS or cell not in b_point[0] or (metrics is not None and metric not in metrics):
            continue
        d = np.array([pa[cell] - pb[cell] for pa, pb in zip(a_point, b_point)])
        if not np.isfinite(d).all():
            continue
        with np.errstate(invalid="ignore"):
            boot = np.mean([ra[cell] - rb[cell] for ra, rb in zip(a_boot, b_boot)], axis=0)
        low, high, p, method = seed_interval(d, boot, level)
        out.append(Comparison(algo, baseline, domain, metric, float(d.mean()), low, high, p, len(seeds), method,
                              n_samples=evalset.n_samples.get(domain, 0), level=level))
    return holm(out, 1 - level)


def _mean_dicts(items: Sequence[Mapping[tuple[str, str], Any]]) -> dict[tuple[str, str], Any]:
    keys = set(items[0]).intersection(*items[1:])
    return {k: np.mean([item[k] for item in items], axis=0) for k in keys}


def holm(comparisons: Sequence[Comparison], alpha: float = 0.05) -> list[Comparison]:
    """``significant`` by Holm's step-down procedure over the given cells (one comparison's family).

    Sorted by p-value, the ``i``-th smallest (``i = 0, 1, ...``) is rejected while
    ``p_(i) <= alpha / (m - i)``; the first failure stops the procedure.
    """
    order = sorted(range(len(comparisons)), key=lambda i: (math.isnan(comparisons[i].p_value), comparisons[i].p_value))
    m = len(comparisons)
    rejected = set()
    for rank, i in enumerate(order):
        p = comparisons[i].p_value
        if math.isnan(p) or p > alpha / (m - rank):
            break
        rejected.add(i)
    return [replace(c, significant=i in rejected) for i, c in enumerate(comparisons)]


def write_comparisons(path: Path, comparisons: Iterable[Comparison]) -> Path:
    """Write ``comparisons.csv`` (columns :data:`COMPARISON_COLUMNS`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COMPARISON_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for c in comparisons:
            writer.writerow(c.row())
    tmp.replace(path)
    return path


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of finite values, and their count."""
    arr = np.asarray([v for v in values if v == v], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan"), 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std, int(arr.size)
