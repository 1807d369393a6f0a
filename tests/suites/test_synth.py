"""SynthCLIMB: deterministic, real format, real skew, every suite generates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rlbench_med.suites.catalogue import VISION_DOMAINS, datasets_of
from rlbench_med.suites.data import load_data, load_mask, load_signal
from rlbench_med.suites.spec import get_suite, list_suites
from rlbench_med.suites.synth import (
    DEFAULT_IMBALANCE,
    class_signatures,
    generate,
    is_normal_class,
    plan_sizes,
)

SMALL_VISION = {"min_domain_train": 2, "min_dataset_train": 1, "test_fraction": 0.0, "min_dataset_test": 1}
SMALL = {
    "climb_vision": SMALL_VISION,
    "ablation_clusters": SMALL_VISION,
    "ablation_rewards": SMALL_VISION,
    "grounding": SMALL_VISION,
    "climb_ecg": {"min_domain_train": 8, "min_dataset_train": 2, "test_fraction": 0.0, "min_dataset_test": 2},
    "mimic_fusion": {"patients_train": 6, "patients_test": 3},
    "runtime": {},
}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "synth.json"
    }


def test_generation_is_deterministic_from_seed(tmp_path: Path) -> None:
    a = generate("climb_vision", tmp_path / "a", seed=3, imbalance=0.0, data_overrides=SMALL_VISION)
    b = generate("climb_vision", tmp_path / "b", seed=3, imbalance=0.0, data_overrides=SMALL_VISION)
    c = generate("climb_vision", tmp_path / "c", seed=4, imbalance=0.0, data_overrides=SMALL_VISION)
    assert a["counts"] == b["counts"] == c["counts"]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a" / "train.jsonl").read_text() != (tmp_path / "c" / "train.jsonl").read_text()
    ecg_a = generate("climb_ecg", tmp_path / "ea", seed=1, data_overrides=SMALL["climb_ecg"])
    ecg_b = generate("climb_ecg", tmp_path / "eb", seed=1, data_overrides=SMALL["climb_ecg"])
    assert ecg_a["counts"] == ecg_b["counts"]
    first = json.loads((tmp_path / "ea" / "train.jsonl").read_text().splitlines()[0])["time-series"][0]
    np.testing.assert_array_equal(load_signal(tmp_path / "ea" / first), load_signal(tmp_path / "eb" / first))


@pytest.mark.parametrize("suite", sorted(SMALL))
def test_every_suite_generates_loadable_data(tmp_path: Path, suite: str) -> None:
    assert set(SMALL) == set(list_suites())
    spec = get_suite(suite)
    summary = generate(suite, tmp_path, data_overrides=SMALL[suite])
    assert json.loads((tmp_path / "synth.json").read_text())["counts"] == summary["counts"]
    if spec.data == "none":
        assert not (tmp_path / "train.jsonl").exists()
        return
    data = load_data(tmp_path)
    assert set(data.domains) == set(spec.domains)
    assert data.counts() == summary["counts"]
    for sample in data.train + data.test:
        assert sample.labels and set(sample.labels) <= set(sample.classes)
        if sample.segmentation_path is not None:
            mask = load_mask(sample.segmentation_path)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert sample.bbox == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert not all(is_normal_class(label) for label in sample.labels)
        elif sample.images and suite != "mimic_fusion":
            assert all(is_normal_class(label) for label in sample.labels)
    if suite == "grounding":
        assert all(s.segmentation_path is not None for s in data.train + data.test)
    if suite == "climb_ecg":
        assert load_signal(data.train[0].time_series[0]).shape == (12, 1000)
    if suite == "mimic_fusion":
        assert {s.task for s in data.train} == {"los", "ihm48"}
        assert all(len(s.images) == 1 and len(s.time_series) == 1 and "lactate:" in s.problem for s in data.train)


def test_quick_profile_keeps_the_real_skew() -> None:
    params = get_suite("climb_vision").data_params("quick")
    groups = {d: datasets_of(d) for d in VISION_DOMAINS}
    plan = plan_sizes(
        groups,
        imbalance=DEFAULT_IMBALANCE,
        **{k: params[k] for k in ("min_domain_train", "min_dataset_train", "test_fraction", "min_dataset_test")},
    )
    per_domain = {d: sum(plan.train[e.dataset] for e in entries) for d, entries in groups.items()}
    assert max(per_domain, key=per_domain.get) == "ct" and min(per_domain, key=per_domain.get) == "ultrasound"
    assert per_domain["ct"] / per_domain["ultrasound"] >= 50
    assert min(per_domain.values()) >= 24
    assert sum(per_domain.values()) + sum(plan.test.values()) < 4000  # a few thousand images
    flat = plan_sizes(groups, imbalance=0.0, min_domain_train=10, min_dataset_train=1, test_fraction=0.0, min_dataset_test=1)
    assert {sum(flat.train[e.dataset] for e in entries) for entries in groups.values()} == {10}
    with pytest.raises(ValueError, match="imbalance"):
        plan_sizes(groups, imbalance=1.5, min_domain_train=1, min_dataset_train=1, test_fraction=0, min_dataset_test=1)


def test_each_class_has_its_own_lesion_signature() -> None:
    for entry in datasets_of("cxr") + datasets_of("mammography"):
        sigs = class_signatures(entry.dataset, entry.classes)
        lesion = [(s.shape, s.texture, s.count) for s in sigs.values() if s is not None]
        assert len(lesion) == len(set(lesion)) == sum(not is_normal_class(c) for c in entry.classes)


def test_refuses_to_overwrite_and_rejects_unknown_sizes(tmp_path: Path) -> None:
    generate("mimic_fusion", tmp_path, data_overrides=SMALL["mimic_fusion"])
    with pytest.raises(FileExistsError, match="train.jsonl"):
        generate("mimic_fusion", tmp_path, data_overrides=SMALL["mimic_fusion"])
    generate("mimic_fusion", tmp_path, data_overrides=SMALL["mimic_fusion"], overwrite=True)
    with pytest.raises(ValueError, match="patients"):
        generate("mimic_fusion", tmp_path / "x", data_overrides={"patient": 3})
    with pytest.raises(ValueError, match="profile"):
        generate("mimic_fusion", tmp_path / "y", profile="huge")


def test_unknown_profile_is_refused_before_the_output_is_touched(tmp_path: Path) -> None:
    generate("mimic_fusion", tmp_path, data_overrides=SMALL["mimic_fusion"])
    message = "suite 'mimic_fusion' has no profile 'huge'; use one of quick, full"
    with pytest.raises(ValueError, match=message):
        generate("mimic_fusion", tmp_path, profile="huge")
    with pytest.raises(ValueError, match=message):
        generate("mimic_fusion", tmp_path / "new", profile="huge")
    assert not (tmp_path / "new").exists()
