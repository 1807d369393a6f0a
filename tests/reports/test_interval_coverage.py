"""Do the comparison intervals keep their promise? Simulated experiments with a known true difference.

Each experiment draws a test set like ours (two single-label domains of 20 and 60 records, four
classes) where every record has a difficulty shared by all runs, then ``S`` training seeds of two
algorithms whose skill varies from seed to seed. A run answers a record correctly with probability
``Phi(skill + difficulty)``, else names another class at random. The truth is the expected
difference of overall macro-F1 (= ``f1_strict``: one label per answer) over test sets and seeds,
computed here by Monte Carlo with an independent NumPy implementation of macro-F1.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from rlbench_med.reports.stats import EvaluationSet, compare
from rlbench_med.suites.metrics import DatasetPredictions, DatasetTruth

K = 4
SIZES = {"fundus": 20, "ct": 60}
SEED_SD = 0.12  # skill spread between training seeds: about 0.03 of macro-F1, like our runs
DIFFICULTY_SD = 1.0
N_SIMS = 1000
N_BOOT = 200


def _answers(rng: np.random.Generator, y: np.ndarray, z: np.ndarray, skill: np.ndarray) -> np.ndarray:
    """Predicted class per record: the truth with probability Phi(skill + z), else another class."""
    correct = rng.random(y.shape) < norm.cdf(skill[..., None] + z)
    other = (y + rng.integers(1, K, size=y.shape)) % K
    return np.where(correct, y, other)


def _macro_f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes present in ``y`` (last axis = records), written out independently."""
    scores, present = [], []
    for c in range(K):
        tp = ((y == c) & (p == c)).sum(-1)
        fp = ((y != c) & (p == c)).sum(-1)
        fn = ((y == c) & (p != c)).sum(-1)
        denom = 2 * tp + fp + fn
        scores.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
        present.append((y == c).any(-1))
    scores, present = np.array(scores), np.array(present)
    return (scores * present).sum(0) / present.sum(0)


def _true_difference(mu_a: float, mu_b: float, draws: int = 40000) -> float:
    rng = np.random.default_rng(12345)
    per_domain = []
    for n in SIZES.values():
        y = rng.integers(0, K, size=(draws, n))
        z = rng.normal(0, DIFFICULTY_SD, size=(draws, n))
        fa = _macro_f1(y, _answers(rng, y, z, mu_a + SEED_SD * rng.normal(size=draws)))
        fb = _macro_f1(y, _answers(rng, y, z, mu_b + SEED_SD * rng.normal(size=draws)))
        per_domain.append(fa - fb)
    return float(np.mean(per_domain))  # overall = mean over the two domains


def _one_experiment(rng: np.random.Generator, mu_a: float, mu_b: float, seeds: int, sim: int):
    datasets, preds = [], {("a", s): [] for s in range(seeds)} | {("b", s): [] for s in range(seeds)}
    skills = {"a": mu_a + SEED_SD * rng.normal(size=seeds), "b": mu_b + SEED_SD * rng.normal(size=seeds)}
    for domain, n in SIZES.items():
        y = rng.integers(0, K, size=n)
        z = rng.normal(0, DIFFICULTY_SD, size=n)
        truth = np.eye(K, dtype=bool)[y]
        keys = [frozenset({str(c)}) for c in y]
        datasets.append(DatasetTruth(domain, domain, [str(c) for c in range(K)], truth, keys, False))
        for algo, skill in skills.items():
            answers = _answers(rng, np.broadcast_to(y, (seeds, n)), z, skill)
            for s in range(seeds):
                pred = np.eye(K, dtype=bool)[answers[s]]
                preds[(algo, s)].append(DatasetPredictions(pred, np.ones(n), answers[s] == y, np.full(n, np.nan)))
    # Truths whose classes are absent from a small test set: keep only present columns, as real data would.
    for i, t in enumerate(datasets):
        present = t.truth.any(0)
        datasets[i] = DatasetTruth(t.domain, t.dataset, [c for c, k in zip(t.classes, present) if k], t.truth[:, present],
                                   t.keys, False)
        for key in preds:
            p = preds[key][i]
            preds[key][i] = DatasetPredictions(p.pred[:, present], p.n_pred, p.exact, p.iou)
    evalset = EvaluationSet(datasets, preds, n_boot=N_BOOT, seed=sim)
    return compare(evalset, "a", list(range(seeds)), "b", list(range(seeds)))


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [2, 4, 8])
def test_intervals_cover_a_known_difference_and_stay_quiet_under_the_null(seeds: int) -> None:
    truth = _true_difference(0.25, 0.0)
    assert 0.04 < truth < 0.12  # a difference of the size the paper reports
    rng = np.random.default_rng(seeds)
    covered, null_cell, null_any = 0, 0, 0
    for sim in range(N_SIMS):
        comps = _one_experiment(rng, 0.25, 0.0, seeds, sim)
        cell = next(c for c in comps if (c.domain, c.metric) == ("overall", "f1_strict"))
        covered += cell.low <= truth <= cell.high
        null = _one_experiment(rng, 0.1, 0.1, seeds, sim + N_SIMS)
        null_cell += next(c for c in null if (c.domain, c.metric) == ("overall", "f1_strict")).significant
        null_any += any(c.significant for c in null)
    assert covered / N_SIMS >= 0.93, f"coverage {covered / N_SIMS:.3f} with {seeds} seeds"
    assert null_cell / N_SIMS <= 0.05, f"false positives {null_cell / N_SIMS:.3f} with {seeds} seeds"
    assert null_any / N_SIMS <= 0.05, f"family-wise false positives {null_any / N_SIMS:.3f} with {seeds} seeds"
