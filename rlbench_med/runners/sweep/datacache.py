"""The data a sweep trains on: ``--data`` validated, or SynthCLIMB generated once into the cache."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench_med.locks import file_lock
from rlbench_med.runners.base import cache_dir

if TYPE_CHECKING:
    from rlbench_med.runners.sweep.plan import Plan

#: Seed of the generated SynthCLIMB data; every algorithm and seed of a sweep share the same data.
DATA_SEED = 0


def data_cache_path(suite: str, profile: str, seed: int = DATA_SEED) -> Path:
    """Where generated SynthCLIMB data of a suite lives: ``cache_dir()/data/<suite>-<profile>-seed<seed>``."""
    return cache_dir() / "data" / f"{suite}-{profile}-seed{seed}"


def data_complete(path: Path) -> bool:
    return (path / "train.jsonl").is_file() and (path / "test.jsonl").is_file()


def ensure_data(plan: Plan) -> Path | None:
    """Validate ``--data``, or generate SynthCLIMB into the cache once.

    Generation writes a temporary sibling folder and renames it, under a lock on
    ``<name>.lock``: a second sweep waits for the first instead of generating the same data,
    and temporary folders left by a generator that was killed (SIGKILL: no cleanup ran) are
    deleted, which is safe because nobody else can be generating while the lock is held.
    """
    from rlbench_med.suites import load_data, synth

    if plan.data_dir is None:
        return None
    if not plan.generates_data:
        load_data(plan.data_dir)  # raises DataError listing every problem
        return plan.data_dir
    with file_lock(plan.data_dir.with_name(plan.data_dir.name + ".lock")):
        for stale in plan.data_dir.parent.glob(glob.escape(plan.data_dir.name) + ".*"):
            if stale.is_dir():
                shutil.rmtree(stale)
        if data_complete(plan.data_dir):
            load_data(plan.data_dir)
            return plan.data_dir
        tmp = Path(tempfile.mkdtemp(prefix=plan.data_dir.name + ".", dir=plan.data_dir.parent))
        try:
            synth.generate(plan.suite.name, tmp, seed=DATA_SEED, profile=plan.profile)
            if plan.data_dir.exists():
                shutil.rmtree(plan.data_dir)  # an incomplete earlier attempt
            os.replace(tmp, plan.data_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return plan.data_dir
