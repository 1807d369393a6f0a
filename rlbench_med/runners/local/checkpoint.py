"""Resumable checkpoints: model, optimizer(s), RNG states, estimator state and step.

Everything is stored as tensors, numbers, strings, lists and dicts, so a checkpoint loads with
``torch.load(path, weights_only=True)``. Files are written to a temporary name and renamed, so a
run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step(\d+)\.pt$")


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The run's generator plus the global torch, numpy and python RNG states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "state": list(state), "gauss": gauss},
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``directory/step<step>.pt`` atomically and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step{step}.pt"
    tmp = directory / f".step{step}.pt.tmp"
    torch.save({**state, "step": step}, tmp)
    os.replace(tmp, path)
    return path


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or ``None``."""
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
