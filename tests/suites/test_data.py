"""Loading real-format exports and reporting every kind of bad record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb
from PIL import Image

from rlbench_med.suites.data import DataError, load_data, load_image, load_mask, load_signal, validate_dir

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _png(path: Path, size: tuple[int, int], color: tuple[int, int, int] = (90, 90, 90)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """A mask PNG of ``size`` (W, H) with the pixel box [x1, x2) x [y1, y2) set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[box[1] : box[3], box[0] : box[2]] = 255
    Image.fromarray(arr).save(path)


def _write_jsonl(path: Path, lines: list[object]) -> None:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")


@pytest.fixture()
def export_dir(tmp_path: Path) -> Path:
    """A small CLIMB + MIMIC-IV style export: PNG/JPEG images, PNG masks, .pt and WFDB ECGs."""
    root = tmp_path / "export"
    _png(root / "cxr" / "mimic" / "a.png", (40, 30))
    _mask(root / "cxr" / "mimic" / "a_mask.png", (40, 30), (5, 4, 15, 12))
    (root / "dermoscopy").mkdir(parents=True)
    Image.new("RGB", (50, 50), (200, 150, 120)).save(root / "dermoscopy" / "b.jpg", quality=90)
    (root / "ecg").mkdir()
    rng = np.random.default_rng(0)
    ecg_pt = rng.normal(size=(12, 500)).astype(np.float32)
    torch.save(torch.from_numpy(ecg_pt), root / "ecg" / "r1.pt")
    ecg_wfdb = np.round(rng.normal(size=(500, 12)), 3)
    wfdb.wrsamp("r2", fs=100, units=["mV"] * 12, sig_name=LEADS, p_signal=ecg_wfdb, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(root / "ecg"))
    _png(root / "mimic" / "cxr1.png", (32, 32))
    _png(root / "scans" / "mri" / "c.png", (20, 20))
    (root / "classes.json").write_text(json.dumps({"MyScans": ["Lesion", "Clear"]}))
    train = [
        {
            "problem": "<image> Which findings?",
            "answer": "cardiomegaly ,  pleural   effusion",
            "images": ["cxr/mimic/a.png"],
            "time-series": [],
            "segmentation_path": "cxr/mimic/a_mask.png",
            "bbox": [5, 4, 15, 12],
            "dataset": "MIMIC-CXR",
        },
        {"problem": "<image> Lesion type?", "answer": "MEL", "images": ["dermoscopy/b.jpg"], "dataset": "HAM10000", "bbox": None},
        {"problem": "<ecg> Rhythm?", "answer": "A. Fib/Aflutter", "time-series": ["ecg/r1.pt"], "dataset": "PTB-XL"},
        {"problem": "<ecg> Rhythm?", "answer": "Normal, MI", "time-series": ["ecg/r2"], "dataset": "Georgia"},
        {"problem": "<ecg> Rhythm?", "answer": "CD", "time-series": ["ecg/r2.hea"], "dataset": "CPSC"},
        {
            "problem": "<image><ecg> age: 65-79. lactate: high. Will the patient die within 48 hours?",
            "answer": "Yes",
            "images": ["mimic/cxr1.png"],
            "time-series": ["ecg/r1.pt"],
            "dataset": "MIMIC-IV",
        },
        {
            "problem": "<image><ecg> age: 45-64. Predict the length of stay.",
            "answer": "3 to 7 days",
            "images": ["mimic/cxr1.png"],
            "time-series": ["ecg/r1.pt"],
            "dataset": "MIMIC-IV",
        },
        {"problem": "<image> Finding?", "answer": "lesion", "images": ["scans/mri/c.png"], "dataset": "MyScans"},
    ]
    _write_jsonl(root / "train.jsonl", train)
    _write_jsonl(root / "test.jsonl", [train[0], ""])  # a trailing blank line is not a record
    np.save(root / "ecg_pt_values.npy", ecg_pt)
    np.save(root / "ecg_wfdb_values.npy", ecg_wfdb)
    return root


def test_real_format_export_loads(export_dir: Path) -> None:
    findings = validate_dir(export_dir)
    assert [(Path(p.file).name, p.line, p.field, p.level) for p in findings] == [("test.jsonl", 1, "record", "warning")]
    assert f"same inputs as {export_dir / 'train.jsonl'}:1: a test record also in train" in str(findings[0])
    data = load_data(export_dir)
    assert len(data.train) == 8 and len(data.test) == 1
    cxr, derm, ecg_pt, ecg_wfdb, ecg_hea, ihm, los, custom = data.train
    assert cxr.labels == ("Cardiomegaly", "Pleural Effusion")
    assert cxr.domain == "cxr" and cxr.task == "MIMIC-CXR" and len(cxr.classes) == 14
    assert cxr.image_size == (40, 30) and cxr.bbox == (5.0, 4.0, 15.0, 12.0)
    assert cxr.segmentation_path == (export_dir / "cxr/mimic/a_mask.png").resolve()
    assert derm.domain == "dermoscopy" and derm.labels == ("Melanoma",) and derm.image_size == (50, 50) and derm.bbox is None
    assert ecg_pt.domain == "ecg" and ecg_pt.labels == ("A. Fib/Aflutter",)
    assert ecg_wfdb.labels == ("Normal", "MI")
    assert ihm.task == "ihm48" and ihm.domain == "ihm48" and ihm.classes == ("Yes", "No") and ihm.dataset == "MIMIC-IV"
    assert los.task == "los" and los.labels == ("3 to 7 days",) and len(los.classes) == 4
    assert custom.domain == "mri" and custom.labels == ("Lesion",) and custom.classes == ("Lesion", "Clear")
    assert data.domains == ("cxr", "dermoscopy", "mri", "ecg", "los", "ihm48")
    assert data.tasks["MyScans"] == ("Lesion", "Clear")
    assert data.multi_label["MIMIC-CXR"] and data.multi_label["Georgia"] and not data.multi_label["HAM10000"]
    assert not data.multi_label["MyScans"]  # declared nowhere, and no answer names two labels
    assert data.test[0].uid == "test:1" and data.train[1].uid == "train:2"

    np.testing.assert_array_equal(load_signal(ecg_pt.time_series[0]), np.load(export_dir / "ecg_pt_values.npy"))
    expected = np.load(export_dir / "ecg_wfdb_values.npy").T
    for path in (ecg_wfdb.time_series[0], ecg_hea.time_series[0]):
        got = load_signal(path)
        assert got.shape == (12, 500) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-3)


def test_media_readers(export_dir: Path) -> None:
    img = load_image(export_dir / "dermoscopy" / "b.jpg", size=16)
    assert img.shape == (3, 16, 16) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    np.testing.assert_allclose(img[:, 8, 8], np.array([200, 150, 120]) / 255.0, atol=0.03)
    mask = load_mask(export_dir / "cxr" / "mimic" / "a_mask.png")
    assert mask.shape == (30, 40) and mask.dtype == bool
    assert mask.sum() == 10 * 8 and mask[4:12, 5:15].all()


def test_multi_label_is_declared_per_dataset_and_contradicting_records_are_warned(tmp_path: Path) -> None:
    _png(tmp_path / "x.png", (8, 8))
    (tmp_path / "classes.json").write_text(json.dumps({
        "Mine": {"domain": "mri", "classes": ["A", "B", "C"], "multi_label": False},
        "Theirs": {"domain": "mri", "classes": ["A", "B"], "multi_label": True},
        "Bad": {"domain": "mri", "classes": ["A", "B"], "multi_label": "yes"}}))
    lines = [
        {"problem": "p", "answer": "A", "images": ["x.png"], "dataset": "Mine"},
        {"problem": "q", "answer": "A, B", "images": ["x.png"], "dataset": "Mine"},
        {"problem": "r", "answer": "B", "images": ["x.png"], "dataset": "Mine", "multi_label": True},
        {"problem": "s", "answer": "A", "images": ["x.png"], "dataset": "Theirs"},
        {"problem": "t", "answer": "Melanoma", "images": ["x.png"], "dataset": "HAM10000", "multi_label": True},
    ]
    _write_jsonl(tmp_path / "train.jsonl", lines)
    _write_jsonl(tmp_path / "test.jsonl", lines[:1])
    found = [(Path(f.file).name, f.line, f.field, f.kind) for f in validate_dir(tmp_path) if f.level == "warning"]
    assert ("train.jsonl", 2, "answer", "contradicting multi-label") in found
    assert ("train.jsonl", 3, "multi_label", "contradicting multi-label") in found
    assert ("train.jsonl", 5, "multi_label", "contradicting multi-label") in found
    assert not any(line in (1, 4) for _, line, _, kind in found if kind == "contradicting multi-label")
    problems = [str(f) for f in validate_dir(tmp_path) if f.level == "error"]
    assert problems == [f"{tmp_path / 'classes.json'}:0: Bad.multi_label: must be true or false, got 'yes'"]


def test_mimic_task_field_wins_over_inference(tmp_path: Path) -> None:
    _png(tmp_path / "x.png", (8, 8))
    rec = {"problem": "length of stay?", "answer": "yes", "images": ["x.png"], "dataset": "mimic-iv", "task": "ihm48"}
    _write_jsonl(tmp_path / "train.jsonl", [rec])
    _write_jsonl(tmp_path / "test.jsonl", [rec])
    sample = load_data(tmp_path).train[0]
    assert (sample.task, sample.labels, sample.dataset) == ("ihm48", ("Yes",), "MIMIC-IV")


def test_every_problem_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    root = tmp_path
    _png(root / "img" / "ok.png", (20, 10))
    _png(root / "root.png", (20, 10))
    _mask(root / "img" / "empty_mask.png", (20, 10), (0, 0, 0, 0))
    (root / "img" / "broken.png").write_text("not an image")
    (root / "sig").mkdir()
    torch.save(torch.zeros(1000, 12), root / "sig" / "transposed.pt")
    torch.save({"signal": [1, 2]}, root / "sig" / "dict.pt")
    (root / "classes.json").write_text(json.dumps({"NoDomain": ["A", "B"]}))
    good = {"problem": "p", "answer": "Cardiomegaly", "images": ["img/ok.png"], "dataset": "CheXpert"}
    lines: list[object] = [
        good,  # 1
        {**good, "id": "dup"},  # 2
        '{"problem": "x", ',  # 3 corrupted JSON
        [1, 2],  # 4
        {**good, "problem": ""},  # 5
        {**good, "answer": " , "},  # 6
        {**good, "answer": "Cardiomegaly, Broken Heart"},  # 7
        {k: v for k, v in good.items() if k != "dataset"},  # 8
        {**good, "dataset": "Unknown-Set"},  # 9
        {**good, "images": ["img/missing.png"]},  # 10
        {**good, "images": ["img/broken.png"]},  # 11
        {**good, "bbox": [0, 0, 25, 5]},  # 12
        {**good, "bbox": [1, 2, 3]},  # 13
        {**good, "bbox": [0, 0, 0, 5]},  # 14
        {**good, "time-series": ["sig/missing.pt"]},  # 15
        {**good, "time-series": ["sig/transposed.pt"]},  # 16
        {"problem": "p", "answer": "Yes", "dataset": "MIMIC-IV", "task": "mortality"},  # 17
        {**good, "id": "dup"},  # 18
        {"problem": "p", "answer": "A", "images": ["root.png"], "dataset": "NoDomain"},  # 19
        {**good, "images": 5},  # 20
        {**good, "segmentation_path": "img/empty_mask.png"},  # 21
        {**good, "time-series": ["sig/dict.pt"]},  # 22
        {**good, "bbox": [5, 5, 2, 8]},  # 23
        {"problem": "p", "answer": "maybe", "dataset": "MIMIC-IV"},  # 24
    ]
    _write_jsonl(root / "train.jsonl", lines)
    findings = validate_dir(root)
    problems = [p for p in findings if p.level == "error"]
    train = str(root / "train.jsonl")
    for p in findings:
        assert re.fullmatch(r".+:\d+: [\w-]+: .+", str(p)) and "\n" not in str(p), str(p)
    found = {(p.line, p.field) for p in problems if p.file == train}
    warned = {(p.line, p.field) for p in findings if p.file == train and p.level == "warning"}
    assert {(9, "dataset"), (21, "segmentation_path")} <= warned  # classes from the answers; empty mask, no box
    expected = {
        (3, "json"),
        (4, "record"),
        (5, "problem"),
        (6, "answer"),
        (7, "answer"),
        (8, "dataset"),
        (10, "images"),
        (11, "images"),
        (12, "bbox"),
        (13, "bbox"),
        (14, "bbox"),
        (15, "time-series"),
        (16, "time-series"),
        (17, "task"),
        (18, "id"),
        (19, "domain"),
        (20, "images"),
        (22, "time-series"),
        (23, "bbox"),
        (24, "task"),
    }
    assert expected <= found
    assert not {line for line, _ in found} & {1, 2, 9, 21}, "valid records must not be reported as problems"
    assert f"{train}:3: json: " in "\n".join(map(str, problems))
    assert any("Broken Heart" in p.message for p in problems if p.line == 7)
    assert any(str(p) == f"{root / 'test.jsonl'}:0: file: missing; a data directory needs train.jsonl and test.jsonl" for p in problems)

    with pytest.raises(DataError) as info:
        load_data(root)
    assert info.value.problems == problems
    assert f"{train}:3: json:" in str(info.value)


def test_unreadable_inputs_never_raise(tmp_path: Path) -> None:
    assert [p.field for p in validate_dir(tmp_path / "nope")] == ["directory"]
    (tmp_path / "train.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "test.jsonl").write_text("\n\n")
    (tmp_path / "classes.json").write_text("{bad")
    problems = validate_dir(tmp_path)
    fields = sorted((Path(p.file).name, p.field) for p in problems)
    assert fields == [("classes.json", "json"), ("test.jsonl", "file"), ("train.jsonl", "file")]


def _records(n: int, dataset: str = "HAM10000", answer: str = "Melanoma") -> list[dict]:
    return [{"id": f"{dataset}-{i}", "problem": f"<image> lesion {i}?", "answer": answer, "images": ["x.png"],
             "dataset": dataset} for i in range(n)]


def test_without_a_validation_file_each_task_gives_a_tenth_of_its_training_records_by_uid_hash(tmp_path: Path) -> None:
    import hashlib

    _png(tmp_path / "x.png", (8, 8))
    train = _records(25) + _records(9, "PAD-UFES-20", "Nevus") + _records(40, "ISIC-2020", "Benign")
    _write_jsonl(tmp_path / "train.jsonl", train)
    _write_jsonl(tmp_path / "test.jsonl", _records(2))
    data = load_data(tmp_path)
    # per task: floor(10% of n) records, those whose uid's sha256 is lowest (9 records give none)
    expected = set()
    for dataset, n in (("HAM10000", 25), ("PAD-UFES-20", 9), ("ISIC-2020", 40)):
        uids = sorted((f"{dataset}-{i}" for i in range(n)), key=lambda u: hashlib.sha256(u.encode()).hexdigest())
        expected |= set(uids[: n // 10])
    assert {s.uid for s in data.validation} == expected and len(expected) == 2 + 0 + 4
    assert not expected & {s.uid for s in data.train} and len(data.train) == 74 - 6
    assert all(s.split == "validation" for s in data.validation)
    # the same records whatever the file order
    _write_jsonl(tmp_path / "train.jsonl", list(reversed(train)))
    assert {s.uid for s in load_data(tmp_path).validation} == expected


def test_a_validation_file_wins_over_carving_and_changes_the_fingerprint(tmp_path: Path) -> None:
    from rlbench_med.suites.data import DataSource

    _png(tmp_path / "x.png", (8, 8))
    _write_jsonl(tmp_path / "train.jsonl", _records(30))
    _write_jsonl(tmp_path / "test.jsonl", _records(2))
    carved = DataSource.parse(tmp_path).fingerprint()
    val = [{**r, "id": f"v{i}", "problem": f"<image> held out {i}?"} for i, r in enumerate(_records(3))]
    _write_jsonl(tmp_path / "validation.jsonl", val)
    data = load_data(tmp_path)
    assert [s.uid for s in data.validation] == ["v0", "v1", "v2"] and len(data.train) == 30
    assert DataSource.parse(tmp_path).fingerprint() != carved
    # explicit files: validation=PATH
    explicit = DataSource.parse(f"train={tmp_path / 'train.jsonl'},test={tmp_path / 'test.jsonl'},"
                                f"validation={tmp_path / 'validation.jsonl'}")
    assert [s.uid for s in load_data(explicit).validation] == ["v0", "v1", "v2"]
    assert DataSource.from_json(explicit.to_json()) == explicit


def test_a_validation_record_also_in_train_is_a_warning(tmp_path: Path) -> None:
    _png(tmp_path / "x.png", (8, 8))
    _write_jsonl(tmp_path / "train.jsonl", _records(3))
    _write_jsonl(tmp_path / "test.jsonl", _records(1)[:0] + [{**_records(1)[0], "problem": "<image> other?"}])
    _write_jsonl(tmp_path / "validation.jsonl", [_records(3)[2]])
    findings = validate_dir(tmp_path)
    assert [(Path(p.file).name, p.line, p.kind) for p in findings] == [
        ("validation.jsonl", 1, "validation record in train")]
    assert f"same inputs as {tmp_path / 'train.jsonl'}:3: a validation record also in train" in str(findings[0])


def _clean_folder(root: Path, extra: list[object], classes: dict | None = None) -> tuple[Path, str]:
    """A valid two-split folder (one CheXpert image record each) with ``extra`` train lines after it."""
    _png(root / "img" / "ok.png", (20, 10))
    good = {"problem": "p", "answer": "Cardiomegaly", "images": ["img/ok.png"], "dataset": "CheXpert"}
    _write_jsonl(root / "train.jsonl", [good, *extra])
    _write_jsonl(root / "test.jsonl", [{**good, "id": "t"}])
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    return root, str(root / "train.jsonl")


def _errors(root: Path) -> list[str]:
    return [str(p) for p in validate_dir(root) if p.level == "error"]


def test_domain_and_dataset_names_must_be_one_path_component(tmp_path: Path) -> None:
    record = {"problem": "p", "answer": "A", "images": ["img/ok.png"]}
    root, train = _clean_folder(tmp_path, [
        {**record, "dataset": "Mine", "domain": ".."},  # 2: every metric key eval/../acc would fail at logging
        {**record, "dataset": "a/b", "domain": "derm"},  # 3
        {**record, "dataset": "Mine", "domain": "ct\u202e"},  # 4
    ], classes={"Mine": ["A"], "a/b": ["A"]})
    errors = _errors(root)
    assert f"{train}:2: domain: '..' cannot be a domain name: it means the current or the parent folder (names " \
           "become parts of file names and metric keys); rename it" in errors
    assert f"{train}:3: dataset: 'a/b' cannot be a dataset name: it holds a path separator" in "\n".join(errors)
    assert f"{train}:4: domain: 'ct\\u202e' cannot be a domain name: it holds the invisible character U+202E " \
           "RIGHT-TO-LEFT OVERRIDE" in "\n".join(errors)


def test_a_video_whose_later_frames_do_not_decode_is_a_problem(tmp_path: Path) -> None:
    import cv2

    video = tmp_path / "ct" / "kits23" / "v.avi"
    video.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (24, 20))
    for level in range(10):
        writer.write(np.full((20, 24, 3), 20 * level, np.uint8))
    writer.release()
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xd8"]  # each frame's JPEG
    assert len(starts) == 10
    for start in starts[1:]:  # the header and the first frame read; no later frame decodes
        data[start : start + 200] = bytes(200)
    video.write_bytes(bytes(data))
    root, train = _clean_folder(tmp_path, [{"problem": "<video> p", "answer": "Benign", "videos": ["ct/kits23/v.avi"]}])
    assert _errors(root) == [f"{train}:2: videos: ct/kits23/v.avi: frame 5 of 10 does not decode"]


def test_json_nested_past_the_readers_depth_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    deep = '{"problem": "p", "answer": "Cardiomegaly", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    root, train = _clean_folder(tmp_path, [deep])
    assert _errors(root) == [f"{train}:2: json: nested deeper than the JSON reader allows (about "
                             f"{__import__('sys').getrecursionlimit()} levels); a record is a flat object"]
    with pytest.raises(DataError, match=f"{train}:2: json: nested deeper"):
        load_data(root)  # what a run calls


def test_a_line_too_long_to_be_a_record_is_refused_without_being_parsed(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.suites import records

    huge = json.dumps({"problem": "p", "answer": "Cardiomegaly", "x": [0] * 1_500_000})  # 4.5 M characters
    root, train = _clean_folder(tmp_path, [huge, {"problem": "p", "answer": "Cardiomegaly", "images": ["img/ok.png"],
                                                  "dataset": "CheXpert", "id": "after"}])
    parsed: list[int] = []
    real = records.json.loads
    monkeypatch.setattr(records.json, "loads", lambda text: parsed.append(len(text)) or real(text))
    assert _errors(root) == [f"{train}:2: record: line is {len(huge):,} characters long, more than the 1,000,000 a "
                             "record may take (media belong in the files it names); not read"]
    assert max(parsed) < 1_000_000 and len(parsed) == 3  # the two good train lines and the test line


def test_labels_with_invisible_characters_or_in_two_unicode_forms_are_problems(tmp_path: Path) -> None:
    import unicodedata

    composed, decomposed = (unicodedata.normalize(form, "Ménière") for form in ("NFC", "NFD"))
    assert composed != decomposed
    record = {"problem": "p", "images": ["img/ok.png"], "dataset": "Ear", "domain": "ent"}
    root, train = _clean_folder(tmp_path, [
        {**record, "answer": composed},  # 2
        {**record, "answer": decomposed},  # 3: looks the same, would be a second class
        {**record, "answer": "Benign\u202e"},  # 4: displays as "ngineB"
    ])
    errors = _errors(root)
    assert f"{train}:3: answer: label '{decomposed}' is the label of {train}:2 in another Unicode form (composed vs " \
           "decomposed characters); write both the same way" in errors
    assert f"{train}:4: answer: label 'Benign\\u202e' holds the invisible character U+202E RIGHT-TO-LEFT OVERRIDE, " \
           "which makes labels look alike or reorders their text; remove it" in errors
