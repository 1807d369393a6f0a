"""Minimum detectable effect (MDE): the smallest difference between two algorithms a suite can detect.

Setting. Two algorithms A and B are trained with the same ``k`` seeds and scored on a test split
of ``n`` records (per domain). The comparison is the two-sided paired test over the ``k`` seed-level
differences ``d_s = m_A(s) - m_B(s)`` (a paired t-test for ``k >= 2``), at level ``alpha`` (0.05).

Noise model. One algorithm's score on one seed varies around its mean by the seed-to-seed
spread of training, ``seed_sd``, plus the evaluation noise of ``n`` test records,
``record_sd / sqrt(n)`` (``record_sd``: the per-record standard deviation of the metric, i.e.
``sqrt(n)`` times the bootstrap standard error of the metric on ``n`` records). The two
algorithms' deviations are taken as independent, so one seed's difference has

    diff_sd = sqrt(2 * (seed_sd ** 2 + record_sd ** 2 / n)).

Pairing on the same test records can only lower the evaluation term, and a test split shared by
every seed makes the seeds' evaluation noise positively correlated, so both choices err towards
a larger (more cautious) MDE. When ``seed_sd`` is *observed* from a sweep's results it already
contains the evaluation noise; pass the observed sd of the paired differences to
:func:`paired_t_mde` directly.

MDE (``k >= 2``). Under a true mean difference ``delta`` the paired t statistic
``T = mean(d) / (sd(d) / sqrt(k))`` follows a noncentral t distribution with ``k - 1`` degrees
of freedom and noncentrality ``lambda = delta * sqrt(k) / diff_sd``. The power is
``P(|T| > t_{1 - alpha/2, k-1})``; the MDE is the ``delta`` at which the power equals ``power``
(0.8), solved exactly (Brent's method on the noncentral t). For large ``k`` it tends to the
normal approximation ``(z_{1 - alpha/2} + z_{power}) * diff_sd / sqrt(k)``
(``2.80 * diff_sd / sqrt(k)`` at 5 % / 80 %).

MDE (``k = 1``). One seed cannot measure training noise at all; the only available test is
evaluation-sample uncertainty (a bootstrap over the test records), whose MDE is the normal one
with the evaluation term alone: ``(z_{1 - alpha/2} + z_{power}) * sqrt(2) * record_sd / sqrt(n)``.
Its ``method`` says so, and any difference smaller than the training noise can still pass it.

Worked example: ``n = 100``, ``record_sd = 0.5``, ``seed_sd = 0.03``, ``k = 4``:
``diff_sd = sqrt(2 (0.0009 + 0.0025)) = 0.0825``; the exact MDE is ``0.175 = 2.13 diff_sd``
(the normal approximation gives ``2.80 * 0.0825 / 2 = 0.116``; 3 degrees of freedom cost the
rest). Checked against statsmodels' ``TTestPower().solve_power`` (agreement to 1e-7) for 2 to 64
seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
POWER = 0.8
PAIRED_T = "paired t over seeds"
EVALUATION_ONLY = "evaluation sample only (1 seed)"


@dataclass(frozen=True)
class DetectableEffect:
    """The MDE of one comparison and what it rests on (see the module docstring)."""

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


def paired_t_power(delta: float, diff_sd: float, seeds: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test over ``seeds`` differences of sd ``diff_sd`` at mean ``delta``."""
    from scipy import stats

    df = seeds - 1
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    nc = delta * math.sqrt(seeds) / diff_sd
    # P(T < -crit) as the upper tail of -T (noncentrality -nc): scipy's nct.cdf returns NaN far in the tail.
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def paired_t_mde(diff_sd: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean difference the paired t-test over ``seeds`` (>= 2) detects with probability ``power``."""
    from scipy.optimize import brentq

    if seeds < 2:
        raise ValueError(f"a paired t-test needs >= 2 seeds, got {seeds}")
    if not 0 < alpha < 1 or not alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    if diff_sd == 0:
        return 0.0
    # Power grows with delta; at delta = 0 it is alpha < power, and it reaches 1 long before 100 sd.
    hi = diff_sd
    while paired_t_power(hi, diff_sd, seeds, alpha) < power:
        hi *= 2.0
    return float(brentq(lambda d: paired_t_power(d, diff_sd, seeds, alpha) - power, 0.0, hi, xtol=1e-10 * diff_sd))


def minimum_detectable_effect(
    n: int, seeds: int, seed_sd: float, record_sd: float, alpha: float = ALPHA, power: float = POWER
) -> DetectableEffect:
    """The MDE for ``n`` test records, ``seeds`` seeds and the given spreads (module docstring)."""
    from scipy.stats import norm

    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if seeds == 1:
        sd = difference_sd(n, 0.0, record_sd)
        mde = (norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * sd
        return DetectableEffect(float(mde), sd, 1, n, EVALUATION_ONLY)
    sd = difference_sd(n, seed_sd, record_sd)
    return DetectableEffect(paired_t_mde(sd, seeds, alpha, power), sd, seeds, n, PAIRED_T)


def record_sd(
    records: Sequence[Mapping[str, Any]], metric: str, *, draws: int = 200, seed: int = 0
) -> dict[str, tuple[float, int]]:
    """``{domain: (record_sd, n)}`` of a metric, from a bootstrap of scored test records.

    ``records`` are what :func:`rlbench_med.suites.metrics.compute_metrics` scores. Records are
    resampled with replacement inside each dataset (so every draw keeps the datasets' sizes);
    ``record_sd = sqrt(n) * sd`` of the domain's metric over ``draws`` resamples, ``n`` the
    domain's record count. ``overall`` is included.
    """
    return record_sds(records, [metric], draws=draws, seed=seed)[metric]


def record_sds(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str], *, draws: int = 200, seed: int = 0
) -> dict[str, dict[str, tuple[float, int]]]:
    """:func:`record_sd` of several metrics from one bootstrap (the same resamples as each alone)."""
    from rlbench_med.suites.metrics import compute_metrics

    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault((str(rec["domain"]), str(rec["dataset"])), []).append(rec)
    values: dict[tuple[str, str], list[float]] = {}
    sizes: dict[str, dict[str, int]] = {m: {} for m in metrics}
    for row in compute_metrics(records):
        if row["metric"] in sizes:
            sizes[row["metric"]][row["domain"]] = int(row["n"])
    for _ in range(draws):
        resampled = [group[i] for group in groups.values() for i in rng.integers(len(group), size=len(group))]
        for row in compute_metrics(resampled):
            if row["metric"] in sizes and np.isfinite(row["value"]):
                values.setdefault((row["metric"], row["domain"]), []).append(float(row["value"]))
    return {m: {d: (float(np.std(values[(m, d)], ddof=1) * math.sqrt(n)), n)
                for d, n in sizes[m].items() if len(values.get((m, d), [])) > 1} for m in metrics}


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
        f"minimum detectable effect (two-sided paired test, alpha {ALPHA}, power {POWER}; evaluation noise: the "
        f"largest bootstrap record sd among the probe's input sets, random guess included; training noise: seed sd {seed_sd} assumed; "
        "1 seed: evaluation noise only)",
        "domain".ljust(12) + "metric".ljust(10) + "n".rjust(6) + "record_sd".rjust(11)
        + "".join(f"MDE@{k}seed{'s' if k > 1 else ''}".rjust(14) for k in counts),
    ]
    for domain, metric in keys:
        first = by_key[(domain, metric, counts[0])]
        cells = "".join(f"{by_key[(domain, metric, k)]['mde']:.3f}".rjust(14) for k in counts)
        lines.append(domain.ljust(12) + metric.ljust(10) + str(first["n"]).rjust(6) + f"{first['record_sd']:.3f}".rjust(11) + cells)
    return "\n".join(lines)
