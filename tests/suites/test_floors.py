"""The trivial floors, against hand-worked numbers and independent expectations."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench_med.suites.data import Sample
from rlbench_med.suites.floors import (
    FLOOR_ALL,
    FLOOR_MAJORITY,
    FLOOR_RANDOM,
    RANDOM_DRAWS,
    floor_predictions,
    floor_rows,
    majority_sets,
)

CLASSES = ("A", "B", "C")


def sample(uid: str, labels: tuple[str, ...], dataset: str = "D", split: str = "test") -> Sample:
    return Sample(uid=uid, problem="?", labels=labels, domain="derm", dataset=dataset, task=dataset, classes=CLASSES,
                  split=split)


def _rows(rows):
    return {(r["algo"], r["domain"], r["metric"]): r["value"] for r in rows}


def test_floors_by_hand_on_a_single_label_dataset() -> None:
    train = [sample(f"t{i}", (c,), split="train") for i, c in enumerate("AABBB C".replace(" ", ""))]
    test = [sample("a", ("A",)), sample("b", ("B",)), sample("c", ("C",)), sample("d", ("B",))]
    assert majority_sets(train) == {"D": ("B",)}
    rows = _rows(floor_rows("s", floor_predictions(train, test)))
    # floor:all names A, B, C on every record. A: TP 1, FP 3 -> F1 2/5; B: TP 2, FP 2 -> 4/6; C: TP 1, FP 3 -> 2/5.
    assert rows[(FLOOR_ALL, "derm", "f1")] == pytest.approx((2 / 5 + 4 / 6 + 2 / 5) / 3)
    assert rows[(FLOOR_ALL, "derm", "acc")] == pytest.approx(0.5)  # sensitivity 1, specificity 0 per class
    assert rows[(FLOOR_ALL, "derm", "f1_strict")] == 0.0 and rows[(FLOOR_ALL, "derm", "exact")] == 0.0
    assert rows[(FLOOR_ALL, "derm", "labels")] == 3.0
    # floor:majority answers B: B: TP 2, FP 2 -> F1 2/3; A and C: 0. exact = 2/4.
    assert rows[(FLOOR_MAJORITY, "derm", "f1")] == pytest.approx((2 / 3) / 3)
    assert rows[(FLOOR_MAJORITY, "derm", "f1_strict")] == pytest.approx((2 / 3) / 3)
    assert rows[(FLOOR_MAJORITY, "derm", "exact")] == pytest.approx(0.5)
    assert rows[(FLOOR_MAJORITY, "overall", "exact")] == pytest.approx(0.5)


def test_random_floor_is_the_mean_of_fixed_seed_draws_near_its_expectation() -> None:
    rng = np.random.default_rng(0)
    test = [sample(f"r{i}", (CLASSES[int(rng.integers(3))],)) for i in range(300)]
    floors = floor_predictions([], test)
    assert len(floors[FLOOR_RANDOM]) == RANDOM_DRAWS
    assert floors[FLOOR_RANDOM] == floor_predictions([], test)[FLOOR_RANDOM]  # fixed seeds: the same draws
    rows = _rows(floor_rows("s", floors))
    # A uniform guess among 3 classes: exact 1/3, balanced accuracy 1/2 in expectation, one label per answer.
    assert rows[(FLOOR_RANDOM, "derm", "exact")] == pytest.approx(1 / 3, abs=0.01)
    assert rows[(FLOOR_RANDOM, "derm", "acc")] == pytest.approx(0.5, abs=0.01)
    assert rows[(FLOOR_RANDOM, "derm", "labels")] == 1.0
    # With no training record the majority floor gives the empty answer.
    assert all(r["predicted"] == [] for r in floors[FLOOR_MAJORITY][0])


def test_majority_ties_break_on_the_sorted_label_set() -> None:
    train = [sample("1", ("B",), split="train"), sample("2", ("A", "C"), split="train"),
             sample("3", ("C", "A"), split="train"), sample("4", ("B",), split="train")]
    assert majority_sets(train) == {"D": ("A", "C")}  # ("A", "C") sorts before ("B",)


def test_box_floors_by_hand(tmp_path) -> None:
    from PIL import Image

    from rlbench_med.suites.floors import FLOOR_BOX_IMAGE, FLOOR_BOX_MEAN, FLOOR_BOX_NONE

    def masked(uid: str, box: tuple[int, int, int, int], split: str) -> Sample:
        mask = np.zeros((10, 20), dtype=np.uint8)  # H 10, W 20
        x1, y1, x2, y2 = box
        mask[y1:y2, x1:x2] = 255
        path = tmp_path / f"{uid}.png"
        Image.fromarray(mask).save(path)
        return Sample(uid=uid, problem="?", labels=("A",), domain="derm", dataset="D", task="D", classes=CLASSES,
                      segmentation_path=path, image_size=(20, 10), split=split)

    # Training regions 4x2 at (0,0) and (8,4): relative boxes (0, 0, .2, .2) and (.4, .4, .6, .6) -> mean (.2, .2, .4, .4),
    # i.e. (4, 2, 8, 4) on a 20x10 test image.
    train = [masked("t1", (0, 0, 4, 2), "train"), masked("t2", (8, 4, 12, 6), "train")]
    test = [masked("s1", (4, 2, 8, 4), "test")]  # exactly the mean box: 8 pixels
    rows = _rows(floor_rows("s", floor_predictions(train, test)))
    assert rows[(FLOOR_BOX_MEAN, "derm", "iou")] == pytest.approx(1.0)
    assert rows[(FLOOR_BOX_IMAGE, "derm", "iou")] == pytest.approx(8 / 200)  # region 8 pixels of 20 x 10
    assert rows[(FLOOR_BOX_NONE, "derm", "iou")] == 0.0
    assert not any(k[0] in (FLOOR_BOX_MEAN, FLOOR_BOX_IMAGE) and k[2] != "iou" for k in rows)  # iou only


def test_floors_are_scored_on_the_records_the_algorithms_are_scored_on(tmp_path) -> None:
    import json
    from types import SimpleNamespace

    from rlbench_med.runners.sweep.results import write_floors
    from rlbench_med.suites.floors import scored_records

    test = [sample(f"s{i}", (CLASSES[i % 3],)) for i in range(9)]
    assert [s.uid for s in scored_records(test, 4)] == ["s0", "s1", "s2", "s3"]  # the first ones, as the runners
    assert scored_records(test, 0) == test
    validation = [sample(f"v{i}", (CLASSES[i % 3],)) for i in range(6)]
    data = SimpleNamespace(train=[sample("t", ("A",), split="train")], validation=validation, test=test)
    plan = SimpleNamespace(data_source="unused", data=data, out_dir=tmp_path, suite=SimpleNamespace(name="s"),
                           config=SimpleNamespace(eval_max_samples=4), score_test=True)
    rows = write_floors(plan)
    assert {r["n"] for r in rows if r["domain"] == "overall"} == {4}  # n: the records actually scored
    lines = (tmp_path / "predictions" / "floor_all-seed0.jsonl").read_text().splitlines()
    assert [json.loads(line)["uid"] for line in lines] == ["s0", "s1", "s2", "s3"]
    lines = (tmp_path / "predictions" / "validation" / "floor_all-seed0.jsonl").read_text().splitlines()
    assert [json.loads(line)["uid"] for line in lines] == ["v0", "v1", "v2", "v3"]


def test_a_tune_scores_the_floors_on_the_validation_split_only(tmp_path) -> None:
    from types import SimpleNamespace

    from rlbench_med.runners.sweep.results import write_floors

    test = [sample(f"s{i}", (CLASSES[i % 3],)) for i in range(9)]
    validation = [sample(f"v{i}", (CLASSES[0],)) for i in range(6)]  # every validation answer is A
    data = SimpleNamespace(train=[sample("t", ("A",), split="train")], validation=validation, test=test)
    plan = SimpleNamespace(data_source="unused", data=data, out_dir=tmp_path, suite=SimpleNamespace(name="s"),
                           config=SimpleNamespace(eval_max_samples=0), score_test=False)
    rows = write_floors(plan)
    majority = {r["metric"]: r["value"] for r in rows if r["algo"] == "floor:majority" and r["domain"] == "overall"}
    assert majority["exact"] == 1.0 and {r["n"] for r in rows if r["domain"] == "overall"} == {6}
    assert not list((tmp_path / "predictions").glob("*.jsonl"))  # no test predictions
    assert len((tmp_path / "predictions" / "validation" / "floor_all-seed0.jsonl").read_text().splitlines()) == 6
