"""Verdicts in words: learned / did not learn / inconclusive, the MDE of the test run, the seeds that would settle it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from rlbench_med.reports.stats import BOOTSTRAP, PAIRED_T, Comparison, Estimate, EvaluationSet
from rlbench_med.reports.testing import REFERENCE, holm_family
from rlbench_med.reports.verdicts import (
    INCONCLUSIVE,
    RULED_OUT,
    Pair,
    judge_pairs,
    minimum_detectable,
    seeds_needed,
    verdict,
)
from rlbench_med.suites.power import seed_test_mde
from tests.reports.test_stats import make_records


def _tested(diff: float, seed_var: float, shared_var: float, eval_var: float, baseline: str, seeds: int = 4,
            alternative: str = "greater") -> Comparison:
    from rlbench_med.suites.power import standard_error

    se, df, _ = (float(x) for x in standard_error(seed_var, shared_var, eval_var, seeds))
    est = Estimate(diff, se, df, seeds, PAIRED_T, seed_var, shared_var, eval_var)
    cell = Comparison("drpo", baseline, "overall", "f1_strict", diff, 0, 0, 0, seeds, PAIRED_T, estimate=est)
    return holm_family([cell], REFERENCE, alternative)[0]


def test_learned_only_when_significantly_better_than_base() -> None:
    v = verdict(_tested(0.08, 0.0004, 0.0001, 0.0001, "base"))
    assert v.comparison.significant and v.words == "learned (better than base)"


def test_did_not_learn_only_when_the_interval_rules_out_a_gain_of_the_mde() -> None:
    v = verdict(_tested(-0.005, 0.0004, 0.0001, 0.0001, "base"))
    assert v.kind == RULED_OUT and v.comparison.high < v.mde
    assert v.words == f"did not learn (rules out a gain of {v.mde:.3f} or more over base)"
    # the MDE is the one-sided test's at its level, with the cell's own noise
    expected = seed_test_mde(math.sqrt(0.0004), 4, shared_sd=0.01, eval_sd=0.01, alternative="greater")
    assert v.mde == pytest.approx(expected)


def test_an_inconclusive_result_says_how_many_seeds_would_detect_it() -> None:
    c = _tested(0.03, 0.0016, 0.00002, 0.0001, "base")
    v = verdict(c)
    assert v.kind == INCONCLUSIVE and not c.significant and c.high > v.mde
    k = v.seeds
    assert k is not None and k > 4
    assert v.words == f"inconclusive whether it learned with 4 seeds (about {k} seeds would detect +0.030)"
    # k seeds detect +0.030 with the same noise and level, k - 1 do not (an independent computation)
    sd, shared, evaluation = 0.04, math.sqrt(0.00002), 0.01
    alpha = (1 - c.level) / 2
    assert seed_test_mde(sd, k, shared_sd=shared, eval_sd=evaluation, alpha=alpha, alternative="greater") <= 0.03
    assert seed_test_mde(sd, k - 1, shared_sd=shared, eval_sd=evaluation, alpha=alpha, alternative="greater") > 0.03


def test_when_shared_evaluation_noise_hides_an_effect_more_seeds_cannot_help() -> None:
    c = _tested(0.03, 0.0001, 0.0004, 0.00005, "grpo", alternative="two-sided")
    assert seeds_needed(c, 0.03) is None  # the shared noise alone puts the MDE near 2.8 x 0.02 at any seed count
    v = verdict(c)
    assert v.kind == INCONCLUSIVE and "more seeds cannot detect +0.030" in v.words and "larger test split" in v.words


def test_one_seed_words_say_evaluation_noise_only() -> None:
    import numpy as np

    boot = np.random.default_rng(0).normal(0.04, 0.03, 2000)
    est = Estimate(0.04, float(boot.std(ddof=1)), math.inf, 1, BOOTSTRAP, boot=boot)
    cell = Comparison("drpo", "grpo", "overall", "f1_strict", 0.04, 0, 0, 0, 1, BOOTSTRAP, estimate=est)
    v = verdict(holm_family([cell], "primary")[0])
    assert v.words.endswith("(1 seed: evaluation noise only)") and v.seeds is None
    assert "a second seed would measure the training noise" in v.words
    assert minimum_detectable(v.comparison) == pytest.approx((1.959964 + 0.841621) * est.se, rel=1e-5)


def test_judge_pairs_tests_the_pairs_as_one_family() -> None:
    datasets = (("d1", "A"), ("d2", "C"))
    runs = {("drpo", s): make_records(10 + s, 0.9, n=30, datasets=datasets) for s in range(3)}
    runs |= {("grpo", s): make_records(20 + s, 0.5, n=30, datasets=datasets) for s in range(3)}
    runs |= {("control:zero", 0): make_records(7, 0.3, n=30, datasets=datasets)}
    evalset = EvaluationSet.from_runs(runs, n_boot=300)
    verdicts = judge_pairs(evalset, [Pair("drpo", range(3), "grpo", range(3)),
                                     Pair("grpo", range(3), "control:zero", [0], constant_baseline=True,
                                          alternative="greater")], "f1_strict")
    first, second = (v.comparison for v in verdicts)
    assert first.family == "primary" and first.alternative == "two-sided" and second.alternative == "greater"
    raw = [first.estimate.p_value(), second.estimate.p_value("greater")]
    assert sorted([first.p_adjusted, second.p_adjusted]) == pytest.approx(sorted([min(1, 2 * min(raw)), max(
        min(1, 2 * min(raw)), max(raw))]))
    assert verdicts[0].words == "better than grpo" and verdicts[1].words == "better than control:zero"
    assert all(v.mde > 0 for v in verdicts)


def test_a_cell_tested_in_a_larger_family_has_a_larger_mde() -> None:
    alone = _tested(0.0, 0.0004, 0.0001, 0.0001, "grpo", alternative="two-sided")
    adjusted = replace(alone, level=1 - 0.05 / 4)
    assert minimum_detectable(adjusted) > minimum_detectable(alone)
