"""Rewards against hand-worked numbers; the parser never raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rlbench_med.suites.data import Sample
from rlbench_med.suites.rewards import (
    REWARD_PRESETS,
    Answer,
    RewardFunction,
    RewardWeights,
    answer_to_text,
    box_iou,
    label_f1,
    mask_box_iou,
    parse_answer,
)

CLASSES = ("Cardiomegaly", "Edema", "Pneumonia", "No Finding")


def _sample(tmp_path: Path | None = None, *, mask: bool = True, bbox: tuple | None = None) -> Sample:
    seg = None
    if mask and tmp_path is not None:
        arr = np.zeros((10, 10), np.uint8)
        arr[2:6, 3:8] = 255  # rows 2..5, cols 3..7: 20 pixels
        seg = tmp_path / "mask.png"
        Image.fromarray(arr).save(seg)
    return Sample(
        uid="s",
        problem="p",
        labels=("Cardiomegaly", "Edema"),
        domain="cxr",
        dataset="CheXpert",
        task="CheXpert",
        classes=CLASSES,
        segmentation_path=seg,
        bbox=bbox,
        image_size=(10, 10),
    )


REASONING = "the heart looks large and lungs look wet"  # 8 tokens


def test_hand_worked_reward_paper_max_mean_and_release_weights(tmp_path: Path) -> None:
    sample = _sample(tmp_path)
    text = (
        f"{REASONING}\n\\boxed{{cardiomegaly , Pneumonia}}\n"
        '```json\n[{"label": "Cardiomegaly", "bbox_2d": [3, 2, 8, 4]}, {"label": "x", "bbox_2d": [0, 0, 10, 10]}]\n```'
    )
    answer = parse_answer(text)
    assert answer.labels == ("cardiomegaly", "Pneumonia")
    assert answer.boxes == ((3.0, 2.0, 8.0, 4.0), (0.0, 0.0, 10.0, 10.0))
    assert answer.reasoning_tokens == 8 and answer.well_formed

    # F1 = 2 * 1 / (2 + 2) = 0.5; IoUs 10/20 = 0.5 and 20/100 = 0.2; length min(1, 8/16) = 0.5.
    paper_max = RewardFunction("paper").score(sample, answer)
    assert (paper_max.accuracy, paper_max.iou, paper_max.format, paper_max.length) == pytest.approx((0.5, 0.5, 1.0, 0.5))
    assert paper_max.total == pytest.approx(0.6 * 0.5 + 0.2 * 0.5 + 0.1 * 1.0 + 0.1 * 0.5)
    assert paper_max.iou_scored
    paper_mean = RewardFunction("paper", iou_reduce="mean").score(sample, answer)
    assert paper_mean.iou == pytest.approx(0.35)
    assert paper_mean.total == pytest.approx(0.3 + 0.2 * 0.35 + 0.1 + 0.05)
    release_weights = RewardFunction("0.5,0.3,0.1,0.1").score_text(sample, text)
    assert release_weights.total == pytest.approx(0.5 * 0.5 + 0.3 * 0.5 + 0.1 * 1.0 + 0.1 * 0.5)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((3, 2, 8, 6), 1.0),  # the mask's own box
        ((3, 2, 8, 4), 0.5),  # top half: 10 / 20
        ((0, 0, 10, 10), 0.2),  # whole image: 20 / 100
        ((5.4, 2, 8, 6), 0.6),  # pixel centres 5.5, 6.5, 7.5 -> 3 x 4 = 12 pixels; 12 / 20
        ((-5, -5, 30, 30), 0.2),  # clipped to the image
        ((8, 6, 10, 10), 0.0),
    ],
)
def test_box_against_mask_is_pixel_iou_of_rasterized_box(tmp_path: Path, box: tuple, expected: float) -> None:
    sample = _sample(tmp_path)
    assert RewardFunction().iou(sample, [box]) == pytest.approx(expected)


def test_mask_box_iou_matches_pixel_loop() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(3, 12, size=2)
        mask = rng.random((h, w)) < 0.3
        x1, x2 = np.sort(rng.uniform(-2, w + 2, 2))
        y1, y2 = np.sort(rng.uniform(-2, h + 2, 2))
        inside = np.zeros((h, w), bool)
        for i in range(h):
            for j in range(w):
                inside[i, j] = x1 <= j + 0.5 < x2 and y1 <= i + 0.5 < y2
        union = (inside | mask).sum()
        expected = (inside & mask).sum() / union if union else 0.0
        assert mask_box_iou(mask, (x1, y1, x2, y2)) == pytest.approx(expected)


def test_box_iou_without_mask_uses_true_box() -> None:
    sample = _sample(None, mask=False, bbox=(0.0, 0.0, 4.0, 4.0))
    assert box_iou((2, 2, 6, 6), (0, 0, 4, 4)) == pytest.approx(4 / 28)
    assert RewardFunction().iou(sample, [(2, 2, 6, 6), (0, 0, 4, 2)]) == pytest.approx(0.5)
    assert RewardFunction(iou_reduce="mean").iou(sample, [(2, 2, 6, 6), (0, 0, 4, 2)]) == pytest.approx((4 / 28 + 0.5) / 2)
    assert RewardFunction().iou(sample, []) == 0.0


def test_sample_without_region_rewards_abstaining_from_boxes() -> None:
    sample = _sample(None, mask=False)
    rf = RewardFunction("paper")
    no_box = rf.score(sample, Answer(labels=("Edema", "Cardiomegaly"), reasoning_tokens=16))
    assert (no_box.accuracy, no_box.iou, no_box.iou_scored) == (1.0, 1.0, False)
    assert no_box.total == pytest.approx(1.0)
    with_box = rf.score(sample, Answer(labels=("Edema", "Cardiomegaly"), boxes=((0, 0, 2, 2),), reasoning_tokens=16))
    assert with_box.iou == 0.0 and with_box.total == pytest.approx(0.8)


def test_unparseable_output_scores_zero(tmp_path: Path) -> None:
    rf = RewardFunction()
    sample = _sample(tmp_path)
    for text in ["", "Cardiomegaly", "\\boxed{Cardiomegaly", "\\boxed{ , }", '```json\n[{"bbox_2d": [3, 2, 8, 6]}]\n```']:
        b = rf.score_text(sample, text)
        assert (b.total, b.accuracy, b.iou, b.format, b.length) == (0.0, 0.0, 0.0, 0.0, 0.0), text


def test_malformed_json_block_costs_the_format_reward(tmp_path: Path) -> None:
    answer = parse_answer("\\boxed{Edema}\n```json\n[{\"bbox_2d\": [3, 2]}]\n```")
    assert answer.labels == ("Edema",) and answer.boxes == () and not answer.well_formed
    b = RewardFunction().score(_sample(tmp_path), answer)
    assert (b.format, b.iou, b.accuracy) == (0.0, 0.0, pytest.approx(2 / 3))
    truncated = parse_answer('\\boxed{Edema}\n```json\n[{"bbox_2d": [3, 2, 8, 6]}')
    assert truncated.labels == ("Edema",) and not truncated.well_formed


def test_last_boxed_answer_and_think_block() -> None:
    answer = parse_answer("<think>one two three</think> maybe \\boxed{A} no, \\boxed{ B , b , C }")
    assert answer.labels == ("B", "b", "C")
    assert answer.reasoning_tokens == 3
    assert parse_answer("\\boxed{\\text{x}} tail").labels == ("\\text{x}",)


def test_length_reward_shape() -> None:
    rf = RewardFunction(length_target=(16, 256))
    assert [rf.length_score(n) for n in (0, 8, 16, 256, 384, 512, 600)] == pytest.approx([0, 0.5, 1, 1, 0.5, 0, 0])


def test_label_f1_normalises_case_and_whitespace() -> None:
    assert label_f1(["  pleural   EFFUSION"], ["Pleural Effusion"]) == 1.0
    assert label_f1([], ["A"]) == 0.0
    assert label_f1(["A", "B", "C"], ["A"]) == pytest.approx(0.5)


def test_weights_presets_and_parsing() -> None:
    assert RewardWeights.parse("paper") == RewardWeights(0.6, 0.2, 0.1, 0.1)
    with pytest.raises(ValueError, match="use reward=release"):
        RewardWeights.parse("release")
    assert RewardWeights.parse("0.2,0.6,0.1,0.1") == RewardWeights(0.2, 0.6, 0.1, 0.1)
    assert RewardWeights.parse(REWARD_PRESETS["paper"].as_text()) == REWARD_PRESETS["paper"]
    for bad in ("papr", "1,2,3", "a,b,c,d", "0,0,0,0", "-1,1,1,1"):
        with pytest.raises(ValueError):
            RewardWeights.parse(bad)
    with pytest.raises(ValueError, match="iou_reduce"):
        RewardFunction(iou_reduce="min")  # type: ignore[arg-type]


def test_answer_text_round_trip() -> None:
    answer = Answer(
        labels=("Cardiomegaly", "Pleural Effusion"),
        boxes=((1.0, 2.0, 3.5, 4.0),),
        reasoning_tokens=3,
        reasoning="enlarged heart shadow",
        box_labels=("Cardiomegaly",),
    )
    assert parse_answer(answer_to_text(answer)) == answer


_FRAGMENTS = st.sampled_from(
    ["\\boxed{", "}", "{", "```json", "```", "[", "]", '{"bbox_2d": [1, 2, 3, 4]}', '"label"', ",", "1e999", "NaN", "<think>", "</think>", "Edema", " ", "\n", "[[[[", "null"]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_FRAGMENTS, max_size=30).map("".join)))
def test_parser_never_raises(text: str) -> None:
    answer = parse_answer(text)
    assert isinstance(answer, Answer)
    assert all(len(b) == 4 and b[0] < b[2] and b[1] < b[3] for b in answer.boxes)
    assert answer.well_formed <= bool(answer.labels)


def test_parser_survives_pathological_input() -> None:
    for text in ["```json\n" + "[" * 100000 + "\n```", "\\boxed{" * 1000, None, 42, b"\\boxed{A}"]:
        assert isinstance(parse_answer(text), Answer)


def test_weights_parse_accepts_semicolons_colons_and_empty_parts() -> None:
    expected = RewardWeights(0.2, 0.6, 0.1, 0.1)
    for spec in ("0.2;0.6;0.1;0.1", "0.2:0.6:0.1:0.1", "0.2:0.6;0.1,0.1", " 0.2 , 0.6 ,, 0.1 , 0.1 ,"):
        assert RewardWeights.parse(spec) == expected
    for bad in ("nan,0,0,0", "inf;1;1;1", "0:0:0:0", "1;2;3", ",,,"):
        with pytest.raises(ValueError):
            RewardWeights.parse(bad)


def test_exact_accuracy_reward_pays_only_for_the_exact_label_set() -> None:
    from rlbench_med.suites.rewards import Answer, RewardFunction

    sample = Sample(uid="u", problem="?", labels=("Melanoma",), domain="dermoscopy", dataset="HAM10000", task="HAM10000",
                    classes=("Melanoma", "Nevus"))
    hedge = Answer(labels=("Melanoma", "Nevus"), reasoning_tokens=16)
    right = Answer(labels=(" melanoma",), reasoning_tokens=16)
    set_f1 = RewardFunction("1,0,0,0")
    exact = RewardFunction("1,0,0,0", accuracy="exact")
    # set F1 of {Melanoma, Nevus} vs {Melanoma}: 2 * 1 / (2 + 1) = 2/3; exact: 0.
    assert set_f1.score(sample, hedge).accuracy == pytest.approx(2 / 3)
    assert exact.score(sample, hedge).accuracy == 0.0 and exact.score(sample, hedge).total == 0.0
    assert exact.score(sample, right).accuracy == 1.0
    with pytest.raises(ValueError, match="accuracy must be one of set_f1, exact"):
        RewardFunction(accuracy="f1")


# --------------------------------------------------------------------------------------------
# rewards as plugins
# --------------------------------------------------------------------------------------------
def _record(**kw):
    from rlbench_med.suites import Sample

    base = dict(uid="1", problem="?", labels=("A",), domain="d", dataset="D", task="D", classes=("A", "B"))
    return Sample(**{**base, **kw})


def test_a_registered_reward_is_weighted_by_its_weights_and_named_when_it_misbehaves() -> None:
    from rlbench_med.suites.rewards import make_reward, register_reward

    @register_reward("halves", weights=(0.0, 0.0, 0.0, 2.0))
    def halves(record, response):
        return {"length": 0.5, "accuracy": 1.0}

    # by hand: 0 x 1.0 + 2 x 0.5 = 1.0; the paper's weights: 0.6 x 1 + 0.1 x 0.5 = 0.65
    assert make_reward("halves").score_text(_record(), "anything").total == pytest.approx(1.0)
    assert make_reward("halves", "paper").score_text(_record(), "anything").total == pytest.approx(0.65)
    assert halves(_record(), "x") == {"length": 0.5, "accuracy": 1.0}  # still callable as itself

    @register_reward("typo")
    def typo(record, response):
        return {"acuracy": 1.0}

    with pytest.raises(ValueError, match="reward 'typo' returned unknown component.*acuracy"):
        make_reward("typo").score_text(_record(), "x")

    @register_reward("nan")
    def nan(record, response):
        return {"accuracy": float("nan")}

    with pytest.raises(ValueError, match="reward 'nan' returned a non-finite or non-numeric accuracy"):
        make_reward("nan").score_text(_record(), "x")


def test_a_plugin_reward_scores_the_builtin_policys_structured_answer_as_its_text() -> None:
    from rlbench_med.suites.rewards import Answer, make_reward, register_reward

    seen = []

    @register_reward("spy")
    def spy(record, response):
        seen.append(response)
        return {}

    assert make_reward("spy").score(_record(), Answer(labels=("A", "B"))).total == 0.0
    assert seen == ["\\boxed{A, B}"]


def test_settings_of_the_paper_reward_are_refused_for_a_plugin_and_unknown_names_suggested() -> None:
    from rlbench_med.suites.rewards import register_reward, reward_settings_problem

    register_reward("mine")(lambda record, response: {})
    assert reward_settings_problem("mine", "auto", "mean")[0] == "iou_reduce"
    assert reward_settings_problem("mine", "auto", "max", "exact")[0] == "accuracy_reward"
    assert reward_settings_problem("mine", "auto", "max") is None
    assert "Did you mean 'mine'" in reward_settings_problem("mien", "auto", "max")[1]
