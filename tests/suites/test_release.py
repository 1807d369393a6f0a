"""The release's reward (``reward=release``) against the hand-worked battery and hand-worked pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlbench_med.suites.release import (
    answer_f1,
    extract_boxed_last,
    medical_compute_score,
    rasterize_box,
    release_frame,
    release_gt_box,
    release_iou,
    release_mask,
    split_release_labels,
)
from rlbench_med.suites.rewards import Answer, ReleaseReward, make_reward
from tests.suites import release_battery as battery


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("battery")
    battery.write_media(root)
    return root


def test_the_battery_covers_every_branch() -> None:
    names = [c.name for c in battery.CASES]
    assert len(names) == len(set(names)) >= 40
    assert {c.record for c in battery.CASES} == set(battery.RECORD_FIELDS)


@pytest.mark.parametrize("case", battery.CASES, ids=lambda c: c.name)
def test_release_reward_matches_the_hand_worked_battery(case: battery.Case, media: Path) -> None:
    got = ReleaseReward().score_text(battery.sample(media, case.record), case.response)
    assert len(case.response) == pytest.approx(case.length * 1000) or case.length == 1.0
    assert got.accuracy == pytest.approx(case.f1, abs=1e-12)
    assert got.iou == pytest.approx(case.iou, abs=1e-12)
    assert got.format == pytest.approx(case.format, abs=1e-12)
    assert got.length == pytest.approx(case.length, abs=1e-12)
    assert got.total == pytest.approx(case.total, abs=1e-12)


def test_a_structured_answer_is_scored_through_its_canonical_text(media: Path) -> None:
    # Canonical text: "\boxed{Edema}\n```json\n[{"label": "Edema", "bbox_2d": [20, 10, 30, 20]}]\n```"
    # = 14 + 12 + 33 + 16 = 75 characters. Box (pixel edges) [20, 10, 30, 20] drawn inclusively covers
    # rows 10..20 x cols 20..30 = 121 px around the 100-px mask -> 100 / 121; format 1.0; F1 2/3.
    answer = Answer(labels=("Edema",), boxes=((20.0, 10.0, 30.0, 20.0),))
    got = make_reward("release").score(battery.sample(media, "mask"), answer)
    assert (got.accuracy, got.iou, got.format, got.length) == pytest.approx((2 / 3, 100 / 121, 1.0, 0.075))
    # A parsed answer keeps its raw text, which is what gets scored (not a canonical rewrite).
    raw = Answer(labels=("Edema",), response="\\boxed{Edema, Pleural Effusion}")
    assert make_reward("release").score(battery.sample(media, "none"), raw).accuracy == 1.0


def test_release_weights_reweight_the_release_components(media: Path) -> None:
    case = next(c for c in battery.CASES if c.name == "fenced_valid")
    got = make_reward("release", "0.25,0.25,0.25,0.25").score_text(battery.sample(media, "mask"), case.response)
    assert got.total == pytest.approx(0.25 * (2 / 3 + 1 + 1 + 0.075))


def test_box_frame_release_reads_release_frame_pixels(media: Path) -> None:
    # The resized mask is rows 8..19 x cols 20..31 of the 256 x 256 frame; a release-frame box
    # [20, 8, 31, 19] covers exactly those pixels -> 1 (read as original pixels it would be off the mask).
    text = battery.fenced(battery.jbox("[20, 8, 31, 19]"))
    sample = battery.sample(media, "small_mask")
    assert ReleaseReward(box_frame="release").score_text(sample, text).iou == pytest.approx(1.0)
    # Read as original pixels: x 4 -> [80, 32, 124, 76], no overlap with the mask -> 0.
    assert ReleaseReward(box_frame="original").score_text(sample, text).iou == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A, B & C", ["A", "B & C"]),
        ("A,B", ["A", "B"]),
        ("A and B, C", ["A and B", "C"]),
        ("A & B", ["A", "B"]),
        ("A&B", ["A", "B"]),
        ("\\text{Benign}", ["\\text{Benign"]),
        ("\\boxed{A}, B}", ["A", "B"]),
        ("  Lone label ", ["Lone label"]),
        ("A, , A", ["A", ""]),
        ("Sand and Andes", ["Sand", "Andes"]),
    ],
)
def test_split_release_labels(text: str, expected: list[str]) -> None:
    assert split_release_labels(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x \\boxed{A} y \\boxed{ B, C } z", "B, C"),
        ("\\boxed{\\text{A}}", "\\text{A}"),
        ("\\boxed{A", "None"),
        ("no box", "None"),
        ("\\boxed{A}}}", "A"),
    ],
)
def test_extract_boxed_last(text: str, expected: str) -> None:
    assert extract_boxed_last(text) == expected


def test_an_extracted_none_scores_zero_even_against_a_none_truth() -> None:
    # "None" is the release's "no answer": 0 whatever the truth, also for a literal \boxed{None}.
    assert answer_f1("no box at all", "None") == 0.0
    assert answer_f1("\\boxed{None}", "None") == 0.0
    assert answer_f1("\\boxed{None, A}", "None, A") == 1.0


@pytest.mark.parametrize(
    ("size", "frame"),
    [
        ((64, 64), (256, 256)),  # 4096 px < 65536: factor sqrt(16) = 4
        ((256, 256), (256, 256)),  # exactly min_pixels: unchanged
        ((300, 250), (300, 250)),  # 75 000 px: inside the bounds
        ((1000, 1000), (724, 724)),  # factor sqrt(0.524288) = 0.72408 -> int(724.08) = 724
        ((128, 64), (362, 181)),  # 8192 px: factor sqrt(8) = 2.828 -> int(362.04), int(181.02)
    ],
)
def test_release_frame(size: tuple[int, int], frame: tuple[int, int]) -> None:
    assert release_frame(size) == frame


def test_release_mask_stretches_non_square_masks_like_the_release() -> None:
    # A 300 x 250 (W x H) mask with its left half (cols 0..149) set. The release resizes to PIL size
    # (H', W') = (250, 300): array [300, 250]. Output col j reads source col floor((j + 0.5) * 300 / 250),
    # < 150 for j <= 124 -> cols 0..124 of 300 rows = 37 500 px.
    array = np.zeros((250, 300), np.uint8)
    array[:, :150] = 255
    got = release_mask(Image.fromarray(array), (300, 250))
    assert got.shape == (300, 250)
    assert int((got > 0).sum()) == 37_500 and (got[:, :125] > 0).all()
    # An RGB mask is averaged over its channels: only the red channel set still counts as foreground.
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 2, 0] = 200
    averaged = release_mask(Image.fromarray(rgb), (4, 4))
    assert averaged.shape == (4, 4) and averaged[1, 2] == pytest.approx(200 / 3) and (averaged > 0).sum() == 1
    with pytest.raises(ValueError, match="RGBA"):
        release_mask(Image.fromarray(np.zeros((4, 4, 4), np.uint8)), (4, 4))


def test_rasterize_box_is_inclusive_clamped_and_swapped() -> None:
    out = rasterize_box([3.9, 1, 1, 2], height=4, width=5)  # -> x 1..3, y 1..2 inclusive: 3 x 2 = 6 px
    assert out.sum() == 6 and out[1:3, 1:4].all()
    assert rasterize_box([-2, -2, 99, 99], height=3, width=3).all()
    assert not rasterize_box([1, 1, 1, 3], height=4, width=4).any()


def test_gt_box_is_scaled_and_float32() -> None:
    # 0.1 * 4 is not a float32 number: the release stores float32(0.4) = 0.4000000059604645.
    assert release_gt_box([0.1, 2, 8, 5], (4.0, 4.0)) == (float(np.float32(0.4)), 8.0, 32.0, 20.0)
    assert release_gt_box(None, (4.0, 4.0)) == (0.0, 0.0, 0.0, 0.0)


def test_iou_errors_count_as_zero_and_mask_needs_foreground() -> None:
    mask = np.zeros((8, 8))
    text = battery.fenced(battery.jbox("[0, 0, 3, 3]"))
    # An all-zero mask falls to the box branch; the default [0, 0, 0, 0] box scores 0.
    assert release_iou(text, mask) == 0.0
    # Box branch against [0, 0, 3, 3]: identical -> 1.
    assert release_iou(text, mask, (0.0, 0.0, 3.0, 3.0)) == 1.0
    # A box of strings in the box branch: comparing str with float raises -> 0.
    assert release_iou(battery.fenced(battery.jbox('["0", "0", "3", "3"]')), None, (0.0, 0.0, 3.0, 3.0)) == 0.0
    # objects_of_interest that is not a list of dicts gives no box; a number raises -> 0.
    assert release_iou(battery.fenced('{"objects_of_interest": 5}'), None, (0.0, 0.0, 3.0, 3.0)) == 0.0


def test_medical_compute_score_defaults_are_the_release_weights() -> None:
    # BOXED_BOTH: F1 1, IoU 0, format 0, length 0.031 -> 0.5 + 0.0031.
    got = medical_compute_score(battery.BOXED_BOTH, battery.TRUTH)
    assert got.total == pytest.approx(0.5031)
