"""The data a sweep trains on: ``--data`` validated, or SynthCLIMB generated once into the cache.

Either way the jobs read it through a data source file (:class:`~rlbench_med.suites.data.DataSource`,
``cache_dir()/data/sources/<suite>-<hash>.source.json``): the split files plus the suite's record
selection, so a suite trains only on its own domains.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from rlbench_med.locks import file_lock
from rlbench_med.runners.base import cache_dir
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.runners.sweep.settings import DataSettings

#: What ``tempfile.mkdtemp(prefix=name + ".")`` appends: only such folders are a killed generator's.
_TEMP_SUFFIX = re.compile(r"\.[a-z0-9_]{8}")
#: Default seed of the generated SynthCLIMB data (``--set data.seed=K`` picks another); every algorithm
#: and seed of a sweep share the same data.
DATA_SEED = 0


def data_cache_path(suite: str, profile: str, settings: DataSettings | None = None) -> Path:
    """Where generated SynthCLIMB data lives: ``cache_dir()/data/<suite>-<profile>-seed<seed>[-imb<x>...]-<key>``.

    ``<key>`` hashes everything the generator reads (the suite's data kind, the profile's sizes with
    the ``data.<size>`` overrides, imbalance and seed), so other settings, or a profile whose sizes
    changed in a newer version, never reuse (or overwrite) this data.
    """
    from rlbench_med.suites import get_suite

    settings = settings or DataSettings()
    spec = get_suite(suite)
    sizes = {**spec.data_params(profile), **dict(settings.sizes)}
    blob = json.dumps({"data": spec.data, "sizes": sizes, "imbalance": settings.imbalance, "seed": settings.seed},
                      sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()[:8]
    return cache_dir() / "data" / f"{suite}-{profile}-{settings.cache_suffix()}-{key}"


def source_folder() -> Path:
    """Where data source files live: ``cache_dir()/data/sources``."""
    return cache_dir() / "data" / "sources"


def data_complete(path: Path) -> bool:
    """Whether generated data is whole (SynthCLIMB writes every split file, JSONL files last)."""
    from rlbench_med.suites.source import SPLITS

    return all((path / f"{split}.jsonl").is_file() for split in SPLITS)


def ensure_data(plan: Plan) -> Path | None:
    """Validate ``--data``, or generate SynthCLIMB into the cache once.

    Generation writes a temporary sibling folder and renames it, under a lock on
    ``<name>.lock``: a second sweep waits for the first instead of generating the same data,
    and temporary folders left by a generator that was killed (SIGKILL: no cleanup ran) are
    deleted, which is safe because nobody else can be generating while the lock is held.
    """
    from rlbench_med.suites import load_data, synth

    if plan.data_dir is None or plan.data_source is None:
        return None
    if not plan.generates_data:
        plan.data = load_data(plan.data_source)  # raises DataError listing every problem
        plan.data_source.save(source_folder())
        return plan.data_dir
    with file_lock(plan.data_dir.with_name(plan.data_dir.name + ".lock")):
        for stale in plan.data_dir.parent.glob(glob.escape(plan.data_dir.name) + ".*"):
            if stale.is_dir() and _TEMP_SUFFIX.fullmatch(stale.name[len(plan.data_dir.name):]):
                shutil.rmtree(stale)
        if not data_complete(plan.data_dir):
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
        plan.data = load_data(plan.data_source)  # raises DataError listing every problem
    plan.data_source.save(source_folder())
    return plan.data_dir
