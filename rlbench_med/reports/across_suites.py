"""Aggregates over suites, as rliable recommends (Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS 2021).

``scores[algo][suite]`` is the list of an algorithm's per-seed overall primary metric on a suite
(every suite's primary metric lies in [0, 1]; they are pooled as they are). With few seeds per
suite a mean over suites hides how uneven the runs are, and a median ignores most of them; so:

- **IQM**: the interquartile mean of all the algorithm's runs pooled over suites (the mean of the
  middle 50%, ``scipy.stats.trim_mean(x, 0.25)``), robust to one outlying run and less noisy than
  the median;
- **stratified bootstrap**: a 95% percentile interval from resampling the runs *within each suite*
  with replacement (:data:`N_BOOT` draws, fixed seed), so every replicate keeps every suite; one
  seed per suite gives no interval (nothing to resample);
- **probability of improvement** ``P(X > Y)``: the mean over the suites both ran of the
  Mann-Whitney probability that a run of X beats a run of Y (ties count one half), with its
  stratified-bootstrap interval (runs of X and of Y resampled within each suite);
- **performance profiles**: for each threshold ``tau``, the fraction of runs above ``tau``,
  averaged over suites (so every suite weighs the same), with stratified-bootstrap bands
  (:func:`~rlbench_med.reports.figures.performance_profiles` draws them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

Scores = Mapping[str, Mapping[str, Sequence[float]]]  # algo -> suite -> per-seed values
N_BOOT = 2000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Aggregate:
    """A point estimate with its stratified-bootstrap interval (nan bounds where nothing varies)."""

    value: float
    low: float
    high: float

    def text(self) -> str:
        if self.low != self.low:
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis (25% trimmed from each end)."""
    return np.asarray(sps.trim_mean(values, 0.25, axis=-1))


def _resample(rng: np.random.Generator, runs: Sequence[float], n_boot: int) -> np.ndarray:
    """``[n_boot, len(runs)]`` resamples of one suite's runs with replacement."""
    arr = np.asarray(runs, dtype=np.float64)
    return arr[rng.integers(0, arr.size, size=(n_boot, arr.size))]


def _interval(point: float, replicates: np.ndarray, varies: bool) -> Aggregate:
    if not varies:
        return Aggregate(point, float("nan"), float("nan"))
    low, high = np.quantile(replicates, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Aggregate(point, float(low), float(high))


def iqm_over_suites(per_suite: Mapping[str, Sequence[float]], n_boot: int = N_BOOT, seed: int = SEED) -> Aggregate:
    """IQM of every run over the suites, with its stratified-bootstrap interval."""
    suites = sorted(per_suite)
    pooled = np.concatenate([np.asarray(per_suite[s], dtype=np.float64) for s in suites])
    rng = np.random.default_rng(seed)
    boot = np.concatenate([_resample(rng, per_suite[s], n_boot) for s in suites], axis=1)
    return _interval(float(iqm(pooled)), iqm(boot), any(len(per_suite[s]) > 1 for s in suites))


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney ``P(X > Y)`` over the last axes of ``x [..., n]`` and ``y [..., m]`` (ties: 1/2)."""
    diff = x[..., :, None] - y[..., None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean((-2, -1))


def probability_of_improvement(x: Mapping[str, Sequence[float]], y: Mapping[str, Sequence[float]],
                               n_boot: int = N_BOOT, seed: int = SEED) -> Aggregate | None:
    """``P(X > Y)`` averaged over the suites both ran, with its stratified-bootstrap interval (None: no suite in common)."""
    suites = sorted(set(x) & set(y))
    if not suites:
        return None
    rng = np.random.default_rng(seed)
    point = float(np.mean([_improvement(np.asarray(x[s], float), np.asarray(y[s], float)) for s in suites]))
    boot = np.mean([_improvement(_resample(rng, x[s], n_boot), _resample(rng, y[s], n_boot)) for s in suites], axis=0)
    return _interval(point, boot, any(len(x[s]) > 1 or len(y[s]) > 1 for s in suites))


def run_score_distribution(per_suite: Mapping[str, Sequence[float]], taus: np.ndarray, n_boot: int = N_BOOT,
                           seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile: ``(fraction, low, high)`` over ``taus``, each the mean over suites of the
    fraction of runs above ``tau``, with the stratified-bootstrap 95% band."""
    suites = sorted(per_suite)
    rng = np.random.default_rng(seed)

    def profile(runs: np.ndarray) -> np.ndarray:  # [..., n] -> [..., len(taus)]
        return (runs[..., None, :] > taus[:, None]).mean(-1)

    point = np.mean([profile(np.asarray(per_suite[s], float)) for s in suites], axis=0)
    boot = np.mean([profile(_resample(rng, per_suite[s], n_boot)) for s in suites], axis=0)
    low, high = np.quantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    return point, low, high
