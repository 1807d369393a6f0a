"""The test a report runs on a difference, its power, and the minimum detectable effect (MDE).

The test. Algorithms A and B ran ``S`` seeds each, scored on one shared test split. One seed's
difference is ``d_s = A_s - B_s`` and the estimate is ``mean(d_s)``. Its variance has two parts:

- the spread over seeds, which holds the training noise and the part of the evaluation noise that
  differs from seed to seed: ``var(d_s) / S``;
- the evaluation noise the seeds *share* (they answer the same records): ``c``, the mean
  covariance between two seeds' differences over resampled test records (the bootstrap).

So ``se^2 = s^2 / S + c`` with ``s^2`` the sample variance of the ``d_s`` (``S - 1`` degrees of
freedom) and ``c`` known from the bootstrap; by Satterthwaite the degrees of freedom are
``nu = (S - 1) (se^2 / (s^2 / S))^2``. The seed spread cannot be smaller than the part of the
evaluation noise the seeds do not share, ``e = v - c`` (``v``: one seed's bootstrap variance):
where ``s^2 < e`` (two seeds that tied included) ``e`` replaces ``s^2`` in ``se`` (``nu`` keeps
``s^2``: the smaller the observed spread, the less the seed term weighs; infinite for a tie).
The interval is ``diff ± t(nu) se`` (:func:`standard_error`); the README derives it.

Power. With normal seed differences (``s^2 ~ sigma^2 chi2_{S-1} / (S - 1)``, independent of the
mean), the power of that test at a true difference ``delta`` is an integral over ``s^2``
(:func:`seed_test_power`, exact up to quadrature); with ``c = e = 0`` it is the plain paired t-test's
(the noncentral t). The MDE is the ``delta`` with power ``power`` (:func:`seed_test_mde`). With one
seed the test is a bootstrap over the records (evaluation noise only) and its MDE the normal one,
``(z_{1 - alpha/2} + z_{power}) sd``.

Planning before a sweep (:func:`minimum_detectable_effect`). One algorithm's score on one seed
varies by the training noise ``seed_sd`` and by the evaluation noise of ``n`` records,
``record_sd / sqrt(n)``. For a difference of two algorithms: seed part ``2 seed_sd^2``,
evaluation part ``2 record_sd^2 / n``. How much of the evaluation part the seeds share is unknown
before a sweep (seeds of one estimator that answer alike share most of it), so the MDE is the larger
of the two extremes, all shared and none shared.

Worked example: ``n = 100``, ``record_sd = 0.5``, ``seed_sd = 0.03``, ``k = 4``: one seed's
difference has sd ``sqrt(2 (0.0009 + 0.0025)) = 0.0825``. All evaluation noise shared: seed part
``0.0018``, ``c = 0.005``, ``se = sqrt(0.0018 / 4 + 0.005) = 0.0738`` at 440 degrees of freedom, MDE
0.208. None shared: the seed differences have sd 0.0825, of which ``e = 0.005`` is evaluation noise,
MDE 0.174 (a plain paired t-test: 0.175). The MDE is 0.208.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
POWER = 0.8
SEEDS_AND_SHARED = "seed spread + shared evaluation noise (Satterthwaite t)"
EVALUATION_ONLY = "evaluation sample only (1 seed)"
TWO_SIDED = "two-sided"
GREATER = "greater"
#: Quadrature nodes over the seed variance's distribution (each side of the floor).
_NODES = 96


def standard_error(seed_var: Any, shared_var: Any, eval_var: Any, seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(se, df, floored)`` of a mean over ``seeds`` seed differences (module docstring), element-wise.

    Args:
        seed_var: ``s^2``, the sample variance of the seed differences.
        shared_var: ``c``, the evaluation covariance shared by two seeds (``>= 0``).
        eval_var: ``e``, the evaluation variance one seed does not share with the others (``>= 0``).
        seeds: ``S >= 2``.

    ``se = sqrt(max(s^2, e) / S + c)``, ``df = (S - 1) (se^2 / (s^2 / S))^2`` (inf where ``s^2 = 0``);
    ``floored`` marks where ``s^2 < e``, the evaluation noise standing in for the seed spread.
    """
    s2 = np.asarray(seed_var, dtype=np.float64)
    c = np.asarray(shared_var, dtype=np.float64)
    e = np.asarray(eval_var, dtype=np.float64)
    floored = s2 < e
    se2 = np.maximum(s2, e) / seeds + c
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(s2 > 0, (seeds - 1) * (se2 / np.where(s2 > 0, s2 / seeds, 1.0)) ** 2, np.inf)
    return np.sqrt(se2), df, floored


def _critical(alpha: float, alternative: str) -> float:
    return alpha / 2 if alternative == TWO_SIDED else alpha


def seed_test_power(
    delta: float, seed_sd: float, seeds: int, *, shared_sd: float = 0.0, eval_sd: float = 0.0,
    alpha: float = ALPHA, alternative: str = TWO_SIDED,
) -> float:
    """Power of the report's test (module docstring) at a true mean difference ``delta``.

    Args:
        seed_sd: sd of one seed's difference around the mean, evaluation noise it does not share
            with other seeds included (``sigma``; ``s^2`` estimates ``sigma^2``).
        seeds: ``S >= 2``.
        shared_sd: ``sqrt(c)``; eval_sd: ``sqrt(e)`` (``<= seed_sd``).
        alternative: ``"two-sided"`` or ``"greater"`` (rejects for a positive difference only).
    """
    from scipy import stats

    if seeds < 2:
        raise ValueError(f"the seed test needs >= 2 seeds, got {seeds}; with one seed use the evaluation-only MDE")
    if eval_sd > seed_sd:
        raise ValueError(f"eval_sd ({eval_sd}) cannot exceed seed_sd ({seed_sd}): the seed spread contains it")
    df = seeds - 1
    sd_mean = math.sqrt(seed_sd**2 / seeds + shared_sd**2)
    if sd_mean == 0:
        return 1.0 if delta != 0 else 0.0
    # s^2 = seed_sd^2 chi2_df / df; integrate over its quantile u, split where se has its kink (s^2 = e).
    cut = float(stats.chi2.cdf(eval_sd**2 / seed_sd**2 * df, df)) if seed_sd > 0 else 1.0
    x, w = np.polynomial.legendre.leggauss(_NODES)
    parts = [(lo, hi) for lo, hi in ((0.0, cut), (cut, 1.0)) if hi > lo]
    u = np.concatenate([lo + (hi - lo) * (x + 1) / 2 for lo, hi in parts])
    weights = np.concatenate([w * (hi - lo) / 2 for lo, hi in parts])
    s2 = seed_sd**2 * stats.chi2.ppf(u, df) / df
    se, nu, _ = standard_error(s2, shared_sd**2, eval_sd**2, seeds)
    crit = stats.t.ppf(1 - _critical(alpha, alternative), nu) * se
    reject = stats.norm.sf((crit - delta) / sd_mean)
    if alternative == TWO_SIDED:
        reject = reject + stats.norm.cdf((-crit - delta) / sd_mean)
    return float(np.sum(weights * reject))


def seed_test_mde(
    seed_sd: float, seeds: int, *, shared_sd: float = 0.0, eval_sd: float = 0.0, alpha: float = ALPHA,
    power: float = POWER, alternative: str = TWO_SIDED,
) -> float:
    """Smallest true difference :func:`seed_test_power` detects with probability ``power``."""
    from scipy.optimize import brentq

    if not 0 < alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    scale = math.sqrt(seed_sd**2 + shared_sd**2)
    if scale == 0:
        return 0.0
    # Power grows with delta from at most alpha at 0 to 1; double until it passes ``power``.
    hi = scale
    while seed_test_power(hi, seed_sd, seeds, shared_sd=shared_sd, eval_sd=eval_sd, alpha=alpha,
                     alternative=alternative) < power:
        hi *= 2.0
    return float(brentq(lambda d: seed_test_power(d, seed_sd, seeds, shared_sd=shared_sd, eval_sd=eval_sd, alpha=alpha,
                                             alternative=alternative) - power, 0.0, hi, xtol=1e-7 * scale))


def evaluation_mde(sd: float, alpha: float = ALPHA, power: float = POWER, alternative: str = TWO_SIDED) -> float:
    """MDE of the one-seed test, evaluation noise only: ``(z_{1 - alpha/2} + z_{power}) sd`` (``z_{1 - alpha}`` one-sided)."""
    from scipy.stats import norm

    return float((norm.ppf(1 - _critical(alpha, alternative)) + norm.ppf(power)) * sd)


@dataclass(frozen=True)
class DetectableEffect:
    """The MDE of one planned comparison and what it rests on (see the module docstring)."""

    mde: float
    diff_sd: float
    seeds: int
    n: int
    method: str


def difference_sd(n: int, seed_sd: float, record_sd: float) -> float:
    """sd of one seed's difference between two algorithms: ``sqrt(2 (seed_sd^2 + record_sd^2 / n))``."""
    if n < 1:
        raise ValueError(f"n (test records) must be >= 1, got {n}")
    if seed_sd < 0 or record_sd < 0:
        raise ValueError(f"seed_sd and record_sd must be >= 0, got {seed_sd} and {record_sd}")
    return math.sqrt(2.0 * (seed_sd**2 + record_sd**2 / n))


def minimum_detectable_effect(
    n: int, seeds: int, seed_sd: float, record_sd: float, alpha: float = ALPHA, power: float = POWER
) -> DetectableEffect:
    """The planning MDE for ``n`` test records, ``seeds`` seeds and the given spreads (module docstring)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    sd = difference_sd(n, seed_sd, record_sd)
    evaluation = math.sqrt(2.0) * record_sd / math.sqrt(n)
    if seeds == 1:
        return DetectableEffect(evaluation_mde(evaluation, alpha, power), evaluation, 1, n, EVALUATION_ONLY)
    training = math.sqrt(2.0) * seed_sd
    shared = seed_test_mde(training, seeds, shared_sd=evaluation, alpha=alpha, power=power)
    apart = seed_test_mde(sd, seeds, eval_sd=evaluation, alpha=alpha, power=power)
    return DetectableEffect(max(shared, apart), sd, seeds, n, SEEDS_AND_SHARED)


def record_sd(
    records: Sequence[Mapping[str, Any]], metric: str, *, draws: int = 200, seed: int = 0
) -> dict[str, tuple[float, int]]:
    """``{domain: (record_sd, n)}`` of a metric, from a bootstrap of scored test records.

    ``records`` are what :func:`rlbench_med.suites.metrics.compute_metrics` scores. Records are
    resampled as the report resamples them (:func:`~rlbench_med.suites.metrics.bootstrap_weights`:
    inside each dataset, stratified by class); ``record_sd = sqrt(n) * sd`` of the domain's metric
    over ``draws`` resamples, ``n`` the domain's record count. ``overall`` is included.
    """
    return record_sds(records, [metric], draws=draws, seed=seed)[metric]


def record_sds(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str], *, draws: int = 200, seed: int = 0
) -> dict[str, dict[str, tuple[float, int]]]:
    """:func:`record_sd` of several metrics from one bootstrap (the same resamples as each alone)."""
    from rlbench_med.suites.metrics import DatasetTruth, aggregate, bootstrap_weights, group_records

    rng = np.random.default_rng(seed)
    encoded = []
    for (domain, dataset), recs in group_records(records).items():
        truth = DatasetTruth.from_records(domain, dataset, recs)
        encoded.append((truth, truth.encode(recs)))
    weights = [bootstrap_weights(t, draws, rng) for t, _ in encoded]
    values = aggregate(encoded, weights)
    sizes: dict[str, int] = {}
    for truth, pred in encoded:
        sizes[truth.domain] = sizes.get(truth.domain, 0) + truth.n
    sizes["overall"] = sum(t.n for t, _ in encoded)
    scored = {d: sum(int((~np.isnan(p.iou)).sum()) for t, p in encoded if d in ("overall", t.domain)) for d in sizes}
    out: dict[str, dict[str, tuple[float, int]]] = {m: {} for m in metrics}
    for (domain, metric), reps in values.items():
        if metric not in out:
            continue
        finite = reps[np.isfinite(reps)]
        n = scored[domain] if metric == "iou" else sizes[domain]
        if finite.size > 1 and n > 0:
            out[metric][domain] = (float(np.std(finite, ddof=1) * math.sqrt(n)), n)
    return out


def mde_rows(
    record_sets: Sequence[Sequence[Mapping[str, Any]]], metrics: Sequence[str], seed_counts: Sequence[int],
    seed_sd: float, *, alpha: float = ALPHA, power: float = POWER, draws: int = 200, seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``{"domain", "metric", "n", "seeds", "record_sd", "seed_sd", "diff_sd", "mde", "method"}``.

    One row per domain (and ``overall``) x metric x seed count. The evaluation noise is the largest
    :func:`record_sd` among ``record_sets`` (e.g. the probe's input sets, from a random guess to the
    union: a trained policy's evaluation noise is taken as the noisiest of them); the training noise
    is ``seed_sd``.
    """
    noise: dict[tuple[str, str], tuple[float, int]] = {}
    for records in record_sets:
        sds = record_sds(records, metrics, draws=draws, seed=seed)
        for metric in metrics:
            for domain, (rsd, n) in sds[metric].items():
                if (domain, metric) not in noise or rsd > noise[(domain, metric)][0]:
                    noise[(domain, metric)] = (rsd, n)
    rows: list[dict[str, Any]] = []
    for (domain, metric), (rsd, n) in noise.items():
        for k in seed_counts:
            effect = minimum_detectable_effect(n, k, seed_sd, rsd, alpha, power)
            rows.append({"domain": domain, "metric": metric, "n": n, "seeds": k, "record_sd": rsd,
                         "seed_sd": seed_sd if k > 1 else 0.0, "diff_sd": effect.diff_sd, "mde": effect.mde,
                         "method": effect.method})
    return rows


def render_mde(rows: Sequence[Mapping[str, Any]], seed_sd: float) -> str:
    """Plain-text table of :func:`mde_rows`: one line per domain x metric, one MDE column per seed count."""
    counts = sorted({int(r["seeds"]) for r in rows})
    keys = list(dict.fromkeys((r["domain"], r["metric"]) for r in rows))
    by_key = {(r["domain"], r["metric"], int(r["seeds"])): r for r in rows}
    lines = [
        f"minimum detectable effect (the report's two-sided test over seeds, alpha {ALPHA}, power {POWER}; evaluation "
        "noise: the largest bootstrap record sd among the probe's input sets, random guess included, taken as shared "
        f"by the seeds or not, whichever detects less; training noise: seed sd {seed_sd} assumed; "
        "1 seed: evaluation noise only)",
        "domain".ljust(12) + "metric".ljust(10) + "n".rjust(6) + "record_sd".rjust(11)
        + "".join(f"MDE@{k}seed{'s' if k > 1 else ''}".rjust(14) for k in counts),
    ]
    for domain, metric in keys:
        first = by_key[(domain, metric, counts[0])]
        cells = "".join(f"{by_key[(domain, metric, k)]['mde']:.3f}".rjust(14) for k in counts)
        lines.append(domain.ljust(12) + metric.ljust(10) + str(first["n"]).rjust(6) + f"{first['record_sd']:.3f}".rjust(11) + cells)
    return "\n".join(lines)
