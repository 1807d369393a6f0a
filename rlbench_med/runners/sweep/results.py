"""The files a sweep writes into its output folder: results.csv, config.yaml, predictions/index.json.

The driver alone writes results.csv, atomically (tmp file + rename) after every job, so an
interrupted sweep keeps every finished job.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rlbench_med.runners.base import RESULT_COLUMNS, JobResult
from rlbench_med.runners.sweep.request import SweepError

if TYPE_CHECKING:
    from rlbench_med.runners.sweep.plan import Plan


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.csv (values as strings except seed/value/n); checks the header."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise SweepError(f"{path}: header {reader.fieldnames} is not {','.join(RESULT_COLUMNS)}")
        return [
            {**row, "seed": int(row["seed"]), "value": float(row["value"]), "n": int(row["n"])} for row in reader
        ]


class ResultsWriter:
    """Keeps results.csv complete on disk: rewritten atomically (tmp file + rename) after each job."""

    def __init__(self, path: Path, existing: Sequence[Mapping[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = [dict(r) for r in existing]

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            if set(row) != set(RESULT_COLUMNS):
                raise SweepError(f"result row {dict(row)} does not have exactly the columns {','.join(RESULT_COLUMNS)}")
        self.rows.extend(dict(r) for r in rows)
        self.flush()

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: row[k] for k in RESULT_COLUMNS})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def save_config(plan: Plan) -> Path:
    """Write ``<out>/config.yaml``: the resolved runner config plus what the sweep was asked to do."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    path = plan.out_dir / "config.yaml"
    doc = {
        "suite": plan.suite.name,
        "profile": plan.profile,
        "runner": plan.runner.name,
        "executor": plan.executor,
        "algos": plan.algos,
        "estimators": list(dict.fromkeys(j.estimator for j in plan.jobs)),
        "seeds": plan.seeds,
        "data": str(plan.data_dir) if plan.data_dir else None,
        "config_sources": plan.config_sources,
        "config": plan.config_dict(),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_predictions_index(plan: Plan, results: Sequence[JobResult]) -> Path:
    """``<out>/predictions/index.json``: results.csv (algo, seed) -> predictions file (relative)."""
    path = plan.out_dir / "predictions" / "index.json"
    index: dict[str, str] = {}
    if path.exists():
        index = json.loads(path.read_text())
    for result in results:
        for label, pred in result.predictions.items():
            p = Path(pred)
            rel = os.path.relpath(p.resolve(), plan.out_dir) if p.is_absolute() else str(p)
            index[f"{label}|{result.job.seed}"] = rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return path
