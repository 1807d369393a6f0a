"""The testing plan: which comparison cells are tested, in which family, and at which level.

A report compares many cells (algorithm pairs x domains x metrics); testing them all as one family
would leave no power, and testing each alone would find differences that are not there. The plan
declares, before any number is seen, one question per comparison and corrects only where several
questions are asked together (Holm's step-down procedure within a family, at ``alpha`` = 5%):

- ``primary``: for a comparison of two trained algorithms, the overall primary metric, two-sided.
  One test per comparison; Holm across the primary tests that face the same baseline (several
  algorithms against ``--baseline``).
- ``secondary``: the primary metric per domain of that comparison, two-sided, tested only when
  its primary test is significant (a gate: no domain is starred without the overall difference);
  Holm across the domains with at least :data:`MIN_TESTED_RECORDS` test records. Smaller domains,
  and every domain while the gate is closed, keep the family with an interval and no test.
- ``reference``: each trained algorithm against ``base`` (did training improve the starting
  policy?) and against the best floor (the floor with the highest overall primary metric: does it
  beat every answer that ignores the input?), overall primary metric, one-sided (H1: the
  algorithm is better); Holm across all of these tests.
- ``exploratory``: every other cell (other metrics, the other floors, per-domain cells against
  ``base`` and the floors): the two-sided 95% interval, no test (``p_adjusted`` empty, never
  significant).

Intervals agree with the stars. A tested cell with p-value ``p`` and Holm-adjusted ``p_adj`` is
given the interval of a test at ``alpha p / p_adj`` (the level Holm's procedure spends on it;
``alpha / m`` for the smallest of ``m`` p-values), so it excludes 0 exactly when ``p_adj <= alpha``
(for the one-sided tests: its lower end is above 0). A family of one test keeps the 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from rlbench_med.reports.results import is_reference, split_label
from rlbench_med.reports.stats import Comparison
from rlbench_med.runners.base import BASE
from rlbench_med.suites.power import GREATER, TWO_SIDED

PRIMARY = "primary"
SECONDARY = "secondary"
REFERENCE = "reference"
EXPLORATORY = "exploratory"
FAMILIES = (PRIMARY, SECONDARY, REFERENCE, EXPLORATORY)
ALPHA = 0.05
#: Domains with fewer test records than this get an interval but no test (and no star).
MIN_TESTED_RECORDS = 20


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values: sorted ascending, ``p_adj_(i) = max_{j <= i} min(1, (m - j) p_(j))``
    (``j = 0, 1, ...``); a nan p-value is treated as 1 (it is never rejected)."""
    m = len(p_values)
    clean = [1.0 if math.isnan(p) else p for p in p_values]
    order = sorted(range(m), key=lambda i: clean[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * clean[i]))
        out[i] = running
    return out


def holm_family(cells: Sequence[Comparison], family: str, alternative: str | Sequence[str] = TWO_SIDED,
                alpha: float = ALPHA) -> list[Comparison]:
    """``cells`` tested as one family (module docstring): ``p_adjusted`` by Holm, ``significant`` when
    ``p_adjusted <= alpha``, each interval at the level Holm spends on its cell. ``alternative``:
    one for every cell, or one per cell."""
    sides = [alternative] * len(cells) if isinstance(alternative, str) else list(alternative)
    tested = [c.at(alpha, side) if c.estimate is not None else c for c, side in zip(cells, sides)]
    adjusted = holm_adjusted([c.p_value for c in tested])
    out = []
    for c, p_adj, alternative in zip(tested, adjusted, sides):
        spent = alpha if math.isnan(c.p_value) or c.p_value == 0 or p_adj == 0 else alpha * c.p_value / p_adj
        if c.estimate is not None:
            c = c.at(spent, alternative)
        testable = not math.isnan(c.p_value)
        out.append(replace(c, family=family, p_adjusted=p_adj if testable else float("nan"),
                           significant=testable and p_adj <= alpha))
    return out


def best_floor(comparisons: Sequence[Comparison], primary: str, floor_means: dict[str, float]) -> str | None:
    """The floor with the highest overall ``primary`` (``floor_means``: its value per floor) that the
    comparisons face, or None."""
    faced = {c.baseline for c in comparisons if c.metric == primary and c.domain == "overall"}
    candidates = [f for f in floor_means if f in faced and not math.isnan(floor_means[f])]
    return max(candidates, key=lambda f: floor_means[f]) if candidates else None


def apply_plan(comparisons: Sequence[Comparison], primary: str, floor: str | None, alpha: float = ALPHA
               ) -> list[Comparison]:
    """Every cell of ``comparisons`` with its family, test and interval (module docstring), in the same order.

    ``floor``: the best floor (:func:`best_floor`), the one reference floor that is tested.
    """
    index = {id(c): i for i, c in enumerate(comparisons)}
    out: list[Comparison | None] = [None] * len(comparisons)

    def put(cells: Sequence[Comparison], tested: Sequence[Comparison]) -> None:
        for c, t in zip(cells, tested):
            out[index[id(c)]] = t

    overall = [c for c in comparisons if c.metric == primary and c.domain == "overall"]
    reference = [c for c in overall if split_label(c.baseline).name == BASE or c.baseline == floor]
    put(reference, holm_family(reference, REFERENCE, GREATER, alpha))
    by_baseline: dict[str, list[Comparison]] = {}
    for c in overall:
        if not is_reference(c.baseline):
            by_baseline.setdefault(c.baseline, []).append(c)
    for cells in by_baseline.values():
        tested = holm_family(cells, PRIMARY, TWO_SIDED, alpha)
        put(cells, tested)
        for t in tested:
            domains = [c for c in comparisons if (c.algo, c.baseline, c.metric) == (t.algo, t.baseline, primary)
                       and c.domain != "overall"]
            gated = [c for c in domains if c.n_samples >= MIN_TESTED_RECORDS] if t.significant else []
            put(gated, holm_family(gated, SECONDARY, TWO_SIDED, alpha))
            rest = [c for c in domains if all(c is not g for g in gated)]
            put(rest, [_untested(c, SECONDARY, alpha) for c in rest])
    for i, c in enumerate(comparisons):
        if out[i] is None:
            out[i] = _untested(c, EXPLORATORY, alpha)
    return [c for c in out if c is not None]


def _untested(c: Comparison, family: str, alpha: float) -> Comparison:
    tested = c.at(alpha, TWO_SIDED) if c.estimate is not None else c
    return replace(tested, family=family, p_adjusted=float("nan"), significant=False)
