"""The files a sweep writes into its output folder: results.csv, failed.csv, config.yaml,
predictions/index.json.

The driver alone writes results.csv and failed.csv, atomically (tmp file + rename) after every
job, so an interrupted sweep keeps every finished job and the reason of every failed one.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rlbench_med.runners.base import (
    FAILED_COLUMNS,
    FAILED_CSV,
    RESULT_COLUMNS,
    RESULT_KEY,
    TEST,
    VALIDATION,
    Job,
    JobResult,
    check_result_rows,
    predictions_dir,
    read_failed,
    read_results,
    run_slug,
)
from rlbench_med.runners.sweep.calibration import calibration_key
from rlbench_med.runners.sweep.plan import Plan


class ResultsWriter:
    """Keeps results.csv complete on disk: rewritten atomically (tmp file + rename) after each job.

    Rows are checked as its readers check them (:func:`~rlbench_med.runners.base.check_result_row`),
    so the file never holds a row they would refuse. The file lists rows by ``rank`` (a job's place
    in the plan; the rows it was opened with and the floors first), then in the order they came:
    jobs that run side by side and end in any order still give the same file.
    """

    def __init__(self, path: Path, existing: Sequence[Mapping[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = [dict(r) for r in existing]
        self._ranks: list[int] = [-1] * len(self.rows)

    def check(self, rows: Sequence[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
        """``rows`` as they would be written; :class:`~rlbench_med.runners.base.ResultsError` naming
        ``where`` for a bad row or one whose key results.csv already holds."""
        seen = {tuple(r[c] for c in RESULT_KEY): f"{self.path} (already written)" for r in self.rows}
        return check_result_rows(rows, where, seen)

    def add(self, rows: Sequence[Mapping[str, Any]], where: str = "result rows", rank: int = -1) -> None:
        checked = self.check(rows, where)
        merged, ranks = [*self.rows, *checked], [*self._ranks, *[rank] * len(checked)]
        order = sorted(range(len(merged)), key=ranks.__getitem__)  # stable: equal ranks keep their order
        self.rows, self._ranks = [merged[i] for i in order], [ranks[i] for i in order]
        self.flush()

    def flush(self) -> None:
        _write_atomically(self.path, RESULT_COLUMNS, self.rows)


def _write_atomically(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` as CSV at ``path`` through a tmp file + rename: the old file stays whole if writing fails
    (a full disk), and the error names ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row[k] for k in columns})
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.replace(tmp, path)


class FailedJobs:
    """``<out>/failed.csv``: the folder's jobs that failed and have no results, with the one-line reason.

    A job that fails is added (replacing an earlier reason), one that finishes (after ``--resume``) is
    removed; the file is kept on disk after every change and deleted once no job is left in it.
    """

    def __init__(self, out_dir: Path, keep_existing: bool) -> None:
        self.path = Path(out_dir) / FAILED_CSV
        previous = read_failed(self.path) if keep_existing else []
        self.rows: dict[tuple[str, int], dict[str, Any]] = {(r["algo"], r["seed"]): r for r in previous}
        if not keep_existing and self.path.exists():
            self.path.unlink()

    def add(self, job: Job, error: str) -> None:
        self.rows[(job.algo, job.seed)] = {"suite": job.suite, "algo": job.algo, "seed": job.seed, "error": error}
        self._flush()

    def discard(self, job: Job) -> None:
        if self.rows.pop((job.algo, job.seed), None) is not None:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            _write_atomically(self.path, FAILED_COLUMNS, list(self.rows.values()))
        else:
            self.path.unlink(missing_ok=True)


def save_config(plan: Plan) -> Path:
    """Write ``<out>/config.yaml``: the resolved runner config plus what the sweep was asked to do, and
    the key its report looks its suite's calibration up by (:mod:`.calibration`); and
    ``<out>/experiment.yaml``, the experiment file that runs the sweep again (:mod:`.experiment`)."""
    from rlbench_med.runners.sweep.experiment import write_experiment

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
        "data_fingerprint": plan.data_fingerprint(),  # what --resume compares
        "data_settings": plan.data_settings.as_dict(),
        "primary_metric": plan.primary_metric,
        "calibration_key": calibration_key(plan),
        "config_sources": plan.config_sources,
        "config": plan.config_dict(),
        "score_test": plan.score_test,  # false: a tune (validation.csv; the test split untouched)
        "variants": plan.variants,  # what --resume compares (a tune's trials)
        "tuned": plan.tuned,
        "algo_settings": plan.algo_settings,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    write_experiment(plan)
    return path


def write_predictions_index(plan: Plan, results: Sequence[JobResult]) -> None:
    """``<out>/predictions/index.json``: results.csv (algo, seed) -> test predictions file (relative); and
    ``<out>/predictions/validation/index.json`` for the validation predictions."""
    test = {(label, r.job.seed): Path(pred) for r in results for label, pred in r.predictions.items()}
    if test:
        add_to_predictions_index(plan.out_dir, test)
    validation = {(label, r.job.seed): Path(pred) for r in results for label, pred in r.validation.items()}
    if validation:
        add_to_predictions_index(plan.out_dir, validation, VALIDATION)


def add_to_predictions_index(out_dir: Path, files: Mapping[tuple[str, int], Path], split: str = TEST) -> Path:
    """Add ``{(algo, seed): predictions file}`` to the split's ``index.json`` (paths relative to ``out_dir``)."""
    path = predictions_dir(out_dir, split) / "index.json"
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
    """Score the trivial floors on the records the algorithms are scored on (the first ``eval_max_samples``
    of each split): the test split's results rows (returned) and the predictions of the test and
    validation splits; for a tune (``plan.score_test`` False) the validation split's rows and
    predictions only."""
    from rlbench_med.suites import load_data
    from rlbench_med.suites.floors import floor_predictions, floor_rows, scored_records

    assert plan.data_source is not None
    data = plan.data if plan.data is not None else load_data(plan.data_source)  # the suite's records
    limit = getattr(plan.config, "eval_max_samples", 0)
    validation = floor_predictions(data.train, scored_records(data.validation, limit)) if data.validation else {}
    if validation:
        write_floor_files(plan.out_dir, validation, VALIDATION)
    if not plan.score_test:
        return floor_rows(plan.suite.name, validation) if validation else []
    floors = floor_predictions(data.train, scored_records(data.test, limit))
    write_floor_files(plan.out_dir, floors)
    return floor_rows(plan.suite.name, floors)


def write_floor_files(out_dir: Path, floors: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
                      split: str = TEST) -> None:
    """Write the predictions of the floors that answer one fixed set per record, and index them."""
    from rlbench_med.suites.floors import FILED_FLOORS, FLOOR_SEED

    files: dict[tuple[str, int], Path] = {}
    for name in (n for n in FILED_FLOORS if n in floors):
        path = predictions_dir(out_dir, split) / f"{run_slug(name, FLOOR_SEED)}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for record in floors[name][0]:
                fh.write(json.dumps(record) + "\n")
        files[(name, FLOOR_SEED)] = path
    add_to_predictions_index(out_dir, files, split)
