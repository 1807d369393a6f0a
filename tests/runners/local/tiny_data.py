"""A tiny data directory in the CLIMB export format, written in a few milliseconds for tests.

Three catalogue datasets: CMMD (mammography, images with lesion masks), BUSI (ultrasound,
images with boxes) and PTB-XL (ecg, 12-lead ``.pt`` signals). The class of an image sample sets
the colour of a square patch at a random place (the patch is the lesion region); the class of
a signal sample sets the frequency of its leads, so a policy can learn both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATASETS = {
    "CMMD": ("mammography", ("Benign", "Malignant")),
    "BUSI": ("ultrasound", ("Normal", "Malignant", "Benign")),
    "PTB-XL": ("ecg", ("Normal", "CD", "HYP", "MI", "STTC", "A. Fib/Aflutter", "Other")),
}
COLOURS = ((230, 40, 40), (40, 230, 40), (40, 40, 230))


def write_tiny_data(root: Path, *, n_train: int = 48, n_test: int = 24, n_validation: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test), ("validation", n_validation)):
        lines = []
        for i in range(n):
            dataset = list(DATASETS)[i % 3]
            domain, classes = DATASETS[dataset]
            k = int(rng.integers(0, min(3, len(classes))))
            rec: dict = {"problem": f"<image> What is the {domain} finding in this {dataset} study?",
                         "answer": classes[k], "dataset": dataset, "id": f"{split}-{i}"}
            if domain == "ecg":
                t = np.linspace(0, 1, 200, dtype=np.float32)
                sig = np.sin(2 * np.pi * (3 + 6 * k) * t)[None].repeat(12, 0) + 0.1 * rng.standard_normal((12, 200))
                path = root / "signals" / f"{split}{i}.pt"
                path.parent.mkdir(exist_ok=True)
                torch.save(torch.tensor(sig, dtype=torch.float32), path)
                rec["time-series"] = [f"signals/{split}{i}.pt"]
            else:
                img = np.full((48, 48, 3), 90, dtype=np.uint8)
                x, y = (int(v) for v in rng.integers(0, 32, 2))
                img[y : y + 16, x : x + 16] = COLOURS[k]
                (root / "images").mkdir(exist_ok=True)
                Image.fromarray(img).save(root / "images" / f"{split}{i}.png")
                rec["images"] = [f"images/{split}{i}.png"]
                if dataset == "CMMD":
                    mask = np.zeros((48, 48), dtype=np.uint8)
                    mask[y : y + 16, x : x + 16] = 255
                    (root / "masks").mkdir(exist_ok=True)
                    Image.fromarray(mask).save(root / "masks" / f"{split}{i}.png")
                    rec["segmentation_path"] = f"masks/{split}{i}.png"
                else:
                    rec["bbox"] = [x, y, x + 16, y + 16]
            lines.append(json.dumps(rec))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root
