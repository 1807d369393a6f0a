"""Do the comparison intervals keep their promise, from both sides? Simulated experiments with a known difference.

Each experiment draws a test set like ours (two single-label domains of 24 and 72 records, four
classes, each class equally often) where every record has a difficulty shared by all runs, then
``S`` training seeds of two algorithms whose skill varies from seed to seed. A run answers a
record correctly with probability ``Phi(skill + difficulty + u)``, else names another class at
random; ``u`` is the algorithm's own ease with that record, the same for all its seeds (what the
algorithm learned about it), so the seeds of one algorithm share part of their evaluation noise.
The metric is overall macro-F1 (the mean over the two domains), written out independently here;
each experiment's bootstrap replicates resample the records within each class, as the report
does. The truth is the expected difference over test sets and seeds (Monte Carlo, 10,000 draws).

Scenarios (the median share of shared evaluation noise in the variance of the mean, measured at 2
to 8 seeds: 0.44-0.68 in ``shared``, 0.78-0.87 in ``constant``, 0 in ``seeds``; the overall
``f1_strict`` comparisons of a 4-seed climb_vision sweep have 0 to 0.81):

- ``shared``: algorithm-record effects (``u`` sd 0.8), two trained algorithms;
- ``constant``: a trained algorithm against one fixed run (as ``base`` and the floors);
- ``seeds``: no algorithm-record effect; training noise dominates (a plain paired t is valid).

A good interval covers the truth in about 95% of experiments (not 100%) in every scenario, rejects
a true null in at most 7% of them, uses what it knows (its median width at most 2.5 times that of
an interval that knew the variance, ``2 x 1.96 x sd`` of the estimate over the experiments: the
report's measured 1.0-1.35, and 2.24 at 2 seeds where training noise dominates; a paired t over 2
seeds, which ignores the bootstrap's evidence on the evaluation noise, 2.7-4.6), and in ``seeds``
has the power of a paired t-test on the seed differences (it may not widen what it need not). With 2,000 experiments a rate's Monte-Carlo
standard error is at most 0.011 (0.005 at 95%), so the bounds [0.93, 0.97] sit three to four
standard errors from 0.95; the power comparison uses the same experiments for both tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import ndtr

from rlbench_med.reports.stats import estimate

# 2,000 simulated experiments per scenario and seed count: about 20 s per seed count on two busy cores.
pytestmark = pytest.mark.slow

K = 4
DOMAINS = (24, 72)
EXPERIMENTS = 2000
REPLICATES = 200
SCENARIOS = {  # seed sd of skill, record difficulty sd, algorithm-record sd, constant baseline
    "shared": (0.12, 1.0, 0.8, False),
    "constant": (0.20, 1.0, 0.5, True),
    "seeds": (0.25, 1.0, 0.0, False),
}
EFFECT = (0.25, 0.0)  # skills of A and B: a true difference of about +0.06 macro-F1
NULL = (0.1, 0.1)
COVERAGE = (0.93, 0.97)
MAX_FALSE_POSITIVES = 0.07
MAX_WIDTH = 2.5  # median width over the known-variance interval's
#: Power below the paired t-test's allowed: at 8 seeds the evaluation floor (README) widens se where the
#: training noise is small, and the shared covariance estimate is clipped at 0 (measured: +0.039 at 2
#: seeds, -0.007 at 4, -0.018 at 8).
POWER_SLACK = {2: 0.01, 4: 0.01, 8: 0.03}

Interval = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def simulate(rng: np.random.Generator, seeds: int, skills: tuple[float, float], scenario: str,
             experiments: int = EXPERIMENTS, replicates: int = REPLICATES) -> tuple[np.ndarray, np.ndarray]:
    """``d [E, S]`` (overall macro-F1 of A_s minus B_s) and ``boot [E, S, R]`` (the same under each
    experiment's stratified bootstrap weights, shared by all its runs)."""
    seed_sd, difficulty_sd, record_sd, constant = SCENARIOS[scenario]
    d_parts, boot_parts = [], []
    for n in DOMAINS:
        y = np.repeat(np.arange(K), n // K)
        truth = np.eye(K, dtype=bool)[y]
        z = rng.normal(0, difficulty_sd, (experiments, n))
        m = n // K  # records per class; draw m - 1 of them, weighted m / (m - 1), as the report does
        draws = rng.integers(0, m, size=(experiments * replicates * K, m - 1))
        cells = (draws + m * np.arange(len(draws))[:, None]).ravel()  # counts per (experiment, replicate, class)
        w = (np.bincount(cells, minlength=len(draws) * m).reshape(experiments, replicates, n) * (m / (m - 1))
             ).astype(np.float32)  # float32 throughout: the batched matmul below stays in BLAS
        w = np.concatenate([np.ones((experiments, 1, n), np.float32), w], axis=1)  # replicate 0: the point estimate
        f1 = []
        for mu, runs in ((skills[0], seeds), (skills[1], 1 if constant else seeds)):
            u = rng.normal(0, record_sd, (experiments, n))
            skill = mu + (0.0 if constant and runs == 1 else seed_sd) * rng.normal(size=(experiments, runs))
            right = rng.random((experiments, runs, n)) < ndtr(skill[..., None] + (z + u)[:, None, :])
            answer = np.where(right, y, (y + rng.integers(1, K, (experiments, runs, n))) % K)
            pred = np.eye(K, dtype=bool)[answer]  # [E, S, n, K]
            counts = np.stack([pred & truth, pred & ~truth, ~pred & truth], -1)  # TP, FP, FN per record
            flat = counts.transpose(0, 2, 1, 3, 4).reshape(experiments, n, -1).astype(np.float32)
            tp, fp, fn = np.moveaxis((w @ flat).reshape(experiments, -1, runs, K, 3), 1, 2).transpose(4, 0, 1, 2, 3)
            denom = 2 * tp + fp + fn
            f1.append(np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0).mean(-1, dtype=np.float64))
        diff = f1[0] - f1[1]
        d_parts.append(diff[..., 0])
        boot_parts.append(diff[..., 1:])
    return np.mean(d_parts, 0), np.mean(boot_parts, 0)


def true_difference(scenario: str) -> float:
    d, _ = simulate(np.random.default_rng(12345), 1, EFFECT, scenario, experiments=10000, replicates=1)
    return float(d.mean())


def ours(d: np.ndarray, boot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The report's interval and p-value, experiment by experiment (``reports.stats.estimate``)."""
    out = np.array([(*(e := estimate(d[i], boot[i])).interval(0.05), e.p_value()) for i in range(len(d))])
    return out[:, 0], out[:, 1], out[:, 2]


def paired_t(d: np.ndarray, boot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The naive interval: a paired t over the seed differences, evaluation noise ignored."""
    s = d.shape[-1]
    se = d.std(-1, ddof=1) / np.sqrt(s)
    half = sps.t.ppf(0.975, s - 1) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * sps.t.sf(np.abs(d.mean(-1)) / se, s - 1), np.where(d.mean(-1) == 0, 1.0, 0.0))
    return d.mean(-1) - half, d.mean(-1) + half, p


def infinite(d: np.ndarray, boot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An interval that keeps the coverage promise by saying nothing."""
    return np.full(len(d), -np.inf), np.full(len(d), np.inf), np.ones(len(d))


_CACHE: dict[tuple[int, str], tuple] = {}


def _experiments(seeds: int, scenario: str) -> tuple:
    key = (seeds, scenario)
    if key not in _CACHE:
        rng = np.random.default_rng([seeds, list(SCENARIOS).index(scenario)])
        _CACHE[key] = (true_difference(scenario), simulate(rng, seeds, EFFECT, scenario),
                       simulate(rng, seeds, NULL, scenario))
    return _CACHE[key]


def failures(interval: Interval, seeds: int) -> list[str]:
    """What ``interval`` gets wrong at ``seeds`` seeds (module docstring); empty when it keeps its promise."""
    found = []
    for scenario in SCENARIOS:
        truth, (d, boot), (d0, boot0) = _experiments(seeds, scenario)
        low, high, p = interval(d, boot)
        coverage = float(np.mean((low <= truth) & (truth <= high)))
        if not COVERAGE[0] <= coverage <= COVERAGE[1]:
            found.append(f"{scenario}: coverage {coverage:.3f} outside {COVERAGE}")
        width = float(np.median(high - low)) / (2 * 1.959964 * float(d.mean(-1).std()))
        if width > MAX_WIDTH:
            found.append(f"{scenario}: median width {width:.2f} times the known-variance interval's")
        false_positives = float(np.mean(interval(d0, boot0)[2] <= 0.05))
        if false_positives > MAX_FALSE_POSITIVES:
            found.append(f"{scenario}: {false_positives:.3f} false positives")
        if scenario == "seeds":
            power, reference = float(np.mean(p <= 0.05)), float(np.mean(paired_t(d, boot)[2] <= 0.05))
            if power < reference - POWER_SLACK[seeds]:
                found.append(f"{scenario}: power {power:.3f} below the paired t's {reference:.3f}")
    return found


@pytest.mark.parametrize("seeds", [2, 4, 8])
def test_the_report_interval_covers_about_95_percent_with_the_power_of_a_paired_t(seeds: int) -> None:
    assert failures(ours, seeds) == []


@pytest.mark.parametrize("seeds", [2, 4, 8])
def test_a_naive_paired_t_that_ignores_the_shared_test_set_fails(seeds: int) -> None:
    assert failures(paired_t, seeds)


def test_an_infinite_interval_fails_by_covering_everything() -> None:
    for seeds in (2, 4, 8):
        assert any("coverage 1.000" in f for f in failures(infinite, seeds))
