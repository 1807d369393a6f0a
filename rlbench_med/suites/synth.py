"""SynthCLIMB: synthetic clinical data written in the real CLIMB / QoQ-Med export format.

Everything is deterministic from ``seed``. The *appearance* of each class (its lesion signature,
its ECG morphology) depends only on the dataset and class names, so different seeds draw
different patients from the same world.

**Sizes (the real skew).** A domain with catalogue train size ``S_d`` gets
``n_d = round(min_domain_train * (S_d / S_min) ** imbalance)`` training samples, ``S_min`` being
the smallest domain of the suite; inside a domain, datasets split ``n_d`` in proportion to
``S_dataset ** imbalance`` (largest remainders round up; a dataset gets at least
``min_dataset_train``, which may raise the domain total above ``n_d``). With the default
``imbalance = 0.55`` the vision domains keep CT:ultrasound at about 55:1 (the catalogue has
1481:1). A dataset's test split has ``max(min_dataset_test, round(test_fraction * n_train))``
samples, and its validation split as many, drawn apart (every choice reads validation; test is
scored once).

**Vision images** (64x64 RGB PNG by default). Each domain has its own background (lung fields,
breast, skin, body section, retina, ultrasound fan, head, tissue) and difficulty: lesions are
drawn with contrast ``0.6 * SNR`` over Gaussian pixel noise of sd 0.1 (:data:`DOMAIN_SNR`;
ultrasound and mammography are the hardest, MRI among the easiest). A class is
recognised by the evidence inside its lesion: shape (disk, square, ring, diamond), texture (flat,
horizontal or vertical stripes, checker), count (1 or 2 lesions) and location (a class anchor,
jittered). "Normal"-type classes (``Normal``, ``No Finding``, ``None``, ``No ...``) have no lesion.
The union of the lesions is the segmentation mask (PNG) and ``bbox`` is the mask's box. MIMIC-CXR
and CheXpert images are multi-label (0-3 findings, "No Finding" when none). ``grounding``
draws only lesion classes, so every sample has a mask.

**ECG** (12 leads, 10 s at 100 Hz, ``.pt`` float32 tensors ``[12, 1000]``). A dipole model: each
wave (P, Q, R, S, T, and an ST segment term) is a Gaussian bump with a 3-D direction projected
on the 12 lead axes. Classes: Normal (sinus 55-95 bpm), CD (wide notched QRS, long PR), HYP
(tall R, deep S in V1-V2), MI (deep wide Q and ST elevation in one territory), STTC (ST depression
and inverted T), A. Fib/Aflutter (irregular RR, no P, fibrillatory baseline), Other (brady- or
tachycardia or premature wide beats). 15% of abnormal records carry a second compatible class.
Datasets differ in noise level.

**MIMIC-like patients** (``mimic_fusion``). Each patient has three latent pairs
``(a_m, b_m)`` for m in image, ECG, EHR. Length of stay is the 4-bin quantisation of
``a_img + a_ecg + a_ehr + 0.4 e``, 48-hour mortality is ``b_img + b_ecg + b_ehr + 0.4 e`` above its
80th percentile. The CXR shows ``a_img`` as the number of opacities and ``b_img`` as an effusion
band; the ECG shows ``a_ecg`` as heart rate and ``b_ecg`` as ST deviation; the EHR text in
``problem`` shows ``a_ehr`` and ``b_ehr`` as binned words (plus distractor fields). Every modality
carries part of the answer, so full input beats every ablation. Each patient gives two records
(``task`` ``los`` and ``ihm48``) sharing the image and the ECG.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rlbench_med.suites.catalogue import (
    ECG_DOMAIN,
    MIMIC_DATASET,
    MIMIC_TASKS,
    VISION_DOMAINS,
    CatalogueEntry,
    datasets_of,
    normalize_label,
)
from rlbench_med.suites.source import SPLITS

DEFAULT_IMBALANCE = 0.55
NOISE_SD = 0.1
LESION_CONTRAST = 0.6
DOMAIN_SNR: dict[str, float] = {
    "cxr": 0.9,
    "mammography": 0.5,
    "dermoscopy": 1.4,
    "ct": 0.8,
    "fundus": 1.0,
    "ultrasound": 0.45,
    "mri": 1.3,
    "pathology": 0.9,
}
"""Lesion contrast multiplier per vision domain (lower is harder)."""

ECG_NOISE_SD: dict[str, float] = {"PTB-XL": 0.03, "Chapman-Shaoxing": 0.04, "Georgia": 0.08, "CPSC": 0.06}
MULTI_LABEL_DATASETS = frozenset({"MIMIC-CXR", "CheXpert"})
ECG_FS = 100
ECG_SECONDS = 10
ECG_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _key(*parts: object) -> int:
    """A stable 32-bit integer for names (unlike hash(), identical across processes)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng([int(seed), _key(*parts)])


def is_normal_class(name: str) -> bool:
    """Classes meaning "nothing found" (drawn without a lesion)."""
    key = normalize_label(name)
    return key in {"normal", "none", "no", "no finding"} or key.startswith("no ")


def _slug(name: str) -> str:
    return "".join(c.lower() if c.isalnum() else "_" for c in name).strip("_")


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizePlan:
    """Train/test sample counts per dataset."""

    train: dict[str, int]
    test: dict[str, int]


def plan_sizes(
    groups: dict[str, tuple[CatalogueEntry, ...]],
    *,
    imbalance: float,
    min_domain_train: int,
    min_dataset_train: int,
    test_fraction: float,
    min_dataset_test: int,
) -> SizePlan:
    """Sizes following the catalogue's train sizes compressed by ``imbalance`` (module docstring)."""
    if not 0 <= imbalance <= 1:
        raise ValueError(f"imbalance must be in [0, 1] (0: balanced, 1: the catalogue's skew), got {imbalance}")
    totals = {d: sum(e.train for e in entries) for d, entries in groups.items()}
    smallest = min(totals.values())
    train: dict[str, int] = {}
    test: dict[str, int] = {}
    for domain, entries in groups.items():
        n_domain = round(min_domain_train * (totals[domain] / smallest) ** imbalance)
        weights = np.array([e.train**imbalance for e in entries], dtype=np.float64)
        exact = n_domain * weights / weights.sum()
        counts = np.floor(exact).astype(int)
        # Largest remainders get the leftover samples, so the datasets add up to n_domain.
        for i in np.argsort(-(exact - counts), kind="stable")[: n_domain - int(counts.sum())]:
            counts[i] += 1
        for entry, n in zip(entries, counts):
            n = max(min_dataset_train, int(n))
            train[entry.dataset] = n
            test[entry.dataset] = max(min_dataset_test, round(test_fraction * n))
    return SizePlan(train=train, test=test)


# --------------------------------------------------------------------------------------------
# vision
# --------------------------------------------------------------------------------------------
SHAPES = ("disk", "square", "ring", "diamond")
TEXTURES = ("flat", "hstripes", "vstripes", "checker")

_LESION_COLOR: dict[str, tuple[float, float, float]] = {
    "cxr": (1.0, 1.0, 1.0),
    "mammography": (1.0, 1.0, 1.0),
    "dermoscopy": (-0.6, -0.8, -0.8),
    "ct": (1.0, 1.0, 1.0),
    "fundus": (1.0, 1.0, 0.2),
    "ultrasound": (-1.0, -1.0, -1.0),
    "mri": (1.0, 1.0, 1.0),
    "pathology": (-0.8, -0.8, 0.3),
}


@dataclass(frozen=True)
class LesionSignature:
    """How one class looks: lesion shape, texture, count and anchor (x, y) in unit coordinates."""

    shape: str
    texture: str
    count: int
    anchor: tuple[float, float]


def class_signatures(dataset: str, classes: tuple[str, ...]) -> dict[str, LesionSignature | None]:
    """Distinct lesion signatures for the classes of one dataset (None for normal classes)."""
    rng = np.random.default_rng(_key("signature", dataset))
    combos = [(s, t, c) for c in (1, 2) for s in SHAPES for t in TEXTURES]
    # Single-lesion combinations first, so count is the extra cue only for large class lists.
    order = list(rng.permutation(16)) + list(16 + rng.permutation(16))
    anchors = [(x, y) for y in (0.3, 0.5, 0.7) for x in (0.3, 0.5, 0.7)]
    anchor_order = rng.permutation(len(anchors))
    out: dict[str, LesionSignature | None] = {}
    k = 0
    for name in classes:
        if is_normal_class(name):
            out[name] = None
            continue
        shape, texture, count = combos[order[k]]
        out[name] = LesionSignature(shape, texture, count, anchors[anchor_order[k % len(anchors)]])
        k += 1
    return out


class _Canvas:
    """Pre-computed grids, textures and domain backgrounds for one image size."""

    def __init__(self, size: int) -> None:
        self.size = size
        ax = np.arange(size, dtype=np.float32)
        self.yy, self.xx = np.meshgrid(ax, ax, indexing="ij")
        yi, xi = self.yy.astype(np.int32), self.xx.astype(np.int32)
        period = max(2, size // 16)
        self.textures = {
            "flat": np.ones((size, size), np.float32),
            "hstripes": np.where((yi // period) % 2 == 0, 1.0, 0.25).astype(np.float32),
            "vstripes": np.where((xi // period) % 2 == 0, 1.0, 0.25).astype(np.float32),
            "checker": np.where(((yi // period) + (xi // period)) % 2 == 0, 1.0, 0.25).astype(np.float32),
        }
        self.backgrounds = {d: self._background(d) for d in VISION_DOMAINS}
        # Bilinear upsampling matrix [S, S // 8] for smooth coarse noise: up = U @ coarse @ U.T.
        coarse_n = max(2, size // 8)
        pos = (ax + 0.5) * coarse_n / size - 0.5
        lo = np.clip(np.floor(pos).astype(int), 0, coarse_n - 2)
        frac = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)
        self.upsample = np.zeros((size, coarse_n), np.float32)
        self.upsample[np.arange(size), lo] = 1.0 - frac
        self.upsample[np.arange(size), lo + 1] += frac

    def smooth_noise(self, rng: np.random.Generator, sd: float) -> np.ndarray:
        """[S, S] smooth random field: Gaussian noise on an S/8 grid, bilinearly upsampled."""
        coarse = rng.normal(0.0, sd, size=(self.upsample.shape[1],) * 2).astype(np.float32)
        return self.upsample @ coarse @ self.upsample.T

    def _ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        s = self.size
        return (((self.xx - cx * s) / (rx * s)) ** 2 + ((self.yy - cy * s) / (ry * s)) ** 2 <= 1.0).astype(np.float32)

    def _background(self, domain: str) -> np.ndarray:
        """[3, S, S] float32 template of a domain."""
        s = self.size
        g = np.zeros((s, s), np.float32)
        rgb = np.ones(3, np.float32)
        if domain == "cxr":
            g[:] = 0.55
            g -= 0.3 * (self._ellipse(0.3, 0.5, 0.17, 0.33) + self._ellipse(0.7, 0.5, 0.17, 0.33))
            g += 0.15 * self._ellipse(0.5, 0.5, 0.06, 0.45)
        elif domain == "mammography":
            g[:] = 0.05
            g += 0.45 * self._ellipse(0.0, 0.5, 0.8, 0.45)
        elif domain == "dermoscopy":
            g[:] = 0.75
            rgb = np.array([1.0, 0.78, 0.65], np.float32)
            g *= 1.0 - 0.35 * ((self.xx / s - 0.5) ** 2 + (self.yy / s - 0.5) ** 2)
        elif domain == "ct":
            g[:] = 0.02
            g += 0.35 * self._ellipse(0.5, 0.5, 0.45, 0.38) + 0.2 * (self._ellipse(0.5, 0.5, 0.45, 0.38) - self._ellipse(0.5, 0.5, 0.41, 0.34))
        elif domain == "fundus":
            g += 0.5 * self._ellipse(0.5, 0.5, 0.46, 0.46)
            g += 0.3 * self._ellipse(0.78, 0.5, 0.07, 0.07)
            rgb = np.array([1.0, 0.55, 0.25], np.float32)
        elif domain == "ultrasound":
            ang = np.arctan2(self.xx - s / 2, self.yy + 0.1 * s)
            rad = np.hypot(self.xx - s / 2, self.yy + 0.1 * s) / s
            g += 0.45 * ((np.abs(ang) < 0.6) & (rad > 0.15) & (rad < 1.05)).astype(np.float32)
        elif domain == "mri":
            g += 0.4 * self._ellipse(0.5, 0.5, 0.38, 0.44) - 0.15 * self._ellipse(0.5, 0.5, 0.1, 0.12)
        elif domain == "pathology":
            g[:] = 0.8
            rgb = np.array([0.95, 0.7, 0.85], np.float32)
        else:
            raise ValueError(f"no background for domain {domain!r}")
        return np.clip(g[None] * rgb[:, None, None], 0, 1).astype(np.float32)

    def shape_mask(self, shape: str, cx: float, cy: float, r: float) -> np.ndarray:
        u = self.xx + 0.5 - cx
        v = self.yy + 0.5 - cy
        if shape == "disk":
            return u * u + v * v <= r * r
        if shape == "square":
            return np.maximum(np.abs(u), np.abs(v)) <= 0.85 * r
        if shape == "ring":
            d2 = u * u + v * v
            return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
        if shape == "diamond":
            return np.abs(u) + np.abs(v) <= 1.2 * r
        raise ValueError(f"unknown lesion shape {shape!r}")


def _render_vision(
    canvas: _Canvas,
    domain: str,
    signatures: list[LesionSignature],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image [S, S, 3], bool mask [S, S]) with one lesion group per signature."""
    s = canvas.size
    img = canvas.backgrounds[domain] * np.float32(rng.uniform(0.85, 1.15))
    # Smooth anatomical variation: coarse noise, upsampled.
    img = img + canvas.smooth_noise(rng, 0.06)[None]
    if domain == "pathology":
        n_nuclei = int(rng.integers(20, 40))
        centres = rng.uniform(0, s, size=(n_nuclei, 2)).astype(np.float32)
        radii = rng.uniform(1.0, 2.0, size=n_nuclei).astype(np.float32)
        d2 = (canvas.xx[..., None] + 0.5 - centres[:, 0]) ** 2 + (canvas.yy[..., None] + 0.5 - centres[:, 1]) ** 2
        nuclei = (d2 <= radii**2).any(-1)
        img[:, nuclei] -= np.array([0.15, 0.3, 0.1], np.float32)[:, None]
    mask = np.zeros((s, s), dtype=bool)
    contrast = LESION_CONTRAST * DOMAIN_SNR[domain]
    color = np.array(_LESION_COLOR[domain], np.float32)[:, None, None]
    for sig in signatures:
        for _ in range(sig.count):
            r = rng.uniform(0.08, 0.13) * s
            cx = (sig.anchor[0] + rng.uniform(-0.1, 0.1)) * s
            cy = (sig.anchor[1] + rng.uniform(-0.1, 0.1)) * s
            m = canvas.shape_mask(sig.shape, cx, cy, r)
            pattern = canvas.textures[sig.texture] * m
            img = img + contrast * rng.uniform(0.8, 1.2) * color * pattern[None]
            mask |= m
    img = img + rng.normal(0.0, NOISE_SD, size=img.shape).astype(np.float32)
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    return out, mask


def _class_probs(dataset: str, classes: tuple[str, ...]) -> np.ndarray:
    """Mildly skewed class frequencies, ``p_c ∝ (rank_c + 1) ** -0.5`` in a dataset-fixed order."""
    rng = np.random.default_rng(_key("class-freq", dataset))
    ranks = rng.permutation(len(classes))
    w = (ranks + 1.0) ** -0.5
    return w / w.sum()


_N_FINDINGS_CDF = np.cumsum([0.3, 0.4, 0.2, 0.1])[:-1]  # P(0, 1, 2, 3 findings) on a multi-label CXR


def _draw_labels(
    entry: CatalogueEntry, probs: np.ndarray, rng: np.random.Generator, lesion_only: bool
) -> list[str]:
    classes = entry.classes
    lesion = [i for i, c in enumerate(classes) if not is_normal_class(c)]
    if entry.dataset in MULTI_LABEL_DATASETS:
        k = int(np.searchsorted(_N_FINDINGS_CDF, rng.random(), side="right"))
        if lesion_only:
            k = max(k, 1)
        if k == 0:
            return [c for c in classes if is_normal_class(c)][:1]
        p = probs[lesion] / probs[lesion].sum()
        picked = rng.choice(lesion, size=k, replace=False, p=p)
        return [classes[i] for i in sorted(picked)]
    pool = lesion if lesion_only else list(range(len(classes)))
    cdf = np.cumsum(probs[pool])
    pick = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(pool) - 1)
    return [classes[pool[pick]]]


def _vision_problem(entry: CatalogueEntry, multi: bool) -> str:
    what = "Select every finding present" if multi else "Which one diagnosis fits"
    return (
        f"<image>\nThis {entry.domain} image comes from the {entry.dataset} dataset. {what}: "
        f"{', '.join(entry.classes)}. Think step by step, give the final answer in \\boxed{{}} "
        "and the box of the region that supports it as a ```json``` list of {\"label\", \"bbox_2d\"}."
    )


def _save_png(array: np.ndarray, path: Path) -> None:
    """Save uint8 ``[H, W]`` or ``[H, W, 3]`` as PNG (the folder must exist)."""
    Image.fromarray(array).save(path, compress_level=1)


def _generate_vision(out: Path, seed: int, data: dict[str, Any], imbalance: float, lesion_only: bool) -> dict[str, list[dict]]:
    groups = {d: datasets_of(d) for d in VISION_DOMAINS}
    plan = plan_sizes(
        groups,
        imbalance=imbalance,
        min_domain_train=int(data["min_domain_train"]),
        min_dataset_train=int(data["min_dataset_train"]),
        test_fraction=float(data["test_fraction"]),
        min_dataset_test=int(data["min_dataset_test"]),
    )
    canvas = _Canvas(int(data.get("image_size", 64)))
    records: dict[str, list[dict]] = {split: [] for split in SPLITS}
    sizes_of = {"train": plan.train, "validation": plan.test, "test": plan.test}
    for domain, entries in groups.items():
        for entry in entries:
            sigs = class_signatures(entry.dataset, entry.classes)
            probs = _class_probs(entry.dataset, entry.classes)
            multi = entry.dataset in MULTI_LABEL_DATASETS
            problem = _vision_problem(entry, multi)
            for split, sizes in sizes_of.items():
                rng = _rng(seed, "vision", entry.dataset, split)
                folder = f"{domain}/{_slug(entry.dataset)}"
                (out / "images" / folder).mkdir(parents=True, exist_ok=True)
                (out / "masks" / folder).mkdir(parents=True, exist_ok=True)
                for i in range(sizes[entry.dataset]):
                    labels = _draw_labels(entry, probs, rng, lesion_only)
                    lesions = [sigs[c] for c in labels if sigs[c] is not None]
                    img, mask = _render_vision(canvas, domain, lesions, rng)  # type: ignore[arg-type]
                    name = f"{split}_{i:05d}.png"
                    _save_png(img, out / "images" / folder / name)
                    rec: dict[str, Any] = {
                        "problem": problem,
                        "answer": ", ".join(labels),
                        "images": [f"images/{folder}/{name}"],
                        "time-series": [],
                        "segmentation_path": None,
                        "bbox": None,
                        "dataset": entry.dataset,
                    }
                    if mask.any():
                        _save_png((mask * 255).astype(np.uint8), out / "masks" / folder / name)
                        rows = np.flatnonzero(mask.any(1))
                        cols = np.flatnonzero(mask.any(0))
                        rec["segmentation_path"] = f"masks/{folder}/{name}"
                        rec["bbox"] = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
                    records[split].append(rec)
    return records


# --------------------------------------------------------------------------------------------
# ECG
# --------------------------------------------------------------------------------------------
def _lead_axes() -> np.ndarray:
    """[12, 3] unit lead vectors (x: left, y: down, z: anterior)."""
    frontal = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
    rows = []
    for lead in ECG_LEADS:
        if lead in frontal:
            a = math.radians(frontal[lead])
            rows.append((math.cos(a), math.sin(a), 0.0))
        else:
            k = int(lead[1:]) - 1
            a = math.radians(120 - 24 * k)  # V1 anterior-right ... V6 left-lateral
            rows.append((math.cos(a), 0.15, math.sin(a)))
    return np.array(rows, np.float32)


LEAD_AXES = _lead_axes()
_TERRITORIES = {"inferior": (1, 2, 5), "anterior": (6, 7, 8, 9), "lateral": (0, 4, 10, 11)}
ECG_COMPATIBLE = {"MI": ("STTC",), "HYP": ("STTC", "CD"), "CD": ("HYP",), "A. Fib/Aflutter": ("STTC",), "STTC": ("HYP",)}


@dataclass
class _Wave:
    offset: float  # s relative to the R peak
    width: float  # s (Gaussian sd)
    amp: float  # mV along the direction
    direction: tuple[float, float, float]
    leads: tuple[int, ...] | None = None  # restrict to these leads (regional changes)


def _beat_times(rng: np.random.Generator, hr: float, irregular: bool) -> np.ndarray:
    rr_mean = 60.0 / hr
    t = [float(rng.uniform(0.1, rr_mean))]
    while t[-1] < ECG_SECONDS + 1:
        rr = rng.gamma(16.0, rr_mean / 16.0) if irregular else rr_mean * rng.normal(1.0, 0.03)
        t.append(t[-1] + max(0.3, rr))
    return np.array(t, np.float32)


def render_ecg(
    rng: np.random.Generator,
    *,
    classes: tuple[str, ...] = ("Normal",),
    hr: float | None = None,
    st_shift: float = 0.0,
    noise_sd: float = 0.04,
) -> np.ndarray:
    """A 12-lead, 10 s, 100 Hz ECG ``[12, 1000]`` float32 (mV) showing ``classes``.

    ``hr`` overrides the heart rate, ``st_shift`` adds a global ST deviation (mV); both are used
    by the MIMIC-like patients.
    """
    cls = set(classes)
    afib = "A. Fib/Aflutter" in cls
    other_kind = int(rng.integers(3)) if "Other" in cls else -1
    if hr is None:
        hr = float(rng.uniform(55, 95))
        if afib:
            hr = float(rng.uniform(80, 130))
        if other_kind == 0:
            hr = float(rng.uniform(35, 48))
        elif other_kind == 1:
            hr = float(rng.uniform(110, 150))
    qrs = 0.012 * (2.2 if "CD" in cls else 1.0)
    r_amp = 1.1 * (2.0 if "HYP" in cls else 1.0)
    axis = np.array([0.55, 0.8, 0.25]) + rng.normal(0, 0.1, 3)
    waves = [
        _Wave(-0.03, qrs, -0.12, tuple(axis)),
        _Wave(0.0, qrs, r_amp, tuple(axis)),
        _Wave(0.035 * (1.6 if "CD" in cls else 1.0), qrs, -0.35, (0.1, 0.4, -0.9)),
        _Wave(0.3, 0.05, -0.25 if "STTC" in cls else 0.3, tuple(axis)),
    ]
    if not afib:
        waves.append(_Wave(-0.26 if "CD" in cls else -0.17, 0.025, 0.15, (0.6, 0.8, 0.1)))
    if "CD" in cls:
        waves.append(_Wave(0.045, qrs, 0.5, (-0.3, 0.0, 0.95)))  # R' in V1-V2 (bundle branch block)
    if "HYP" in cls:
        waves.append(_Wave(0.03, qrs, -0.9, (0.0, 0.0, 1.0), leads=(6, 7)))
    if "MI" in cls:
        territory = _TERRITORIES[("inferior", "anterior", "lateral")[int(rng.integers(3))]]
        waves.append(_Wave(-0.035, 0.02, -0.7, (1.0, 1.0, 1.0), leads=territory))
        waves.append(_Wave(0.14, 0.05, 0.35, (1.0, 1.0, 1.0), leads=territory))
    if "STTC" in cls:
        waves.append(_Wave(0.14, 0.05, -0.18, tuple(axis)))
    if st_shift:
        waves.append(_Wave(0.14, 0.05, st_shift, tuple(axis)))

    n = ECG_FS * ECG_SECONDS
    t = np.arange(n, dtype=np.float32) / ECG_FS
    beats = _beat_times(rng, hr, afib)
    signal = np.zeros((len(ECG_LEADS), n), np.float32)
    for w in waves:
        d = np.asarray(w.direction, np.float32)
        gain = LEAD_AXES @ (d / np.linalg.norm(d))
        if w.leads is not None:
            keep = np.zeros(len(ECG_LEADS), np.float32)
            keep[list(w.leads)] = 1.0
            gain = keep * (np.abs(gain) + 0.5)
        trace = np.exp(-0.5 * ((t[None, :] - beats[:, None] - w.offset) / w.width) ** 2).sum(0)
        signal += w.amp * gain[:, None] * trace[None, :]
    if other_kind == 2:  # premature wide beats
        for b in beats[rng.random(len(beats)) < 0.2]:
            pvc = np.exp(-0.5 * ((t - b + 0.25) / 0.04) ** 2)
            signal += 1.2 * LEAD_AXES[:, :1] * pvc[None, :]
    if afib:
        f = float(rng.uniform(5, 7))
        signal += 0.06 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, size=(len(ECG_LEADS), 1))).astype(np.float32)
    wander = 0.15 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3, size=(len(ECG_LEADS), 1)))
    signal += wander.astype(np.float32) + rng.normal(0, noise_sd, size=signal.shape).astype(np.float32)
    return signal


def _save_tensor(array: np.ndarray, path: Path) -> None:
    """Save float32 ``[leads, samples]`` as a ``.pt`` tensor (the folder must exist)."""
    import torch

    torch.save(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), path)


def _generate_ecg(out: Path, seed: int, data: dict[str, Any], imbalance: float) -> dict[str, list[dict]]:
    entries = datasets_of(ECG_DOMAIN)
    plan = plan_sizes(
        {ECG_DOMAIN: entries},
        imbalance=imbalance,
        min_domain_train=int(data["min_domain_train"]),
        min_dataset_train=int(data["min_dataset_train"]),
        test_fraction=float(data["test_fraction"]),
        min_dataset_test=int(data["min_dataset_test"]),
    )
    records: dict[str, list[dict]] = {split: [] for split in SPLITS}
    sizes_of = {"train": plan.train, "validation": plan.test, "test": plan.test}
    for entry in entries:
        probs = _class_probs(entry.dataset, entry.classes)
        problem = (
            f"<ecg>\nThis 12-lead ECG ({ECG_SECONDS} s, {ECG_FS} Hz) comes from the {entry.dataset} dataset. "
            f"Select every diagnostic class present: {', '.join(entry.classes)}. "
            "Think step by step and give the final answer in \\boxed{}."
        )
        (out / "signals" / "ecg" / _slug(entry.dataset)).mkdir(parents=True, exist_ok=True)
        for split, sizes in sizes_of.items():
            rng = _rng(seed, "ecg", entry.dataset, split)
            for i in range(sizes[entry.dataset]):
                labels = [entry.classes[int(rng.choice(len(entry.classes), p=probs))]]
                partners = ECG_COMPATIBLE.get(labels[0], ())
                if partners and rng.random() < 0.15:
                    labels.append(partners[int(rng.integers(len(partners)))])
                sig = render_ecg(rng, classes=tuple(labels), noise_sd=ECG_NOISE_SD.get(entry.dataset, 0.05))
                rel = f"signals/ecg/{_slug(entry.dataset)}/{split}_{i:05d}.pt"
                _save_tensor(sig, out / rel)
                records[split].append(
                    {
                        "problem": problem,
                        "answer": ", ".join(labels),
                        "images": [],
                        "time-series": [rel],
                        "segmentation_path": None,
                        "bbox": None,
                        "dataset": entry.dataset,
                    }
                )
    return records


# --------------------------------------------------------------------------------------------
# MIMIC-like patients
# --------------------------------------------------------------------------------------------
_LOS_QUANTILES = (0.3, 0.65, 0.88)
_IHM_QUANTILE = 0.8


def _bin(value: float, edges: tuple[float, ...], names: tuple[str, ...]) -> str:
    return names[int(np.searchsorted(np.asarray(edges), value))]


def _ehr_text(rng: np.random.Generator, a: float, b: float) -> str:
    """EHR summary of ``field_value`` words: ``a`` drives LOS-related fields, ``b`` mortality-related ones.

    Every value is one token that names its field (``lactate_high``), so a bag-of-words reader
    keeps the field of each value.
    """
    noisy = lambda v: v + rng.normal(0, 0.35)  # noqa: E731 - independent noisy readings of a latent
    fields = [
        ("age", _bin(rng.normal(0, 1), (-0.8, 0.0, 0.8), ("18_44", "45_64", "65_79", "80_plus"))),
        ("sex", ("female", "male")[int(rng.integers(2))]),
        ("admission", ("emergency", "urgent", "elective")[int(rng.integers(3))]),
        ("weekday", ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[int(rng.integers(7))]),
        ("prior_admissions", _bin(noisy(a), (-0.5, 0.6), ("none", "few", "many"))),
        ("oxygen", _bin(noisy(a), (-0.3, 0.9), ("room_air", "nasal_cannula", "high_flow"))),
        ("comorbidity", _bin(noisy(a), (-0.7, 0.0, 0.7), ("minimal", "mild", "moderate", "severe"))),
        ("lactate", _bin(noisy(b), (-0.4, 0.8), ("normal", "high", "very_high"))),
        ("gcs", _bin(noisy(b), (-0.2, 0.9), ("normal", "reduced", "low"))),
        ("systolic_bp", _bin(-noisy(b), (-0.9, 0.4), ("low", "normal", "high"))),
    ]
    return " ".join(f"{k}: {k}_{v}." for k, v in fields)


def _render_mimic_cxr(canvas: _Canvas, rng: np.random.Generator, a: float, b: float) -> np.ndarray:
    s = canvas.size
    img = canvas.backgrounds["cxr"] * np.float32(rng.uniform(0.9, 1.1))
    img = img + canvas.smooth_noise(rng, 0.05)[None]
    n_opacities = int(np.clip(round(2.0 + 1.3 * a + rng.normal(0, 0.3)), 0, 6))
    for _ in range(n_opacities):
        cx = rng.choice([0.3, 0.7]) * s + rng.uniform(-0.08, 0.08) * s
        cy = rng.uniform(0.3, 0.7) * s
        m = canvas.shape_mask("disk", cx, cy, rng.uniform(0.05, 0.08) * s)
        img[:, m] += 0.3
    effusion = float(np.clip(0.12 + 0.07 * b + rng.normal(0, 0.02), 0.0, 0.35))
    band = (canvas.yy >= (0.83 - effusion) * s) & (canvas.yy <= 0.83 * s)
    band &= (canvas.backgrounds["cxr"][0] < 0.4)
    img[:, band] += 0.35
    img = img + rng.normal(0.0, NOISE_SD * 0.6, size=img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def _generate_mimic(out: Path, seed: int, data: dict[str, Any], imbalance: float) -> dict[str, list[dict]]:
    canvas = _Canvas(int(data.get("image_size", 64)))
    sd = math.sqrt(3 + 0.16)  # sd of the sum of three unit latents and 0.4 noise
    from statistics import NormalDist

    los_edges = tuple(NormalDist(0, sd).inv_cdf(q) for q in _LOS_QUANTILES)
    ihm_edge = NormalDist(0, sd).inv_cdf(_IHM_QUANTILE)
    los_names = MIMIC_TASKS["los"]
    records: dict[str, list[dict]] = {split: [] for split in SPLITS}
    sizes = {"train": int(data["patients_train"]), "validation": int(data["patients_test"]),
             "test": int(data["patients_test"])}
    for folder in ("images/mimic", "signals/mimic"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rng = _rng(seed, "mimic", split)
        for i in range(n):
            a = rng.normal(0, 1, 3)
            b = 0.5 * a + math.sqrt(0.75) * rng.normal(0, 1, 3)  # index 0: image, 1: ECG, 2: EHR
            los = _bin(float(a.sum() + 0.4 * rng.normal()), los_edges, los_names)
            died = float(b.sum() + 0.4 * rng.normal()) > ihm_edge
            img_rel = f"images/mimic/{split}_{i:05d}.png"
            ecg_rel = f"signals/mimic/{split}_{i:05d}.pt"
            _save_png(_render_mimic_cxr(canvas, rng, float(a[0]), float(b[0])), out / img_rel)
            ecg = render_ecg(
                rng, classes=("Normal",), hr=float(np.clip(80 + 15 * a[1], 40, 160)), st_shift=float(-0.12 * b[1]), noise_sd=0.04
            )
            _save_tensor(ecg, out / ecg_rel)
            ehr = _ehr_text(rng, float(a[2]), float(b[2]))
            base = f"<image>\n<ecg>\nPatient record: {ehr}\n"
            common = {"images": [img_rel], "time-series": [ecg_rel], "segmentation_path": None, "bbox": None, "dataset": MIMIC_DATASET}
            records[split].append(
                {
                    "id": f"{split}-p{i:05d}-los",
                    "problem": base + f"Predict the length of stay: {', '.join(los_names)}. Give the answer in \\boxed{{}}.",
                    "answer": los,
                    "task": "los",
                    **common,
                }
            )
            records[split].append(
                {
                    "id": f"{split}-p{i:05d}-ihm48",
                    "problem": base + "Will the patient die in hospital within 48 hours: Yes, No? Give the answer in \\boxed{}.",
                    "answer": "Yes" if died else "No",
                    "task": "ihm48",
                    **common,
                }
            )
    return records


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
GENERATORS: dict[str, Callable[[Path, int, dict[str, Any], float], dict[str, list[dict]]]] = {
    "vision": lambda out, seed, data, imb: _generate_vision(out, seed, data, imb, lesion_only=False),
    "grounding": lambda out, seed, data, imb: _generate_vision(out, seed, data, imb, lesion_only=True),
    "ecg": _generate_ecg,
    "mimic": _generate_mimic,
}
"""Generator kinds named by a suite spec's ``data`` field (``synth:<kind>``)."""


def _write_jsonl(records: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _counts(records: list[dict], key: Callable[[dict], str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rec in records:
        k = key(rec)
        out[k] = out.get(k, 0) + 1
    return out


def generate(
    suite: str,
    out: Path | str,
    *,
    seed: int = 0,
    profile: str = "quick",
    imbalance: float = DEFAULT_IMBALANCE,
    overwrite: bool = False,
    data_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the synthetic data of ``suite`` to ``out`` (train.jsonl, validation.jsonl, test.jsonl, media).

    The validation split has the test split's sizes and its own draws (train and test do not change
    with it).

    Returns a summary: suite, seed, profile, imbalance, sample counts per split and domain,
    per dataset, the train skew (largest : smallest domain), the number of files and seconds.
    The summary is also written to ``out/synth.json``. JSONL files are written last, so a
    directory holding both is complete. Refuses to overwrite existing JSONL files unless
    ``overwrite``. ``data_overrides`` replaces entries of the profile's ``data`` sizes (e.g.
    ``{"min_domain_train": 4}``). A suite without a dataset (``runtime``) writes only
    ``synth.json``.
    """
    from rlbench_med.suites.spec import get_suite

    spec = get_suite(suite)
    data = spec.data_params(profile)
    out = Path(out)
    for name in (f"{split}.jsonl" for split in SPLITS):
        if (out / name).exists() and not overwrite:
            raise FileExistsError(f"{out / name} already exists; choose an empty directory or pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    unknown = set(data_overrides or {}) - set(data)
    if unknown:
        raise ValueError(f"suite {suite!r}: unknown data sizes {sorted(unknown)}; known: {', '.join(sorted(data))}")
    data.update(data_overrides or {})
    kind = spec.data.removeprefix("synth:")
    summary: dict[str, Any] = {"suite": suite, "data": spec.data, "seed": seed, "profile": profile, "imbalance": imbalance}
    if kind in GENERATORS:
        records = GENERATORS[kind](out, seed, data, imbalance)
        for split in SPLITS:
            _write_jsonl(records[split], out / f"{split}.jsonl")

        def domain_of(rec: dict) -> str:
            if rec.get("task"):
                return rec["task"]
            return rec["images"][0].split("/")[1] if rec["images"] else ECG_DOMAIN

        summary["counts"] = {split: _counts(records[split], domain_of) for split in records}
        summary["datasets"] = {split: _counts(records[split], lambda r: r["dataset"]) for split in records}
        train_counts = list(summary["counts"]["train"].values())
        summary["skew"] = max(train_counts) / min(train_counts)
        summary["files"] = sum(1 for p in out.rglob("*") if p.is_file() and p.suffix in (".png", ".pt"))
    elif spec.data == "none":
        summary["counts"] = {split: {} for split in SPLITS}
        summary["note"] = spec.description
    else:
        raise ValueError(f"suite {suite!r} names data {spec.data!r}, which has no generator ({', '.join(GENERATORS)})")
    summary["seconds"] = round(time.perf_counter() - start, 3)
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
