"""Comparisons of two algorithms: a difference, its standard error and an interval that keeps its promise.

Every run of a report (algorithm x seed, ``base``, the floors) was evaluated on the same held-out
records, so differences are paired. :class:`EvaluationSet` encodes those records once (metrics as
in ``suites/metrics.py``) and draws one set of bootstrap weights for the whole report: replicate
``r`` resamples the records of every dataset (stratified by class,
:func:`~rlbench_med.suites.metrics.bootstrap_weights`), the same draw for every run.

For ``A - B`` on one (domain, metric) cell, with ``S`` seeds of ``A`` (and of ``B``, paired by
seed; or a *constant* ``B``: ``base`` and the floors do not depend on the training seed), the
seed-level differences are ``d_s = A_s - B_s``, ``diff = mean(d_s)``, and ``D_s^r`` is ``d_s``
under replicate ``r``. :func:`estimate` gives its :class:`Estimate`:

- ``S >= 2``: ``se^2 = s^2 / S + c`` with ``s^2`` the variance of the ``d_s`` over seeds and ``c``
  the mean covariance of ``D_s`` and ``D_t`` (``s != t``) over replicates: the evaluation noise the
  seeds share, which their spread cannot show. Degrees of freedom by Satterthwaite; where the
  seed spread is below the evaluation noise the seeds do not share (``e``, tied seeds included) the
  evaluation noise replaces it (:func:`rlbench_med.suites.power.standard_error`, derived in the
  README). Method ``paired-satterthwaite``, ``evaluation-floor`` or ``seeds-tied``.
- ``S = 1`` (method ``bootstrap-samples``): the percentile interval of the ``D^r`` and the
  bootstrap p-value ``min(1, 2 min(#{D^r <= 0}, #{D^r >= 0}) / R)``. It covers evaluation-sample
  uncertainty only: a second training seed could land elsewhere.

:func:`compare` gives every cell its two-sided interval at ``level``; which cells are tested, and
at which level, is the testing plan's (:mod:`.testing`). ``labels`` (a description, not a score) is
not compared.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from rlbench_med.suites.metrics import (
    DESCRIPTIVE_METRICS,
    DatasetPredictions,
    DatasetTruth,
    aggregate,
    bootstrap_weights,
    group_records,
    label_keys,
)
from rlbench_med.suites.power import GREATER, TWO_SIDED, standard_error

Record = Mapping[str, Any]
RunKey = tuple[str, int]  # (algo label, seed)

COMPARISON_COLUMNS = (
    "algo", "baseline", "domain", "metric", "diff", "ci_low", "ci_high", "p_value", "n_seeds", "method", "significant",
    "family", "p_adjusted",
)
PAIRED_T = "paired-satterthwaite"
EVALUATION_FLOOR = "evaluation-floor"
TIED = "seeds-tied"
BOOTSTRAP = "bootstrap-samples"
#: Methods whose interval covers evaluation noise only (no training seed variation measured).
EVALUATION_ONLY = frozenset({BOOTSTRAP})
#: Variances below this (an sd of 1e-10 on metrics of order 1) are rounding error: replicates that
#: never move, seeds that tied, are exactly 0.
ROUNDING_VAR = 1e-20


class ComparisonError(ValueError):
    """Predictions that cannot be compared (different evaluation records, no common seed)."""


@dataclass(frozen=True)
class Estimate:
    """``diff`` with its standard error (module docstring) and what it rests on.

    ``seed_var`` (``s^2``), ``shared_var`` (``c``) and ``eval_var`` (``e``) are the variance parts
    of ``S >= 2`` seeds; with one seed ``se`` is the sd of the bootstrap replicates ``boot``.
    """

    diff: float
    se: float
    df: float
    n_seeds: int
    method: str
    seed_var: float = 0.0
    shared_var: float = 0.0
    eval_var: float = 0.0
    boot: np.ndarray | None = field(default=None, repr=False, compare=False)

    def interval(self, alpha: float = 0.05, alternative: str = TWO_SIDED) -> tuple[float, float]:
        """The interval of a test at level ``alpha``: two-sided ``1 - alpha``; for ``"greater"`` the
        two-sided ``1 - 2 alpha`` interval, whose lower end is the one-sided bound."""
        tail = alpha / 2 if alternative == TWO_SIDED else alpha
        if self.method == BOOTSTRAP:
            if self.boot is None or self.boot.size == 0:
                return float("nan"), float("nan")
            low, high = np.quantile(self.boot, [tail, 1 - tail])
            return float(low), float(high)
        half = _quantile(1 - tail, self.df) * self.se if self.se > 0 else 0.0
        return self.diff - half, self.diff + half

    def p_value(self, alternative: str = TWO_SIDED) -> float:
        """Two-sided, or one-sided for ``"greater"`` (H1: the difference is positive); nan where
        nothing varies but the difference is not 0 (no test can be made)."""
        if self.method == BOOTSTRAP:
            if self.boot is None or self.boot.size == 0:
                return float("nan")
            below, above = int((self.boot <= 0).sum()), int((self.boot >= 0).sum())
            if alternative == GREATER:
                return below / self.boot.size
            return min(1.0, 2 * min(below, above) / self.boot.size)
        if self.se == 0:
            return 1.0 if self.diff == 0 else float("nan")
        t = self.diff / self.se
        upper = float(special.stdtr(self.df, -t))  # P(T >= t); the normal tail at infinite df
        return upper if alternative == GREATER else min(1.0, 2 * float(special.stdtr(self.df, -abs(t))))


def _quantile(q: float, df: float) -> float:
    """Student t quantile (the normal one at infinite df); scipy.special's ufunc, not the slower distribution object."""
    return float(special.stdtrit(df, q))


@dataclass(frozen=True)
class Comparison:
    """``diff`` = mean over seeds of ``algo`` minus ``baseline`` on one cell, with its interval and test.

    ``low``/``high`` is the interval at ``level`` (two-sided; for a one-sided test, ``alternative``
    ``"greater"``, the lower end is the one-sided bound). ``family`` and ``p_adjusted`` are the
    testing plan's (:mod:`.testing`): ``significant`` is ``p_adjusted <= alpha`` within the family,
    and a tested cell's interval is at the level its family's correction spends on it, so it excludes
    0 exactly when the cell is significant.
    """

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
    family: str = ""
    p_adjusted: float = float("nan")
    alternative: str = TWO_SIDED
    estimate: Estimate | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        """The comparisons.csv row."""
        return {"algo": self.algo, "baseline": self.baseline, "domain": self.domain, "metric": self.metric,
                "diff": self.diff, "ci_low": self.low, "ci_high": self.high, "p_value": self.p_value,
                "n_seeds": self.n_seeds, "method": self.method, "significant": self.significant,
                "family": self.family, "p_adjusted": "" if math.isnan(self.p_adjusted) else self.p_adjusted}

    def at(self, alpha: float, alternative: str = TWO_SIDED) -> Comparison:
        """This cell tested at ``alpha`` (``alternative``): p-value and interval recomputed from its estimate."""
        if self.estimate is None:
            raise ValueError(f"{self.algo} − {self.baseline} {self.domain} {self.metric}: no estimate to test")
        low, high = self.estimate.interval(alpha, alternative)
        level = 1 - alpha if alternative == TWO_SIDED else 1 - 2 * alpha
        return replace(self, low=low, high=high, p_value=self.estimate.p_value(alternative), level=level,
                       alternative=alternative)


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
    dataset, in the same order). Replicate ``r`` draws ``weights[d][r]``
    (:func:`~rlbench_med.suites.metrics.bootstrap_weights`) for the records of dataset ``d``, the
    same draw for every run.
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
        self.weights = [bootstrap_weights(t, n_boot, rng) for t in self.datasets]
        self._point: dict[RunKey, dict[tuple[str, str], float]] = {}
        self._boot: dict[RunKey, dict[tuple[str, str], np.ndarray]] = {}
        self.n_samples: dict[str, int] = {}
        for t in self.datasets:
            self.n_samples[t.domain] = self.n_samples.get(t.domain, 0) + t.n
        self.n_samples["overall"] = sum(t.n for t in self.datasets)

    @classmethod
    def from_runs(
        cls, runs: Mapping[RunKey, Sequence[Record]], *, n_boot: int = 2000, seed: int = 0,
        multi_label: Mapping[str, bool] | None = None,
    ) -> EvaluationSet:
        """From ``{(label, seed): prediction records}``.

        Records are matched by ``uid`` when every record has one, else by their order; a run whose
        records are not the first run's (other samples, another order) is left out and named in
        :attr:`excluded`. ``multi_label``: declarations beyond the catalogue's, as in
        :func:`~rlbench_med.suites.metrics.compute_metrics`.
        """
        if not runs:
            raise ComparisonError("no predictions to compare")
        grouped = {key: _aligned_groups(records) for key, records in runs.items()}
        reference = next(iter(grouped.values()))
        declared = multi_label or {}
        datasets = [DatasetTruth.from_records(d, ds, recs, declared.get(ds)) for (d, ds), recs in reference.items()]
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
            from threadpoolctl import threadpool_limits

            # One BLAS thread: the products are small ([R, N] x [N, C] per dataset), and handing each to a
            # second thread cost 4.7 times the CPU time (floor:random's 100 draws: 16.3 s against 3.5 s,
            # climb_vision's quick test split on 2 cores) for the same numbers.
            with threadpool_limits(1, user_api="blas"):
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


def variance_parts(d: np.ndarray, boot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(s^2, c, e)`` of seed differences ``d [..., S]`` with replicates ``boot [..., S, R]`` (``S >= 2``).

    ``s^2``: variance of ``d`` over seeds; ``c``: mean covariance of two seeds' replicates, from
    ``var(sum_s D_s) = sum_s var(D_s) + sum_{s != t} cov(D_s, D_t)``, clipped at 0; ``e``: the mean
    per-seed replicate variance less ``c`` (the evaluation noise a seed does not share), at least 0.
    Replicates with a nan (a cell a resample left undefined) are left out.
    """
    d = np.asarray(d, dtype=np.float64)
    boot = np.asarray(boot, dtype=np.float64)
    s = d.shape[-1]
    ok = np.isfinite(boot).all(-2, keepdims=True)
    r = ok.sum(-1)  # [..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = np.where(ok, boot - np.where(ok, boot, 0).sum(-1, keepdims=True) / np.maximum(r, 1)[..., None], 0)
        cov = centred @ np.swapaxes(centred, -1, -2) / np.maximum(r - 1, 1)[..., None]  # [..., S, S]
    per = np.trace(cov, axis1=-2, axis2=-1)
    shared = np.maximum((cov.sum((-2, -1)) - per) / (s * (s - 1)), 0.0)
    parts = (d.var(-1, ddof=1), shared, np.maximum(per / s - shared, 0.0))
    return tuple(np.where(x < ROUNDING_VAR, 0.0, x) for x in parts)  # type: ignore[return-value]


def estimate(d: np.ndarray, boot: np.ndarray) -> Estimate:
    """The :class:`Estimate` of ``mean(d)`` (module docstring).

    Args:
        d: ``[S]`` seed-level differences ``A_s - B_s``.
        boot: ``[S, R]`` their replicates under the shared bootstrap weights (row ``s``: ``D_s``;
            nan where a replicate is undefined: left out).
    """
    d = np.asarray(d, dtype=np.float64)
    boot = np.asarray(boot, dtype=np.float64).reshape(d.size, -1)
    diff = float(d.mean())
    if d.size >= 2:
        s2, c, e = (float(x) for x in variance_parts(d, boot))
        se, df, floored = (float(x) for x in standard_error(s2, c, e, d.size))
        method = TIED if np.all(d == d[0]) else EVALUATION_FLOOR if floored else PAIRED_T
        return Estimate(diff, se, df, d.size, method, s2, c, e)
    reps = boot[0][np.isfinite(boot[0])]
    sd = float(reps.std(ddof=1)) if reps.size >= 2 else float("nan")
    return Estimate(diff, sd, float("inf"), 1, BOOTSTRAP, 0.0, 0.0, sd**2, boot=reps)


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
    """``algo - baseline`` on every (domain, metric) cell with its two-sided ``level`` interval (module
    docstring); untested until the testing plan (:mod:`.testing`) gives the cells their families.

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
            boot = np.stack([ra[cell] - rb[cell] for ra, rb in zip(a_boot, b_boot)])
        est = estimate(d, boot)
        low, high = est.interval(1 - level)
        out.append(Comparison(algo, baseline, domain, metric, est.diff, low, high, est.p_value(), len(seeds),
                              est.method, n_samples=evalset.n_samples.get(domain, 0), level=level, estimate=est))
    return out


def _mean_dicts(items: Sequence[Mapping[tuple[str, str], Any]]) -> dict[tuple[str, str], Any]:
    keys = set(items[0]).intersection(*items[1:])
    return {k: np.mean([item[k] for item in items], axis=0) for k in keys}


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
