"""The QoQ-Med release's data conventions: a hand-built release folder, label splitting, paths
confined to the data folder, warnings, explicit files and the suite selection.

Expected values are written out by hand from the release's rules (see
``tests/suites/release_folder.py``), never taken from the loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlbench_med.cli import main
from rlbench_med.suites.data import (
    DataError,
    DataSource,
    check_data,
    load_data,
    load_sample_mask,
    summarize,
    validate_dir,
)
from rlbench_med.suites.media import load_mask, load_video_frames
from rlbench_med.suites.release_format import frame_indices, path_origin, split_release_labels
from tests.suites.release_folder import SMALL_MASK, VIDEO_LEVELS, VIDEO_SIZE, write_release_folder


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release_folder(tmp_path_factory.mktemp("release") / "climb")


def _write(root: Path, name: str, records: list[object]) -> Path:
    path = root / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _png(path: Path, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path)


# ------------------------------------------------------------------------------------------------
# the release's rules, hand-worked
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("A, B & C", ["A", "B & C"]),  # ", " is tried first and is the only separator used
        ("A,B", ["A", "B"]),
        ("Mild DR and Severe DR", ["Mild DR", "Severe DR"]),
        ("Edema & Pneumonia", ["Edema", "Pneumonia"]),
        ("Edema&Pneumonia", ["Edema", "Pneumonia"]),
        ("Brand and Co, X", ["Brand and Co", "X"]),
        ("A, A", ["A"]),
        ("\\boxed{Cardiomegaly, Edema}", ["Cardiomegaly", "Edema"]),
        ("\\text{Benign}", ["\\text{Benign"]),  # every } removed, { kept
        ("A, ", ["A", ""]),  # empty pieces survive
        ("  Normal  ", ["Normal"]),
        ("", [""]),
    ],
)
def test_labels_split_as_the_release_splits_them(text: str, labels: list[str]) -> None:
    assert split_release_labels(text) == labels


@pytest.mark.parametrize(
    ("total", "n", "expected"),
    [(7, 3, [0, 3, 6]), (10, 2, [0, 9]), (5, 1, [2]), (10, 4, [0, 3, 6, 9]), (4, 4, [0, 1, 2, 3]), (0, 2, [])],
)
def test_frames_sampled_as_the_release_samples_them(total: int, n: int, expected: list[int]) -> None:
    assert frame_indices(total, n) == expected


def test_domain_and_dataset_folders_of_a_path() -> None:
    cxr = path_origin("chest_xray/chexpert_full/train/p1/view1.jpg")
    assert (cxr.domain, cxr.known, cxr.dataset_folder) == ("cxr", True, "chexpert_full")
    synth = path_origin("images/mammography/cmmd/a.png")
    assert (synth.domain, synth.known, synth.dataset_folder) == ("mammography", True, "cmmd")
    unknown = path_origin("endoscopic/cholec80/v.mp4")
    assert (unknown.domain, unknown.known, unknown.dataset_folder) == ("endoscopic", False, "cholec80")
    assert path_origin("derm/a.png").dataset_folder is None  # a file name is never a dataset
    assert path_origin("a.png") is None


# ------------------------------------------------------------------------------------------------
# the hand-built release folder
# ------------------------------------------------------------------------------------------------
EXPECTED_TRAIN = [  # (domain, dataset, task, labels, bbox) per train line, from the release's rules
    ("cxr", "CheXpert", "CheXpert", ("Cardiomegaly", "Edema"), None),
    ("cxr", "MIMIC-CXR", "MIMIC-CXR", ("Edema", "Pneumonia"), (2.0, 3.0, 20.0, 15.0)),
    ("cxr", "VinDr-CXR", "VinDr-CXR", ("No Finding",), None),
    ("mammography", "VinDr-Mammo", "VinDr-Mammo", ("BIRAD 4",), None),  # bbox [0, 0, 0, 0]: no box
    ("dermoscopy", "HAM10000", "HAM10000", ("Melanoma",), None),
    ("dermoscopy", "HAM10000", "HAM10000", ("Melanoma",), None),  # "MEL", the older name
    ("fundus", "APTOS 2019", "APTOS 2019", ("Mild DR",), None),
    ("ultrasound", "BUSI", "BUSI", ("Benign",), (1.0, 1.0, 9.0, 9.0)),  # empty mask: the box is used
    ("ct", "KiTS23", "KiTS23", ("Malignant",), None),
    ("endoscopic", "cholec80", "cholec80", ("Calot Triangle Dissection",), None),
    ("ecg", "PTB-XL", "PTB-XL", ("MI", "STTC"), None),
    ("ihm48", "MIMIC-IV", "ihm48", ("Yes",), None),
    ("los", "MIMIC-IV", "los", ("3 to 7 days",), None),
]


def test_release_folder_loads_with_the_release_domains_datasets_labels_and_boxes(release_dir: Path) -> None:
    findings = validate_dir(release_dir)
    assert [p for p in findings if p.level == "error"] == []
    assert {(p.line, p.field) for p in findings} == {(8, "segmentation_path"), (10, "dataset")}
    data = load_data(release_dir)
    got = [(s.domain, s.dataset, s.task, s.labels, s.bbox) for s in data.train]
    assert got == EXPECTED_TRAIN
    assert [s.labels for s in data.test] == [
        ("Pleural Effusion",), ("BIRAD 2",), ("Nevus",), ("No DR",), ("Malignant",), ("Benign",),
        ("Clipping Cutting",), ("Normal",),
    ]
    assert data.tasks["cholec80"] == ("Calot Triangle Dissection", "Clipping Cutting")
    assert data.tasks["HAM10000"] == ("Melanoma", "Nevus", "Basal Cell Carcinoma", "AKIEC", "Other")
    assert data.domains == ("cxr", "mammography", "dermoscopy", "ct", "fundus", "ultrasound", "ecg", "los", "ihm48",
                            "endoscopic")
    busi = data.train[7]
    assert busi.segmentation_path is None and busi.has_region


def test_a_smaller_mask_is_resized_to_its_image_with_nearest_neighbours(release_dir: Path) -> None:
    melanoma = load_data(release_dir).train[4]
    assert melanoma.image_size == (24, 20)
    expected = np.repeat(np.repeat(SMALL_MASK, 2, axis=0), 2, axis=1)  # [10, 12] -> [20, 24]
    np.testing.assert_array_equal(load_sample_mask(melanoma), expected)
    assert load_mask(melanoma.segmentation_path).shape == (10, 12)  # the file itself is untouched


def test_videos_load_as_evenly_sampled_frames(release_dir: Path) -> None:
    data = load_data(release_dir)
    ct_train, ct_test = data.train[8], data.test[5]
    assert ct_train.images == () and ct_train.videos[0].name == "imaging.mp4"
    assert ct_train.image_size == VIDEO_SIZE
    frames = load_video_frames(ct_train.videos[0], 3, size=8)
    assert frames.shape == (3, 3, 8, 8) and frames.dtype == np.float32
    # 7 frames, 3 sampled: indices 0, 3, 6 -> the grey levels the writer was given (mp4 is lossy).
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)) * 255, [VIDEO_LEVELS[i] for i in (0, 3, 6)], atol=8)
    reversed_levels = VIDEO_LEVELS[::-1]
    first_last = load_video_frames(ct_test.videos[0], 2, size=8).mean(axis=(1, 2, 3)) * 255
    np.testing.assert_allclose(first_last, [reversed_levels[0], reversed_levels[-1]], atol=8)


def test_release_folder_validates_clean_from_the_command_line(release_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "validate", str(release_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{release_dir}: 0 problem(s), 2 warning(s)" in out
    assert "train.jsonl:8: segmentation_path: warning: " in out


def test_suite_uses_its_domains_and_sets_the_others_aside(release_dir: Path) -> None:
    vision = load_data(DataSource.parse(release_dir).for_suite("climb_vision"))
    assert vision.domains == ("cxr", "mammography", "dermoscopy", "ct", "fundus", "ultrasound", "endoscopic")
    assert vision.set_aside == {"ecg": {"train": 1, "validation": 0, "test": 1},
                                "ihm48": {"train": 1, "validation": 0, "test": 0},
                                "los": {"train": 1, "validation": 0, "test": 0}}
    assert "used by climb_ecg" in vision.set_aside_reason["ecg"]
    assert "PTB-XL" not in vision.tasks
    ecg = load_data(DataSource.parse(release_dir).for_suite("climb_ecg"))
    assert {s.domain for s in ecg.train} == {"ecg", "endoscopic"}  # endoscopic: no suite names it
    mimic = load_data(DataSource.parse(release_dir).for_suite("mimic_fusion"))
    assert [s.task for s in mimic.train if s.dataset == "MIMIC-IV"] == ["ihm48", "los"]


def test_source_file_round_trips_and_its_fingerprint_sees_the_selection(release_dir: Path, tmp_path: Path) -> None:
    source = DataSource.parse(release_dir).for_suite("climb_vision")
    path = source.save(tmp_path)
    assert path.name.startswith("climb_vision-") and DataSource.open(path) == source
    assert [s.uid for s in load_data(path).train] == [s.uid for s in load_data(source).train]
    assert source.fingerprint() != DataSource.parse(release_dir).for_suite("climb_ecg").fingerprint()


# ------------------------------------------------------------------------------------------------
# explicit files
# ------------------------------------------------------------------------------------------------
def test_explicit_files_with_any_names_load(tmp_path: Path) -> None:
    _png(tmp_path / "data" / "derm" / "ham10000" / "a.png")
    rec = {"problem": "p", "answer": "Nevus", "images": ["derm/ham10000/a.png"]}
    _write(tmp_path / "data", "annotation_train.jsonl", [rec])
    _write(tmp_path / "data", "annotation_valid.jsonl", [{**rec, "answer": "Melanoma", "id": "t0"}])
    spec = f"train={tmp_path / 'data' / 'annotation_train.jsonl'},test={tmp_path / 'data' / 'annotation_valid.jsonl'}"
    data = load_data(DataSource.parse(spec))
    assert [s.labels for s in data.train] == [("Nevus",)] and [s.uid for s in data.test] == ["t0"]
    assert data.train[0].images == ((tmp_path / "data" / "derm" / "ham10000" / "a.png").resolve(),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("train=a.jsonl", "give test=PATH too"), ("train=a,test=b,train=c", "train= given twice"),
     ("train=a,valid=b", "cannot read 'valid=b'")],
)
def test_malformed_explicit_files_are_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        DataSource.parse(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_explicit_file_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "a.jsonl", [{"problem": "p", "answer": "Yes", "dataset": "MIMIC-IV", "task": "ihm48"}])
    problems = validate_dir(DataSource.parse(f"train={tmp_path / 'a.jsonl'},test={tmp_path / 'b.jsonl'}"))
    assert [str(p) for p in problems if p.level == "error"] == [f"{tmp_path / 'b.jsonl'}:0: file: does not exist"]


# ------------------------------------------------------------------------------------------------
# paths stay inside the data folder
# ------------------------------------------------------------------------------------------------
def test_paths_outside_the_data_folder_are_refused_unless_allowed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "derm" / "ham10000" / "in.png")
    _png(tmp_path / "outside" / "x.png")
    _png(tmp_path / "outside" / "mask.png")
    torch.save(torch.zeros(12, 100), tmp_path / "outside" / "sig.pt")
    (root / "derm" / "ham10000" / "link.png").symlink_to(tmp_path / "outside" / "x.png")
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    good = {"problem": "p", "answer": "Nevus", "images": ["derm/ham10000/in.png"], "dataset": "HAM10000"}
    _write(root, "train.jsonl", [
        good,  # 1
        {**good, "images": ["../outside/x.png"]},  # 2
        {**good, "images": [str(tmp_path / "outside" / "x.png")]},  # 3 absolute
        {**good, "images": ["derm/ham10000/link.png"]},  # 4 symlinked file
        {**good, "images": ["escape/x.png"]},  # 5 symlinked folder
        {**good, "segmentation_path": "../outside/mask.png"},  # 6
        {**good, "time-series": ["../outside/sig.pt"]},  # 7
        {**good, "videos": ["../outside/v.mp4"]},  # 8
    ])
    _write(root, "test.jsonl", [{**good, "answer": "Melanoma"}])
    problems = [p for p in validate_dir(root) if p.level == "error"]
    fields = {2: "images", 3: "images", 4: "images", 5: "images", 6: "segmentation_path", 7: "time-series", 8: "videos"}
    assert {(p.line, p.field) for p in problems} == set(fields.items())
    outside = (tmp_path / "outside").resolve()
    for p in problems:
        assert f"outside the data folder {root.resolve()}" in p.message and "--allow-outside-data" in p.message
        assert str(outside) in p.message
    assert not any(p.line == 1 for p in problems)

    allowed = [p for p in validate_dir(DataSource.parse(root, allow_outside=True)) if p.level == "error"]
    assert [(p.line, p.field) for p in allowed] == [(8, "videos")]  # the video does not exist at all
    assert "file does not exist" in allowed[0].message


# ------------------------------------------------------------------------------------------------
# warnings: duplicates, train/test overlap, contradicting domains
# ------------------------------------------------------------------------------------------------
def test_duplicates_overlap_and_contradicting_domains_are_warnings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _png(tmp_path / "derm" / "ham10000" / "a.png")
    _png(tmp_path / "derm" / "ham10000" / "b.png")
    _png(tmp_path / "chest_xray" / "x" / "c.png")
    a = {"problem": "Lesion?", "answer": "Nevus", "images": ["derm/ham10000/a.png"]}
    b = {"problem": "Lesion?", "answer": "Melanoma", "images": ["derm/ham10000/b.png"]}
    _write(tmp_path, "train.jsonl", [
        a,  # 1
        b,  # 2
        {**a, "id": "again"},  # 3 duplicate of 1
        {**b, "answer": "Nevus"},  # 4 duplicate of 2, other answer
        {**a, "images": ["derm/ham10000/../ham10000/a.png"], "problem": "Lesion? "},  # 5 same file, same prompt
        {**a, "domain": "cxr"},  # 6 contradicts the catalogue and the path (and duplicates 1)
        {"problem": "Lesion?", "answer": "Melanoma", "images": ["chest_xray/x/c.png"], "dataset": "HAM10000"},  # 7
    ])
    _write(tmp_path, "test.jsonl", [{**b, "id": "t"}, {"problem": "New?", "answer": "Nevus", "images": ["derm/ham10000/a.png"]}])
    findings = validate_dir(tmp_path)
    assert all(p.level == "warning" for p in findings)
    train, test = str(tmp_path / "train.jsonl"), str(tmp_path / "test.jsonl")
    got = {(Path(p.file).name, p.line, p.field) for p in findings}
    assert got == {
        ("train.jsonl", 3, "record"), ("train.jsonl", 4, "record"), ("train.jsonl", 5, "record"),
        ("train.jsonl", 6, "record"), ("train.jsonl", 6, "domain"), ("train.jsonl", 7, "domain"),
        ("test.jsonl", 1, "record"),
    }
    text = "\n".join(map(str, findings))
    assert f"{train}:4: record: warning: duplicate of line 2 (same inputs, a different answer)" in text
    assert f"{test}:1: record: warning: same inputs as {train}:2: a test record also in train" in text
    assert "'cxr' from the record's \"domain\" contradicts the catalogue (HAM10000), which says 'dermoscopy'" in text
    assert f"{train}:7: domain: warning: 'dermoscopy' from the catalogue (HAM10000) contradicts the path" in text
    data = load_data(tmp_path)  # warnings never block
    assert data.train[5].domain == "cxr" and len(data.warnings) == 7
    assert summarize(DataSource.parse(tmp_path))[-1].startswith(
        "0 problem(s), 7 warning(s) (4 duplicate, 1 test record in train, 2 contradicting domain)")

    assert main(["data", "validate", str(tmp_path)]) == 0
    assert "0 problem(s), 7 warning(s)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# signals
# ------------------------------------------------------------------------------------------------
class Payload:
    """An arbitrary Python object: torch.save pickles it, torch.load(weights_only=True) refuses it."""


def test_pickled_pt_and_empty_signal_are_one_line_problems(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "ecg").mkdir()
    torch.save({"signal": torch.zeros(12, 10), "meta": Payload()}, tmp_path / "ecg" / "pickled.pt")
    torch.save(torch.zeros(12, 0), tmp_path / "ecg" / "empty.pt")
    rec = {"problem": "Rhythm?", "answer": "Normal", "dataset": "PTB-XL"}
    _write(tmp_path, "train.jsonl", [{**rec, "time-series": ["ecg/pickled.pt"]}, {**rec, "time-series": ["ecg/empty.pt"]}])
    _write(tmp_path, "test.jsonl", [{**rec, "time-series": ["ecg/empty.pt"], "id": "t"}])
    assert main(["data", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    train = tmp_path / "train.jsonl"
    assert out[0] == (f"{train}:1: time-series: ecg/pickled.pt: cannot be read as a signal: holds pickled Python "
                      "objects, not a plain tensor (refused: loading them could run code); save the signal with "
                      "torch.save(tensor)")
    assert out[1] == f"{train}:2: time-series: ecg/empty.pt: signal is empty (shape (12, 0): no samples)"
    with pytest.raises(DataError):
        load_data(tmp_path)


def test_video_that_does_not_decode_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "ct" / "kits23").mkdir(parents=True)
    (tmp_path / "ct" / "kits23" / "v.mp4").write_bytes(b"not a video")
    rec = {"problem": "p", "answer": "Benign", "videos": ["ct/kits23/v.mp4"], "images": []}
    _write(tmp_path, "train.jsonl", [rec])
    _write(tmp_path, "test.jsonl", [{**rec, "id": "t"}])
    problems = check_data(tmp_path).problems
    assert {(p.line, p.field) for p in problems} == {(1, "videos")}
    assert all("\n" not in str(p) and "ct/kits23/v.mp4: " in p.message for p in problems)
    assert os.fspath(tmp_path) in problems[0].file
