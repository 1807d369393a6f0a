"""Where calibrations are kept: a suite's measured sensitivity, for one data, config and code version.

``rlbench-med calibrate`` trains reference estimators and the controls and stores what it found
(``cache_dir()/calibration/<key>.json``, the latest one per key). Every sweep computes the same key
(:func:`calibration_key`) and writes it to its ``config.yaml``, so its report shows the latest
calibration of the same suite, data, runner config and code, or says that none exists.

The key is a sha256 over the suite, the runner, the data fingerprint (as the job cache's), the
resolved runner config (every field but ``progress``) and the package's code version
(:func:`~rlbench_med.runners.sweep.jobcache.code_version`, plugins aside): the settings under which
the controls were measured. Seeds and algorithms are not part of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rlbench_med.runners.base import cache_dir
from rlbench_med.runners.sweep.jobcache import NOT_RESULT_FIELDS, code_version
from rlbench_med.runners.sweep.plan import Plan
from rlbench_med.typed_config import to_plain_dict


def calibration_dir() -> Path:
    """``cache_dir()/calibration``."""
    return cache_dir() / "calibration"


def calibration_key(plan: Plan) -> str | None:
    """The key of the plan's settings (module docstring); None for a suite without data."""
    if plan.data_source is None:
        return None
    config = {k: v for k, v in to_plain_dict(plan.config).items() if k not in NOT_RESULT_FIELDS}
    doc = {"suite": plan.suite.name, "runner": plan.runner.name, "data": plan.data_source.fingerprint(),
           "config": config, "code": code_version()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def store_calibration(key: str, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as the latest calibration of ``key`` (atomically)."""
    path = calibration_dir() / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)
    return path


class DamagedCalibration(ValueError):
    """A stored calibration that cannot be read (the message names the file)."""


def find_calibration(key: str | None) -> dict[str, Any] | None:
    """The latest calibration stored under ``key``; None when there is none.

    Raises :class:`DamagedCalibration` naming the file when it exists but cannot be read.
    """
    if not key:
        return None
    path = calibration_dir() / f"{key}.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DamagedCalibration(f"{path} cannot be read ({type(exc).__name__}); run rlbench-med calibrate again") from None
    if not isinstance(doc, dict):
        raise DamagedCalibration(f"{path} is not a calibration record; run rlbench-med calibrate again")
    return doc
