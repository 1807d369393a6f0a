"""The data a sweep trains on: ``--data`` validated, or SynthCLIMB generated once into the cache.

Either way the jobs read it through a data source file (:class:`~rlbench_med.suites.data.DataSource`,
``cache_dir()/data/sources/<suite>-<hash>.source.json``): the split files plus the suite's record
selection, so a suite trains only on its own domains.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench_med.runners.base import cache_dir
from rlbench_med.runners.sweep.settings import DataSettings

if TYPE_CHECKING:
    from rlbench_med.runners.sweep.plan import Plan

#: Default seed of the generated SynthCLIMB data (``--set data.seed=K`` picks another); every algorithm
#: and seed of a sweep share the same data.
DATA_SEED = 0


def data_cache_path(suite: str, profile: str, settings: DataSettings | None = None) -> Path:
    """Where generated SynthCLIMB data lives: ``cache_dir()/data/<suite>-<profile>-seed<seed>[-imb<x>]``.

    Every generator setting is in the name, so other settings never reuse (or overwrite) this data.
    """
    settings = settings or DataSettings()
    return cache_dir() / "data" / f"{suite}-{profile}-{settings.cache_suffix()}"


def source_folder() -> Path:
    """Where data source files live: ``cache_dir()/data/sources``."""
    return cache_dir() / "data" / "sources"


def data_complete(path: Path) -> bool:
    return (path / "train.jsonl").is_file() and (path / "test.jsonl").is_file()


def ensure_data(plan: Plan) -> Path | None:
    """Validate ``--data`` or generate SynthCLIMB into the cache (atomically: a tmp folder renamed),
    then write the jobs' data source file."""
    from rlbench_med.suites import load_data, synth

    if plan.data_dir is None or plan.data_source is None:
        return None
    if data_complete(plan.data_dir) or not plan.generates_data:
        load_data(plan.data_source)  # raises DataError listing every problem
        plan.data_source.save(source_folder())
        return plan.data_dir
    plan.data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=plan.data_dir.name + ".", dir=plan.data_dir.parent))
    try:
        synth.generate(plan.suite.name, tmp, seed=plan.data_settings.seed, profile=plan.profile,
                       imbalance=plan.data_settings.imbalance, data_overrides=dict(plan.data_settings.sizes))
        if plan.data_dir.exists():
            shutil.rmtree(plan.data_dir)  # an incomplete earlier attempt
        os.replace(tmp, plan.data_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    plan.data_source.save(source_folder())
    return plan.data_dir


# --------------------------------------------------------------------------------------------
