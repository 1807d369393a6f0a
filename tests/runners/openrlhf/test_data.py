"""Suite samples -> OpenRLHF prompt JSONL -> back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rlbench_med.runners.local.hf_policy import prompt_text
from rlbench_med.runners.openrlhf.data import (
    IMAGE_TAG,
    ExportError,
    PromptLabel,
    export_prompts,
    read_prompts,
    sample_messages,
)
from rlbench_med.suites.rewards import DEFAULT_WEIGHTS


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


def test_tag_count_must_match_the_images(samples):
    two_tags = dataclasses.replace(samples[0], problem=f"{IMAGE_TAG} {IMAGE_TAG} compare")
    with pytest.raises(ExportError, match="2 <image> tag"):
        sample_messages(two_tags, vlm=True)


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
