"""Suite samples -> OpenRLHF prompt JSONL -> back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlbench_med.runners.local.hf_policy import prompt_text
from rlbench_med.runners.openrlhf.data import (
    IMAGE_TAG,
    VIDEO_TAG,
    ExportError,
    PromptLabel,
    export_prompts,
    read_prompts,
    sample_messages,
)
from rlbench_med.suites.data import Sample
from rlbench_med.suites.rewards import DEFAULT_WEIGHTS
from tests.runners.openrlhf.conftest import require_openrlhf_stack

VIDEO_SIZE = (40, 24)  # (W, H): not square, so a resize would show
LEVELS = (10, 45, 80, 115, 150, 185, 220)  # grey level of each frame, in order


def write_video(path: Path, levels: tuple[int, ...] = LEVELS) -> Path:
    """An .mp4 whose frame ``i`` is uniformly grey ``levels[i]`` (OpenCV's own writer)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, VIDEO_SIZE)
    for level in levels:
        writer.write(np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), level, np.uint8))
    writer.release()
    return path


def with_media(sample: Sample, problem: str, images: tuple[Path, ...], videos: tuple[Path, ...]) -> Sample:
    return dataclasses.replace(sample, problem=problem, images=images, videos=videos, segmentation_path=None,
                               bbox=None, image_size=None)


def test_export_round_trip_keeps_every_field_the_reward_and_metrics_need(samples, tmp_path):
    path = tmp_path / "out" / "train.jsonl"
    summary = export_prompts(samples, path, vlm=True, reward="release", iou_reduce="mean")
    back = read_prompts(path)
    assert summary["n"] == len(back) == len(samples)
    assert summary["domains"] == sorted({s.domain for s in samples}) and summary["max_images"] == 1
    for sample, item in zip(samples, back):
        restored = item.to_sample()
        for field in ("uid", "labels", "domain", "dataset", "task", "classes", "segmentation_path", "bbox",
                      "image_size", "split"):
            assert getattr(restored, field) == getattr(sample, field), field
        assert restored.images == tuple(p.resolve() for p in sample.images)
        assert restored.problem == sample.problem.replace(IMAGE_TAG, "").strip()
        assert item.datasource == sample.domain
        assert item.label.reward == "release"
        assert item.label.reward_weights == DEFAULT_WEIGHTS["release"].as_text() == "0.5,0.3,0.1,0.1"
        assert item.label.iou_reduce == "mean"


def test_labels_carry_the_accuracy_form_and_default_to_the_papers(samples, tmp_path):
    path = tmp_path / "train.jsonl"
    export_prompts(samples, path, vlm=False, accuracy_reward="exact")
    assert {item.label.accuracy_reward for item in read_prompts(path)} == {"exact"}
    export_prompts(samples, path, vlm=False)
    assert {item.label.accuracy_reward for item in read_prompts(path)} == {"set_f1"}
    # a label written before the field existed is scored with the paper's set F1
    old = json.loads(PromptLabel.from_sample(samples[0]).to_json())
    del old["accuracy_reward"]
    assert PromptLabel.from_json(json.dumps(old)).accuracy_reward == "set_f1"


def test_each_line_is_what_openrlhf_reads(samples, tmp_path):
    path = tmp_path / "train.jsonl"
    export_prompts(samples[:1], path, vlm=True)
    record = json.loads(path.read_text().splitlines()[0])
    assert set(record) == {"input", "images", "label", "datasource"}
    assert [m["role"] for m in record["input"]] == ["user"]
    assert record["input"][0]["content"].count(IMAGE_TAG) == 1
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in record["images"])
    assert isinstance(record["label"], str)
    assert PromptLabel.from_json(record["label"]) == PromptLabel.from_sample(samples[0])


def test_user_turn_is_the_local_runners_text_prompt(samples):
    sample = dataclasses.replace(samples[0], problem="Case: what is the diagnosis?")
    text = sample_messages(sample, vlm=False)[-1]["content"]
    assert text == prompt_text(sample).strip()
    vlm = sample_messages(sample, vlm=True, system_prompt="Be brief.")
    assert vlm[0] == {"role": "system", "content": "Be brief."}
    assert vlm[1]["content"] == IMAGE_TAG + "\n" + prompt_text(sample).strip()


def test_text_models_get_no_images_and_no_tags(samples, tmp_path):
    path = tmp_path / "train.jsonl"
    summary = export_prompts(samples, path, vlm=False)
    assert summary["max_images"] == 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert "images" not in record and IMAGE_TAG not in record["input"][-1]["content"]


def test_tag_count_must_match_the_images(samples, tmp_path):
    two_tags = dataclasses.replace(samples[0], problem=f"{IMAGE_TAG} {IMAGE_TAG} compare")
    with pytest.raises(ExportError, match="has 2 <image> and 0 <video> tag.* but 1 image.* and 0 video"):
        sample_messages(two_tags, vlm=True)
    video = write_video(tmp_path / "v.mp4")
    one_video_tag = with_media(samples[0], f"{VIDEO_TAG} compare", (), (video, video))
    with pytest.raises(ExportError, match="has 0 <image> and 1 <video> tag.* but 0 image.* and 2 video"):
        export_prompts([one_video_tag], tmp_path / "t.jsonl", vlm=True)


def test_a_video_reaches_a_vlm_as_its_sampled_frames(samples, tmp_path):
    path = tmp_path / "prompts" / "train.jsonl"
    video = write_video(tmp_path / "ct.mp4")
    only_video = with_media(samples[0], f"{VIDEO_TAG}\nIs the mass benign?", (), (video,))
    summary = export_prompts([only_video], path, vlm=True, video_frames=3)
    record = json.loads(path.read_text())
    frames = record["images"]
    assert summary["max_images"] == len(frames) == summary["video_frames"] == 3
    assert record["input"][-1]["content"].startswith("\n".join([IMAGE_TAG] * 3) + "\nIs the mass benign?")
    assert VIDEO_TAG not in record["input"][-1]["content"]
    assert all(Path(f).is_absolute() and Path(f).parent == path.parent / "train_frames" for f in frames)
    # 7 frames, 3 sampled evenly with the first and the last: i * (7 - 1) / (3 - 1) = 0, 3, 6 (mp4 is lossy)
    for file, index in zip(frames, (0, 3, 6)):
        with Image.open(file) as im:
            assert im.size == VIDEO_SIZE and im.mode == "RGB"
            assert abs(float(np.asarray(im).mean()) - LEVELS[index]) < 8
    assert read_prompts(path)[0].images == tuple(frames)

    # the same export again writes the same files; a text model gets neither frames nor tags
    assert export_prompts([only_video], path, vlm=True, video_frames=3)["video_frames"] == 3
    assert json.loads(path.read_text())["images"] == frames
    export_prompts([only_video], tmp_path / "text.jsonl", vlm=False)
    text = json.loads((tmp_path / "text.jsonl").read_text())
    assert "images" not in text and VIDEO_TAG not in text["input"][-1]["content"]
    assert not (tmp_path / "text_frames").exists()


def test_images_and_video_frames_follow_the_problems_tags(samples, tmp_path):
    video = write_video(tmp_path / "v.mp4")
    image = samples[0].images[0]
    tagged = with_media(samples[0], f"{VIDEO_TAG} before, {IMAGE_TAG} after: compare", (image,), (video,))
    untagged = with_media(samples[0], "compare", (image,), (video,))
    path = tmp_path / "t.jsonl"
    export_prompts([tagged, untagged], path, vlm=True, video_frames=2)
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    frames = [str((tmp_path / "t_frames" / f"00000{line}-video0-frame{j}.png").resolve()) for line in (0, 1)
              for j in (0, 1)]
    assert first["images"] == [*frames[:2], str(image.resolve())]
    assert first["input"][-1]["content"].startswith(f"{IMAGE_TAG}\n{IMAGE_TAG} before, {IMAGE_TAG} after: compare")
    assert second["images"] == [str(image.resolve()), *frames[2:]]  # no tags: images first, then videos
    assert second["input"][-1]["content"].startswith("\n".join([IMAGE_TAG] * 3) + "\ncompare")


def test_openrlhf_reads_one_image_per_tag_of_the_export(samples, tmp_path):
    """OpenRLHF 0.11.2's own parsing of the chat (``_str_to_content_list``) and image loading (``load_images``)."""
    require_openrlhf_stack()
    from openrlhf.datasets.prompts_dataset import _str_to_content_list
    from openrlhf.utils.vlm_utils import load_images

    video = write_video(tmp_path / "v.mp4")
    mixed = [with_media(samples[1], f"{IMAGE_TAG}\n{VIDEO_TAG}\nCompare.", samples[1].images, (video,)),
             with_media(samples[2], "Which class?", (), (video, video)), samples[0]]
    path = tmp_path / "t.jsonl"
    export_prompts(mixed, path, vlm=True, video_frames=2)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        parts = _str_to_content_list(record["input"][-1]["content"])
        slots = sum(1 for part in parts if part.get("type") == "image")
        loaded = load_images(record["images"])
        assert slots == len(record["images"]) == len(loaded) and all(im.size for im in loaded)


def test_time_series_are_refused_or_dropped_on_request(samples, tmp_path):
    ecg = dataclasses.replace(samples[0], time_series=(tmp_path / "rec.pt",))
    with pytest.raises(ExportError, match="time_series=drop"):
        export_prompts([ecg], tmp_path / "a.jsonl", vlm=True)
    assert export_prompts([ecg], tmp_path / "b.jsonl", vlm=True, time_series="drop")["dropped_time_series"] == 1


def test_limit_keeps_the_first_samples(samples, tmp_path):
    export_prompts(samples, tmp_path / "t.jsonl", vlm=False, limit=2)
    assert [p.label.uid for p in read_prompts(tmp_path / "t.jsonl")] == [s.uid for s in samples[:2]]


def test_reader_errors_name_file_line_and_field(samples, tmp_path):
    path = tmp_path / "bad.jsonl"
    export_prompts(samples[:1], path, vlm=False)
    good = path.read_text()
    path.write_text(good + "\n" + json.dumps({"input": [{"role": "user", "content": "x"}], "label": 3}) + "\n")
    with pytest.raises(ExportError, match=r"bad\.jsonl:3: label"):
        read_prompts(path)
    path.write_text(good + "{not json\n")
    with pytest.raises(ExportError, match=r"bad\.jsonl:2: not JSON"):
        read_prompts(path)
    with pytest.raises(ExportError, match="lacks domain"):
        PromptLabel.from_json(json.dumps({"uid": "a", "answer": [], "dataset": "d", "task": "d", "classes": []}))
