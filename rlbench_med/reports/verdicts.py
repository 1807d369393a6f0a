"""What a comparison says, in words that match its evidence.

For a tested cell (:mod:`.testing`) the verdict is one of:

- ``better`` / ``worse``: the test is significant (its interval, at the level its family spends,
  excludes 0);
- ``ruled out``: not significant, and the interval rules out differences as large as the test's
  minimum detectable effect (MDE, 80% power at the level the test ran at): a true difference of
  that size would most likely have been found, so "no difference of that size" is the finding;
- ``inconclusive``: neither. The words then say how many seeds would detect the observed
  difference with the same noise (:func:`seeds_needed`), or that more seeds cannot (the evaluation
  noise the seeds share does not shrink with them; a larger test split would).

Against ``base`` the words are "learned" / "did not learn"; against a floor "above" / "not above
the best floor"; against a trained algorithm "better" / "worse" / "no difference of X or more".
Results of one seed add "evaluation noise only".

:func:`judge_pairs` answers all of it for pairs a caller chooses (e.g. reference estimators against
controls): difference, interval, adjusted p-value, MDE and words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rlbench_med.reports.results import split_label
from rlbench_med.reports.stats import BOOTSTRAP, EVALUATION_ONLY, Comparison, ComparisonError, EvaluationSet, compare
from rlbench_med.reports.testing import ALPHA, PRIMARY, holm_family
from rlbench_med.runners.base import BASE
from rlbench_med.suites.floors import is_floor
from rlbench_med.suites.power import GREATER, POWER, TWO_SIDED, evaluation_mde, seed_test_mde

#: The most seeds :func:`seeds_needed` considers.
MAX_SEEDS = 64
BETTER, WORSE, RULED_OUT, INCONCLUSIVE = "better", "worse", "ruled out", "inconclusive"


def tested_alpha(c: Comparison) -> float:
    """The level ``c``'s test ran at, from its interval's level (two-sided ``1 - level``; one-sided half of it)."""
    return (1 - c.level) if c.alternative == TWO_SIDED else (1 - c.level) / 2


def _parts(c: Comparison) -> tuple[float, float, float] | None:
    """``(seed sd, shared sd, eval sd)`` of one seed's difference (the seed sd at least the evaluation floor)."""
    e = c.estimate
    if e is None or c.n_seeds < 2:
        return None
    return math.sqrt(max(e.seed_var, e.eval_var)), math.sqrt(e.shared_var), math.sqrt(e.eval_var)


def minimum_detectable(c: Comparison, seeds: int | None = None, power: float = POWER) -> float:
    """MDE of the test ``c`` ran (its method, level and alternative), with its own noise, at ``seeds``
    (default: its own); nan without an estimate."""
    alpha = tested_alpha(c)
    if c.estimate is None or not c.estimate.se == c.estimate.se:
        return float("nan")
    if c.method == BOOTSTRAP:
        return evaluation_mde(c.estimate.se, alpha, power, c.alternative)
    parts = _parts(c)
    if parts is None:
        return float("nan")
    seed_sd, shared_sd, eval_sd = parts
    return seed_test_mde(seed_sd, seeds or c.n_seeds, shared_sd=shared_sd, eval_sd=eval_sd, alpha=alpha,
                         power=power, alternative=c.alternative)


def seeds_needed(c: Comparison, effect: float, power: float = POWER) -> int | None:
    """Fewest seeds (2 to :data:`MAX_SEEDS`) whose MDE, with ``c``'s noise, is at most ``|effect|``; None
    when none is (the shared evaluation noise alone hides it, or it needs more than the maximum) and
    for one seed (its training noise is unmeasured)."""
    parts = _parts(c)  # one seed (a bootstrap) has no training noise measured: no seed count to promise
    if parts is None or effect == 0:
        return None
    seed_sd, shared_sd, eval_sd = parts
    alpha = tested_alpha(c)

    def mde(k: int) -> float:
        return seed_test_mde(seed_sd, k, shared_sd=shared_sd, eval_sd=eval_sd, alpha=alpha, power=power,
                             alternative=c.alternative)

    if mde(MAX_SEEDS) > abs(effect):
        return None
    lo, hi = 1, MAX_SEEDS  # mde(hi) <= |effect|; find the smallest such k (the MDE falls with k)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mde(mid) <= abs(effect):
            hi = mid
        else:
            lo = mid
    return max(hi, 2)


@dataclass(frozen=True)
class Verdict:
    """One comparison in words: ``kind`` (better / worse / ruled out / inconclusive), the MDE of its
    test, the seeds that would detect the observed difference (None: none would), and the sentence."""

    comparison: Comparison
    kind: str
    mde: float
    seeds: int | None
    words: str


def verdict(c: Comparison, power: float = POWER) -> Verdict:
    """The verdict of a tested cell (module docstring); an untested cell is ``inconclusive`` with its interval."""
    mde = minimum_detectable(c, power=power)
    one_sided = c.alternative == GREATER
    if c.significant:
        kind = BETTER if c.diff > 0 else WORSE
    elif mde == mde and c.high < mde and (one_sided or c.low > -mde):
        kind = RULED_OUT
    else:
        kind = INCONCLUSIVE
    needed = seeds_needed(c, c.diff, power) if kind == INCONCLUSIVE and (c.diff > 0 or not one_sided) else None
    return Verdict(c, kind, mde, needed, _words(c, kind, mde, needed))


def _words(c: Comparison, kind: str, mde: float, needed: int | None) -> str:
    ref = c.baseline
    name = split_label(ref).name
    if name == BASE:
        said = {BETTER: "learned (better than base)", WORSE: "worse than base",
                RULED_OUT: f"did not learn (rules out a gain of {mde:.3f} or more over base)"}
        if kind == RULED_OUT and c.high < 0:
            said[RULED_OUT] = "did not learn (below base)"
    elif is_floor(name):
        said = {BETTER: f"above the best floor ({ref})", WORSE: f"below the best floor ({ref})",
                RULED_OUT: f"not above the best floor ({ref})"}
    else:
        said = {BETTER: f"better than {ref}", WORSE: f"worse than {ref}",
                RULED_OUT: (f"no gain of {mde:.3f} or more over {ref}" if c.alternative == GREATER
                            else f"no difference of {mde:.3f} or more from {ref}")}
    if kind in said:
        text = said[kind]
    else:
        what = f"vs {ref}" if name != BASE else "whether it learned"
        seeds = f"{c.n_seeds} seed{'s' if c.n_seeds != 1 else ''}"
        if c.method == BOOTSTRAP:
            detail = f"MDE {mde:.3f} on evaluation noise alone; a second seed would measure the training noise"
        elif needed is not None:
            detail = f"about {needed} seeds would detect {c.diff:+.3f}"
        elif c.diff == 0 or (c.alternative == GREATER and c.diff < 0) or math.isnan(mde):
            detail = f"MDE {mde:.3f}" if mde == mde else "no test"
        else:
            detail = (f"more seeds cannot detect {c.diff:+.3f}: the evaluation noise the seeds share hides it; "
                      "a larger test split would help")
        text = f"inconclusive {what} with {seeds} ({detail})"
    return text + (" (1 seed: evaluation noise only)" if c.method in EVALUATION_ONLY else "")


@dataclass(frozen=True)
class Pair:
    """One question: is ``algo`` (seeds ``a_seeds``) better than / different from ``baseline``?

    ``constant_baseline``: the baseline does not depend on the training seed (``base``, a floor,
    a control run once): its runs are averaged and paired with every seed of ``algo``.
    """

    algo: str
    a_seeds: Sequence[int]
    baseline: str
    b_seeds: Sequence[int]
    constant_baseline: bool = False
    alternative: str = TWO_SIDED


def judge_pairs(
    evalset: EvaluationSet, pairs: Sequence[Pair], metric: str, *, domain: str = "overall", alpha: float = ALPHA,
    family: str = PRIMARY,
) -> list[Verdict]:
    """Each pair on one (``domain``, ``metric``) cell, tested as one family (Holm across the pairs).

    Each :class:`Verdict` holds the :class:`~rlbench_med.reports.stats.Comparison` (``diff``,
    ``low``/``high`` at the level Holm spends on it, ``p_value``, ``p_adjusted``, ``significant``),
    the MDE of the test run, the seeds that would detect the observed difference and the words
    ("better than grpo", "learned", "inconclusive vs grpo with 4 seeds (about 12 seeds would detect
    +0.040)"). A pair with one seed is tested on evaluation noise only, and says so. Raises
    :class:`~rlbench_med.reports.stats.ComparisonError` when a pair shares no seed or lacks the cell.
    """
    cells = []
    for pair in pairs:
        found = [c for c in compare(evalset, pair.algo, pair.a_seeds, pair.baseline, pair.b_seeds,
                                    constant_baseline=pair.constant_baseline, metrics={metric})
                 if c.domain == domain]
        if not found:
            raise ComparisonError(f"{pair.algo} vs {pair.baseline}: no {domain} {metric} in their predictions")
        cells.append(found[0])
    return [verdict(c) for c in holm_family(cells, family, [p.alternative for p in pairs], alpha)]
