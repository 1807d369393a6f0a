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

from rlbench_med.runners.base import RESULT_COLUMNS, JobResult, run_slug
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
        "data_settings": plan.data_settings.as_dict(),
        "primary_metric": plan.primary_metric,
        "config_sources": plan.config_sources,
        "config": plan.config_dict(),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_predictions_index(plan: Plan, results: Sequence[JobResult]) -> Path:
    """``<out>/predictions/index.json``: results.csv (algo, seed) -> predictions file (relative)."""
    return add_to_predictions_index(
        plan.out_dir,
        {(label, r.job.seed): Path(pred) for r in results for label, pred in r.predictions.items()},
    )


def add_to_predictions_index(out_dir: Path, files: Mapping[tuple[str, int], Path]) -> Path:
    """Add ``{(algo, seed): predictions file}`` to ``<out>/predictions/index.json`` (paths kept relative)."""
    path = out_dir / "predictions" / "index.json"
    index: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for (label, seed), p in files.items():
        index[f"{label}|{seed}"] = os.path.relpath(p.resolve(), out_dir) if p.is_absolute() else str(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return path


def floor_files(out_dir: Path) -> list[Path]:
    """The floors' predictions files of an output folder (attached to the parent run)."""
    from rlbench_med.suites.floors import FILED_FLOORS, FLOOR_SEED

    paths = [out_dir / "predictions" / f"{run_slug(name, FLOOR_SEED)}.jsonl" for name in FILED_FLOORS]
    return [p for p in paths if p.is_file()]


def write_floors(plan: Plan) -> list[dict[str, Any]]:
    """Score the trivial floors on the test records the algorithms are scored on (``eval_max_samples``);
    write their predictions; return their results rows."""
    from rlbench_med.suites import load_data
    from rlbench_med.suites.floors import floor_predictions, floor_rows, scored_records

    assert plan.data_source is not None
    data = plan.data if plan.data is not None else load_data(plan.data_source)  # the suite's records
    floors = floor_predictions(data.train, scored_records(data.test, getattr(plan.config, "eval_max_samples", 0)))
    write_floor_files(plan.out_dir, floors)
    return floor_rows(plan.suite.name, floors)


def write_floor_files(out_dir: Path, floors: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> None:
    """Write the predictions of the floors that answer one fixed set per record, and index them."""
    from rlbench_med.suites.floors import FILED_FLOORS, FLOOR_SEED

    files: dict[tuple[str, int], Path] = {}
    for name in (n for n in FILED_FLOORS if n in floors):
        path = out_dir / "predictions" / f"{run_slug(name, FLOOR_SEED)}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for record in floors[name][0]:
                fh.write(json.dumps(record) + "\n")
        files[(name, FLOOR_SEED)] = path
    add_to_predictions_index(out_dir, files)
