"""Resumable checkpoints: model, optimizer(s), RNG states, estimator state and step.

Everything is stored as tensors, numbers, strings, lists and dicts, so a checkpoint loads with
``torch.load(path, weights_only=True)``. Files are written to a temporary name and renamed, so a
run killed mid-save leaves the previous checkpoint intact. A file damaged anyway (a full disk,
a copy cut short) is named by :func:`read_torch_file`, and :func:`latest_readable_checkpoint`
falls back to the previous checkpoint.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step(\d+)\.pt$")
log = logging.getLogger(__name__)


class UnreadableFile(OSError):
    """A torch file that does not load (truncated, not a torch file); the message names it."""


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


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``directory``, highest step first."""
    if not directory.is_dir():
        return []
    return sorted(((int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))), reverse=True)


def read_torch_file(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; a damaged file raises :class:`UnreadableFile` naming it.

    ``mmap=True`` maps the tensors instead of reading them: enough to know the file is whole
    (a truncated zip has no central directory) at a fraction of the cost.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise UnreadableFile(f"{path} is unreadable (truncated or not a torch file: {reason})") from None


def latest_readable_checkpoint(directory: Path, *, mmap: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of ``directory`` that loads, and its state; ``None`` when none does.

    Each unreadable checkpoint is named in a warning and the one before it is tried.
    """
    for _, path in _checkpoints(directory):
        try:
            return path, read_torch_file(path, mmap=mmap)
        except UnreadableFile as exc:
            log.warning("checkpoint %s; trying the previous checkpoint", exc)
    return None
