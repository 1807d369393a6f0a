"""Trivial floors: what answers that never look at the input score on a test split.

Computed from the data alone (no training), for every test record, with the record's dataset's
class list:

- ``floor:all``: every class of the dataset (the hedger; it wins the paper's ``f1`` on many
  datasets and scores ``acc`` 0.5 on single-label ones);
- ``floor:majority``: the most frequent *training* label set of the dataset (ties: the set whose
  sorted labels come first; a dataset with no training record gets the empty answer);
- ``floor:random``: one class drawn uniformly at random; its scores are the mean over
  :data:`RANDOM_DRAWS` draws with fixed seeds (draw ``k`` uses ``numpy.random.default_rng([RANDOM_SEED, k])``).

The floors give no box, so they have no ``iou``. Their rows in results.csv carry seed 0 (they do not
depend on the training seed), and their predictions files let a report compare against them
(``floor:random``'s draws are regenerated from ``floor:all``'s file by :func:`random_draws`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlbench_med.suites.data import Sample
from rlbench_med.suites.metrics import compute_metrics

FLOOR_ALL = "floor:all"
FLOOR_MAJORITY = "floor:majority"
FLOOR_RANDOM = "floor:random"
FLOORS = (FLOOR_ALL, FLOOR_MAJORITY, FLOOR_RANDOM)
#: Floors whose answer is one fixed set per record (a predictions file each).
FILED_FLOORS = (FLOOR_ALL, FLOOR_MAJORITY)
RANDOM_DRAWS = 100
RANDOM_SEED = 0
FLOOR_SEED = 0


def is_floor(algo: str) -> bool:
    """True for ``floor:*`` labels."""
    return algo.startswith("floor:")


def _record(sample: Sample, predicted: Sequence[str]) -> dict[str, Any]:
    return {"uid": sample.uid, "domain": sample.domain, "dataset": sample.dataset, "labels": list(sample.labels),
            "predicted": list(predicted)}


def majority_sets(train: Sequence[Sample]) -> dict[str, tuple[str, ...]]:
    """The most frequent training label set of each dataset (ties broken by the sorted labels)."""
    counts: dict[str, Counter[tuple[str, ...]]] = {}
    for s in train:
        counts.setdefault(s.dataset, Counter())[tuple(sorted(s.labels))] += 1
    return {ds: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for ds, c in counts.items()}


def floor_predictions(train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, list[list[dict[str, Any]]]]:
    """``{floor: [records of draw 0, records of draw 1, ...]}`` (one draw but for ``floor:random``)."""
    majority = majority_sets(train)
    every = [_record(s, s.classes) for s in test]
    return {
        FLOOR_ALL: [every],
        FLOOR_MAJORITY: [[_record(s, majority.get(s.dataset, ())) for s in test]],
        FLOOR_RANDOM: random_draws(every),
    }


def random_draws(every: Sequence[Mapping[str, Any]], n_draws: int = RANDOM_DRAWS, seed: int = RANDOM_SEED
                 ) -> list[list[dict[str, Any]]]:
    """``floor:random``'s draws from ``floor:all``'s records (whose ``predicted`` is the dataset's class list)."""
    draws = []
    for k in range(n_draws):
        rng = np.random.default_rng([seed, k])
        picks = rng.random(len(every))
        draw = []
        for rec, u in zip(every, picks):
            classes = list(rec["predicted"])
            chosen = [classes[min(int(u * len(classes)), len(classes) - 1)]] if classes else []
            draw.append({**rec, "predicted": chosen})
        draws.append(draw)
    return draws


def floor_rows(suite: str, floors: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> list[dict[str, Any]]:
    """results.csv rows of the floors: each metric is the mean over the floor's draws."""
    rows: list[dict[str, Any]] = []
    for name, draws in floors.items():
        values: dict[tuple[str, str], list[float]] = {}
        counts: dict[tuple[str, str], int] = {}
        for records in draws:
            for r in compute_metrics(records):
                values.setdefault((r["domain"], r["metric"]), []).append(float(r["value"]))
                counts[(r["domain"], r["metric"])] = int(r["n"])
        for (domain, metric), vs in values.items():
            rows.append({"suite": suite, "algo": name, "seed": FLOOR_SEED, "domain": domain, "metric": metric,
                         "value": float(np.mean(vs)), "n": counts[(domain, metric)]})
    return rows
