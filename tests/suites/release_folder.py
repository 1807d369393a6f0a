"""A hand-built data folder in the QoQ-Med release's own format, for loader and end-to-end tests.

Written as the release's records are (``verl/utils/dataset.py`` of QoQ_Med 97f7f3d): no
``dataset`` or ``domain`` on vision records (both come from ``<domain folder>/<dataset folder>/``
of the first image or video path), CLIMB's label strings, answers joined with ", ", " and " or
" & ", ``bbox [0, 0, 0, 0]`` for "no box", a mask smaller than its image, a mask with no
foreground, a CT volume as an ``.mp4`` written with OpenCV's own writer, ECG as ``.pt`` tensors,
the two MIMIC-IV tasks recognised by their prompts, and an unknown CLIMB folder (endoscopic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

VIDEO_SIZE = (32, 24)  # (W, H)
VIDEO_LEVELS = (10, 45, 80, 115, 150, 185, 220)  # grey level of each frame, in order


def _png(root: Path, rel: str, size: tuple[int, int], value: int = 90) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(rel))
    arr = np.clip(value + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def _mask(root: Path, rel: str, array: np.ndarray) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8) * 255).save(path)


def _video(root: Path, rel: str, levels: tuple[int, ...]) -> None:
    import cv2

    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, VIDEO_SIZE)
    for level in levels:
        writer.write(np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), level, np.uint8))
    writer.release()


def _ecg(root: Path, rel: str, seed: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.linspace(0, 5, 500, dtype=np.float32)
    sig = np.sin(2 * np.pi * (1 + seed) * t)[None].repeat(12, 0) + 0.05 * np.random.default_rng(seed).standard_normal((12, 500))
    torch.save(torch.tensor(sig, dtype=torch.float32), path)


SMALL_MASK = np.zeros((10, 12), bool)  # [H, W]: half the 24x20 image, resized x2 by the loader
SMALL_MASK[2:5, 3:7] = True


def write_release_folder(root: Path) -> Path:
    """Write the folder; returns ``root``. Records are listed in the docstring of each split below."""
    root.mkdir(parents=True, exist_ok=True)
    media = {
        "chest_xray/chexpert_full/train/p1/view1.png": (40, 30),
        "chest_xray/chexpert_full/valid/p2/view1.png": (40, 30),
        "chest_xray/mimic-cxr/files/p10/s1.png": (40, 30),
        "chest_xray/vindr/a.png": (36, 36),
        "mammo/vindr/jpegs/s1/i1.png": (30, 40),
        "mammo/vindr/jpegs/s2/i1.png": (30, 40),
        "derm/ham10000/ISIC_1.png": (24, 20),
        "derm/ham10000/ISIC_2.png": (24, 20),
        "derm/ham10000/ISIC_3.png": (24, 20),
        "fundus/aptos/train_images/x1.png": (32, 32),
        "fundus/aptos/train_images/x2.png": (32, 32),
        "ultrasound/busi/benign/b1.png": (16, 16),
        "ultrasound/busi/malignant/m1.png": (16, 16),
        "endoscopic/cholec80/f1.png": (20, 20),
        "endoscopic/cholec80/f2.png": (20, 20),
        "multimodal/mimic/cxr1.png": (32, 32),
    }
    for i, (rel, size) in enumerate(media.items()):
        _png(root, rel, size, 40 + 10 * i)
    _mask(root, "derm/ham10000/ISIC_1_mask.png", SMALL_MASK)
    _mask(root, "ultrasound/busi/benign/b1_mask.png", np.zeros((16, 16), bool))
    _video(root, "ct/kits23/dataset/case_00001/imaging.mp4", VIDEO_LEVELS)
    _video(root, "ct/kits23/dataset/case_00002/imaging.mp4", VIDEO_LEVELS[::-1])
    for i, rel in enumerate(("ecg/ptbxl/r1.pt", "ecg/ptbxl/r2.pt", "ecg/mimic/e1.pt")):
        _ecg(root, rel, i)
    ehr = "Age 71. Lactate high. Creatinine normal."
    train = [
        {"problem": "<image>\nWhich findings?", "answer": "Cardiomegaly, Edema",
         "images": ["chest_xray/chexpert_full/train/p1/view1.png"]},
        {"problem": "<image>\nWhich findings?", "answer": "Edema & Pneumonia",
         "images": ["chest_xray/mimic-cxr/files/p10/s1.png"], "bbox": [2, 3, 20, 15]},
        {"problem": "<image>\nWhich findings?", "answer": "No Finding", "images": ["chest_xray/vindr/a.png"]},
        {"problem": "<image>\nBI-RADS category?", "answer": "BIRAD 4", "images": ["mammo/vindr/jpegs/s1/i1.png"],
         "bbox": [0, 0, 0, 0]},
        {"problem": "<image>\nLesion type?", "answer": "Melanoma", "images": ["derm/ham10000/ISIC_1.png"],
         "segmentation_path": "derm/ham10000/ISIC_1_mask.png"},
        {"problem": "<image>\nLesion type?", "answer": "MEL", "images": ["derm/ham10000/ISIC_2.png"]},
        {"problem": "<image>\nDR grade?", "answer": "Mild DR", "images": ["fundus/aptos/train_images/x1.png"]},
        {"problem": "<image>\nTumour?", "answer": "Benign", "images": ["ultrasound/busi/benign/b1.png"],
         "segmentation_path": "ultrasound/busi/benign/b1_mask.png", "bbox": [1, 1, 9, 9]},
        {"problem": "<video>\nIs the renal mass benign or malignant?", "answer": "Malignant", "images": [],
         "videos": ["ct/kits23/dataset/case_00001/imaging.mp4"]},
        {"problem": "<image>\nSurgical phase?", "answer": "Calot Triangle Dissection",
         "images": ["endoscopic/cholec80/f1.png"]},
        {"problem": "<ecg>\nRhythm?", "answer": "MI and STTC", "images": [], "time-series": ["ecg/ptbxl/r1.pt"],
         "dataset": "PTB-XL"},
        {"problem": f"<image>\n{ehr} Will the patient survive for at least 48 hours?", "answer": "Yes",
         "images": ["multimodal/mimic/cxr1.png"], "time-series": ["ecg/mimic/e1.pt"]},
        {"problem": f"<image>\n{ehr} How long will the patient stay in the hospital?", "answer": "3 to 7 days",
         "images": ["multimodal/mimic/cxr1.png"], "time-series": ["ecg/mimic/e1.pt"]},
    ]
    test = [
        {"problem": "<image>\nWhich findings?", "answer": "Pleural Effusion",
         "images": ["chest_xray/chexpert_full/valid/p2/view1.png"]},
        {"problem": "<image>\nBI-RADS category?", "answer": "BIRAD 2", "images": ["mammo/vindr/jpegs/s2/i1.png"]},
        {"problem": "<image>\nLesion type?", "answer": "Nevus", "images": ["derm/ham10000/ISIC_3.png"]},
        {"problem": "<image>\nDR grade?", "answer": "No DR", "images": ["fundus/aptos/train_images/x2.png"]},
        {"problem": "<image>\nTumour?", "answer": "Malignant", "images": ["ultrasound/busi/malignant/m1.png"]},
        {"problem": "<video>\nIs the renal mass benign or malignant?", "answer": "Benign", "images": [],
         "videos": ["ct/kits23/dataset/case_00002/imaging.mp4"]},
        {"problem": "<image>\nSurgical phase?", "answer": "Clipping Cutting", "images": ["endoscopic/cholec80/f2.png"]},
        {"problem": "<ecg>\nRhythm?", "answer": "Normal", "images": [], "time-series": ["ecg/ptbxl/r2.pt"],
         "dataset": "PTB-XL"},
    ]
    for name, records in (("train", train), ("test", test)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root
