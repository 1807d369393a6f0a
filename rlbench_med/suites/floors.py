"""Trivial floors: what answers that never look at the input score on a test split.

Computed from the data alone (no training), for every test record, with the record's dataset's
class list:

- ``floor:all``: every class of the dataset (the hedger; it wins the paper's ``f1`` on many
  datasets and scores ``acc`` 0.5 on single-label ones);
- ``floor:majority``: the most frequent *training* label set of the dataset (ties: the set whose
  sorted labels come first; a dataset with no training record gets the empty answer);
- ``floor:random``: one class drawn uniformly at random; its scores are the mean over
  :data:`RANDOM_DRAWS` draws with fixed seeds (draw ``k`` uses ``numpy.random.default_rng([RANDOM_SEED, k])``).

These label floors give no box. Where the test split has regions (masks or boxes), three box
floors score ``iou`` only (ours, best box against the region, as the ``iou`` metric):

- ``floor:box_image``: the whole image as the box;
- ``floor:box_mean``: the mean training box of the dataset, in coordinates relative to the image
  (each training region's bounding box divided by its image's width and height), scaled to each
  test image (a dataset with no training region gives no box);
- ``floor:box_none``: no box (IoU 0).

Rows in results.csv carry seed 0 (floors do not depend on the training seed), and the predictions
files let a report compare against them (``floor:random``'s draws are regenerated from
``floor:all``'s file by :func:`random_draws`). Floors are scored on the records the algorithms are
scored on (:func:`scored_records`: the first ``eval_max_samples`` of the test split when it is set),
so their rows' ``n`` is theirs and every comparison with them is paired record by record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlbench_med.suites.data import Sample, load_sample_mask
from rlbench_med.suites.metrics import compute_metrics

FLOOR_ALL = "floor:all"
FLOOR_MAJORITY = "floor:majority"
FLOOR_RANDOM = "floor:random"
FLOOR_BOX_IMAGE = "floor:box_image"
FLOOR_BOX_MEAN = "floor:box_mean"
FLOOR_BOX_NONE = "floor:box_none"
LABEL_FLOORS = (FLOOR_ALL, FLOOR_MAJORITY, FLOOR_RANDOM)
BOX_FLOORS = (FLOOR_BOX_IMAGE, FLOOR_BOX_MEAN, FLOOR_BOX_NONE)
FLOORS = LABEL_FLOORS + BOX_FLOORS
#: Floors whose answer is one fixed set per record (a predictions file each).
FILED_FLOORS = (FLOOR_ALL, FLOOR_MAJORITY, *BOX_FLOORS)
RANDOM_DRAWS = 100
RANDOM_SEED = 0
FLOOR_SEED = 0


def is_floor(algo: str) -> bool:
    """True for ``floor:*`` labels."""
    return algo.startswith("floor:")


def _record(sample: Sample, predicted: Sequence[str]) -> dict[str, Any]:
    return {"uid": sample.uid, "domain": sample.domain, "dataset": sample.dataset, "labels": list(sample.labels),
            "predicted": list(predicted)}


def scored_records(test: Sequence[Sample], max_samples: int) -> list[Sample]:
    """The test records an evaluation capped at ``max_samples`` scores (0: all): the first ones, as the
    runners take them (``eval_max_samples``)."""
    return list(test) if max_samples <= 0 else list(test[:max_samples])


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
    floors = {
        FLOOR_ALL: [every],
        FLOOR_MAJORITY: [[_record(s, majority.get(s.dataset, ())) for s in test]],
        FLOOR_RANDOM: random_draws(every),
    }
    if any(s.has_region for s in test):
        floors.update(box_floor_predictions(train, test))
    return floors


Box = tuple[float, float, float, float]


def region_box(sample: Sample) -> Box | None:
    """The bounding box ``(x1, y1, x2, y2)`` of a sample's region: its mask's foreground, else its ``bbox``."""
    mask = load_sample_mask(sample)
    if mask is not None and mask.any():
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)
    return sample.bbox


def mean_relative_boxes(train: Sequence[Sample]) -> dict[str, Box]:
    """Per dataset, the mean training region box in coordinates relative to the image's width and height."""
    boxes: dict[str, list[Box]] = {}
    for s in train:
        if not s.has_region or s.image_size is None:
            continue
        box = region_box(s)
        if box is not None:
            w, h = s.image_size
            boxes.setdefault(s.dataset, []).append((box[0] / w, box[1] / h, box[2] / w, box[3] / h))
    return {ds: tuple(float(v) for v in np.mean(b, axis=0)) for ds, b in boxes.items()}  # type: ignore[misc]


def box_floor_predictions(train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, list[list[dict[str, Any]]]]:
    """The three box floors' records (``predicted`` empty, ``iou`` on the records with a region)."""
    from rlbench_med.suites.rewards import RewardFunction

    scorer = RewardFunction()  # the iou metric: best box against the region
    means = mean_relative_boxes(train)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in BOX_FLOORS}
    for s in test:
        boxes: dict[str, list[Box]] = {FLOOR_BOX_NONE: []}
        if s.image_size is not None:
            w, h = s.image_size
            boxes[FLOOR_BOX_IMAGE] = [(0.0, 0.0, float(w), float(h))]
            rel = means.get(s.dataset)
            boxes[FLOOR_BOX_MEAN] = [(rel[0] * w, rel[1] * h, rel[2] * w, rel[3] * h)] if rel else []
        for name in BOX_FLOORS:
            record = _record(s, ())
            iou = scorer.iou(s, boxes.get(name, []))
            if iou is not None:
                record["iou"] = float(iou)
            out[name].append(record)
    return {name: [records] for name, records in out.items()}


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
    """results.csv rows of the floors: each metric is the mean over the floor's draws (box floors: ``iou`` only)."""
    rows: list[dict[str, Any]] = []
    for name, draws in floors.items():
        values: dict[tuple[str, str], list[float]] = {}
        counts: dict[tuple[str, str], int] = {}
        for records in draws:
            for r in compute_metrics(records):
                if name in BOX_FLOORS and r["metric"] != "iou":
                    continue
                values.setdefault((r["domain"], r["metric"]), []).append(float(r["value"]))
                counts[(r["domain"], r["metric"])] = int(r["n"])
        for (domain, metric), vs in values.items():
            rows.append({"suite": suite, "algo": name, "seed": FLOOR_SEED, "domain": domain, "metric": metric,
                         "value": float(np.mean(vs)), "n": counts[(domain, metric)]})
    return rows
