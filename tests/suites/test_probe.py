"""The data probe: planted signals are found in their own modality only, and scored by the suite's metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlbench_med.suites.probe import (
    NONE,
    RANDOM,
    ProbeResult,
    input_sets,
    order_violations,
    probe_data,
    signal_features,
    text_features,
)

SIDE = 64
FS = 100


def _image(path: Path, pixels: np.ndarray) -> None:
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert("RGB").save(path)


def _write_toy(root: Path, n_train: int = 40, n_test: int = 24) -> None:
    """Five tasks, each answerable from one input only (the others are noise).

    ``Shade`` (cxr): the image's grey level; ``Beat`` (ecg): the signal's frequency (1 or 3 Hz, random
    phase); ``Note`` (mri): a word of the prompt; ``Sides`` (dermoscopy, multi-label): which image
    halves are bright; ``Spot`` (ct): a bright square whose box is the region.
    """
    classes = {
        "Shade": {"domain": "cxr", "classes": ["Dark", "Light"]},
        "Beat": {"domain": "ecg", "classes": ["Slow", "Fast"]},
        "Note": {"domain": "mri", "classes": ["Calm", "Alarm"]},
        "Sides": {"domain": "dermoscopy", "classes": ["Left", "Right"]},
        "Spot": {"domain": "ct", "classes": ["Mass"]},
    }
    (root / "media").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(classes))
    rng = np.random.default_rng(0)
    t = np.arange(10 * FS) / FS
    for split, n in (("train", n_train), ("test", n_test)):
        lines = []
        for task in classes:
            for i in range(n):
                k = i % 2
                pixels = rng.uniform(0.3, 0.7, (SIDE, SIDE))
                freq = rng.choice([1.0, 3.0])
                word = rng.choice(["cue_x", "cue_y"])
                labels = classes[task]["classes"][k : k + 1]
                bbox = None
                if task == "Shade":
                    pixels = np.full((SIDE, SIDE), 0.2 + 0.6 * k) + rng.normal(0, 0.05, (SIDE, SIDE))
                elif task == "Beat":
                    freq = (1.0, 3.0)[k]
                elif task == "Note":
                    word = ("cue_x", "cue_y")[k]
                elif task == "Sides":
                    sides = [(True, False), (False, True), (True, True)][i % 3]
                    labels = [c for c, on in zip(["Left", "Right"], sides) if on]
                    pixels[:, : SIDE // 2] += 0.4 * sides[0]
                    pixels[:, SIDE // 2 :] += 0.4 * sides[1]
                elif task == "Spot":
                    x, y = (int(v) for v in rng.integers(0, SIDE - 16, 2))
                    pixels = np.full((SIDE, SIDE), 0.2)
                    pixels[y : y + 16, x : x + 16] = 0.9
                    bbox = [x, y, x + 16, y + 16]
                    labels = ["Mass"]
                name = f"{split}_{task}_{i}"
                _image(root / "media" / f"{name}.png", pixels)
                signal = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.1, t.shape)
                np.save(root / "media" / f"{name}.npy", np.stack([signal, -signal]).astype(np.float32))
                lines.append(json.dumps({
                    "problem": f"<image>\n<ecg>\nNote: {word}. Which class of {task}?", "answer": ", ".join(labels),
                    "images": [f"media/{name}.png"], "time-series": [f"media/{name}.npy"], "dataset": task,
                    "segmentation_path": None, "bbox": bbox,
                }))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    # the probe scores the validation split: here the test records again (the assertions are about the probe)
    (root / "validation.jsonl").write_text((root / "test.jsonl").read_text())


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> ProbeResult:
    root = tmp_path_factory.mktemp("toy")
    _write_toy(root)
    return probe_data(root)


def test_input_sets_are_none_then_every_combination_named_like_the_ablations() -> None:
    assert input_sets(["text", "ecg", "vision"]) == [
        NONE, "vision", "ecg", "text", "vision+ecg", "vision+text", "ecg+text", "vision+ecg+text",
    ]
    assert input_sets(["ecg"]) == [NONE, "ecg"]


def test_each_planted_signal_is_found_in_its_own_modality_only(toy: ProbeResult) -> None:
    assert toy.modalities == ("vision", "ecg", "text")
    own = {"cxr": "vision", "ecg": "ecg", "mri": "text", "dermoscopy": "vision"}
    for domain, modality in own.items():
        assert toy.value(modality, domain, "acc") == 1.0, (domain, modality)
        assert toy.value("vision+ecg+text", domain, "acc") == 1.0
        assert toy.value(NONE, domain, "acc") == 0.5
        for other in set(toy.modalities) - {modality}:
            assert toy.value(other, domain, "acc") < 0.8, (domain, other)


def test_random_guesses_one_class_and_scores_chance(toy: ProbeResult) -> None:
    guesses = toy.records[RANDOM]
    assert all(len(r["predicted"]) == 1 for r in guesses)
    assert not any("iou" in r for r in guesses)
    # Two classes guessed independently of the truth: balanced accuracy near 0.5 on 24 records each.
    assert abs(toy.value(RANDOM, "overall", "acc") - 0.5) < 0.1
    picked = {c for r in guesses if r["dataset"] == "Shade" for c in r["predicted"]}
    assert picked == {"Dark", "Light"}


def test_multi_label_answers_are_predicted_as_sets(toy: ProbeResult) -> None:
    sides = [r for r in toy.records["vision"] if r["domain"] == "dermoscopy"]
    assert any(len(r["predicted"]) == 2 for r in sides)
    assert all(sorted(r["predicted"]) == sorted(r["labels"]) for r in sides)


def test_boxes_regressed_from_pixels_beat_the_mean_box(toy: ProbeResult) -> None:
    # The square's centre of mass is linear in the pixels, so a ridge regression finds the box.
    assert toy.value("vision", "ct", "iou") > 0.7
    assert toy.value(NONE, "ct", "iou") < 0.4
    assert toy.value("text", "ct", "iou") < 0.5


def test_order_violations_name_the_domain_and_the_inputs(toy: ProbeResult) -> None:
    problems = order_violations(toy, "acc")
    # Every domain's union is perfect, so only single modalities can fail: noise at or below none.
    assert problems, "noise-only modalities should score at or below 'none' somewhere"
    assert all(": " in p and "<=" in p for p in problems)
    rows = [
        {"inputs": i, "domain": "d", "metric": "acc", "value": v, "n": 10}
        for i, v in ((NONE, 0.5), ("vision", 0.7), ("text", 0.6), ("vision+text", 0.65))
    ]
    made = ProbeResult(modalities=("vision", "text"), inputs=(NONE, "vision", "text", "vision+text"), rows=rows,
                       records={})
    assert order_violations(made, "acc") == ["d: vision+text 0.650 <= vision 0.700"]


def test_signal_features_hold_amplitude_and_rhythm(tmp_path: Path) -> None:
    t = np.arange(10 * FS) / FS
    np.save(tmp_path / "s.npy", np.stack([np.sin(2 * np.pi * 2.0 * t), 0.5 * np.ones_like(t)]).astype(np.float32))
    feats = signal_features(tmp_path / "s.npy").reshape(2, -1)
    quantiles, sd, spectrum = feats[:, :9], feats[:, 9], feats[:, 10:]
    assert quantiles[0, 0] == pytest.approx(-1.0, abs=5e-3) and quantiles[0, -1] == pytest.approx(1.0, abs=5e-3)
    assert quantiles[1] == pytest.approx(np.full(9, 0.5))
    assert sd == pytest.approx([1 / math.sqrt(2), 0.0], abs=1e-3)
    # The 2 Hz sine is frequency bin 20 of 1000 samples over 10 s: the band holding it is the peak.
    assert spectrum[1].max() == pytest.approx(0.0, abs=1e-6)
    assert spectrum[0].argmax() == np.argmax(spectrum[0] > 0.5 * spectrum[0].max())


def test_text_features_keep_field_value_words_whole() -> None:
    from rlbench_med.suites.data import Sample

    samples = [Sample(uid="a", problem="lactate: lactate_very_high. gcs: gcs_low.", labels=("No",), domain="ihm48",
                      dataset="MIMIC-IV", task="ihm48", classes=("Yes", "No"))]
    vocabulary = {"lactate_very_high": 0, "very": 1, "gcs_low": 2}
    assert text_features(samples, vocabulary).tolist() == [[1.0, 0.0, 1.0]]


def test_cli_prints_the_probe_order_and_mde_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlbench_med.cli import main
    from rlbench_med.suites.synth import generate

    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    generate("mimic_fusion", tmp_path / "data", data_overrides={"patients_train": 40, "patients_test": 20})
    out = tmp_path / "probe.json"
    argv = ["data", "probe", "--suite", "mimic_fusion", "--data", str(tmp_path / "data"), "--n-seeds", "1,3",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "vision+ecg+text" in text and "(union)" in text and "order on f1_strict" in text and "MDE@3seeds" in text
    table = [line for line in text[: text.index("order on")].splitlines()[1:]]  # after the line naming the data
    assert max(len(line) for line in table) <= 80  # split by columns, as every table
    domains = [line.split("│")[1].strip() for line in table if line.startswith("│") and "domain" not in line]
    assert domains[:3] == ["los", "ihm48", "overall"]
    payload = json.loads(out.read_text())
    assert payload["modalities"] == ["vision", "ecg", "text"]
    assert {r["inputs"] for r in payload["rows"]} == {RANDOM, *input_sets(["vision", "ecg", "text"])}
    assert {(r["domain"], r["seeds"]) for r in payload["mde"] if r["metric"] == "acc"} == {
        (d, k) for d in ("los", "ihm48", "overall") for k in (1, 3)
    }
    assert all(r["n"] == 20 for r in payload["mde"] if r["domain"] != "overall")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "mimic_fusion", "--n-seeds", "0"], "--n-seeds"),
        (["--suite", "mimic_fusion", "--n-seeds", "two"], "--n-seeds"),
        (["--suite", "mimic_fusion", "--seed-sd", "-1"], "--seed-sd"),
        (["--suite", "runtime"], "no data"),
    ],
)
def test_cli_refuses_bad_requests_with_one_line(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlbench_med.cli import main

    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    assert main(["data", "probe", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_mimic_fusion_quick_data_show_the_designed_fusion_order(tmp_path: Path) -> None:
    """The suite's own quick data: the union beats every single modality, which beats nothing, on both tasks."""
    from rlbench_med.suites.synth import generate

    generate("mimic_fusion", tmp_path, profile="quick")
    result = probe_data(tmp_path)
    assert result.modalities == ("vision", "ecg", "text")
    for metric in ("acc", "f1"):
        assert order_violations(result, metric) == []
    for task in ("los", "ihm48"):
        # every pair of modalities adds to each of its members
        for pair in ("vision+ecg", "vision+text", "ecg+text"):
            assert all(result.value(pair, task, "acc") > result.value(m, task, "acc") for m in pair.split("+"))


def test_the_probe_scores_the_validation_split_and_the_test_split_only_without_one(toy: ProbeResult) -> None:
    from rlbench_med.suites.data import ClinicalData
    from rlbench_med.suites.probe import held_out

    assert toy.split == "validation"
    train, val, test = ["t"], ["v"], ["x"]
    assert held_out(ClinicalData(Path("."), train, test, (), validation=val)) == ("validation", val)
    assert held_out(ClinicalData(Path("."), train, test, (), validation=[])) == ("test", test)


def test_probe_rows_have_domains_as_rows_and_leave_out_an_overall_that_repeats_one_domain() -> None:
    from types import SimpleNamespace

    from rlbench_med.suites.probe import probe_rows

    def result(domains):
        rows = [{"inputs": i, "domain": d, "metric": "acc", "value": v, "n": 10}
                for i, v in (("none", 0.5), ("ecg", 0.9)) for d in domains]
        return SimpleNamespace(rows=rows, inputs=("none", "ecg"), split="validation",
                               value=lambda i, d, m: next(r["value"] for r in rows if (r["inputs"], r["domain"]) == (i, d)))

    header, rows = probe_rows(result(["ecg", "overall"]), "acc")
    assert header == ["domain", "n (validation)", "none", "ecg (union)"] and rows == [["ecg", "10", "0.500", "0.900"]]
    _, rows = probe_rows(result(["overall", "los", "ihm48"]), "acc")
    assert [r[0] for r in rows] == ["los", "ihm48", "overall"]
