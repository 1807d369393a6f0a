"""Sweeps read back for ``compare`` and ``leaderboard``: from an output folder or from MLflow.

A *source* on the command line is one of

- an output folder of ``rlbench-med run`` (it holds results.csv, predictions/ and config.yaml);
  its learning curves come from the tracking store when the store holds that folder's sweep;
- an MLflow experiment (``rlbench-med/climb_vision``): its latest sweep;
- an MLflow sweep (parent) run id;

optionally named for the tables as ``NAME=SOURCE`` (default: the folder's or run's name).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlbench_med.reports.results import ResultsError, load_results
from rlbench_med.reports.tracking import (
    Curves,
    TrackingError,
    fetch_curves,
    find_parent_run,
    rebuild_results,
    sweep_of_folder,
    try_run,
)


@dataclass
class Sweep:
    """One sweep's results, predictions folder and config, wherever they were read from."""

    name: str
    origin: str
    suite: str
    rows: list[dict[str, Any]]
    folder: Path  # holds predictions/ (and its index.json)
    config: dict[str, Any] = field(default_factory=dict)  # config.yaml's document ({} when unknown)
    curves: Curves | None = None

    @property
    def primary(self) -> str | None:
        return self.config.get("primary_metric") or None

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(str(r["algo"]) for r in self.rows))

    def seeds(self, label: str) -> list[int]:
        return sorted({int(r["seed"]) for r in self.rows if r["algo"] == label})


def split_source(text: str) -> tuple[str | None, str]:
    """``"name=SOURCE"`` -> ``("name", "SOURCE")``; a plain source (or an existing path holding ``=``) has no name."""
    name, eq, rest = text.partition("=")
    if eq and name and "/" not in name and not Path(text).exists():
        return name, rest
    return None, text


def load_sweep(text: str, uri: str, scratch: Path) -> Sweep:
    """Read one source (module docstring); MLflow sources are downloaded under ``scratch``."""
    name, source = split_source(text)
    folder = Path(source)
    if folder.is_dir():
        rows = load_results(folder / "results.csv")
        if not rows:
            raise ResultsError(f"{folder / 'results.csv'} has no rows (no job of that run finished); nothing to compare")
        saved = folder / "config.yaml"
        config = (yaml.safe_load(saved.read_text()) or {}) if saved.is_file() else {}
        parent = sweep_of_folder(uri, folder)
        return Sweep(name or folder.resolve().name, f"folder {folder}", str(rows[0]["suite"]), rows, folder, config,
                     fetch_curves(uri, parent) if parent is not None else None)
    parent = _mlflow_sweep(source, uri)
    dest = scratch / parent.info.run_id
    rows, curves = rebuild_results(uri, parent, dest)
    config = parent_config(uri, parent, dest)
    when = _dt.datetime.fromtimestamp(parent.info.start_time / 1000).isoformat(timespec="minutes")
    return Sweep(name or parent.info.run_name or parent.info.run_id[:8],
                 f"MLflow run {parent.info.run_id} ({parent.info.run_name}, started {when})",
                 parent.data.tags.get("rlbench.suite", str(rows[0]["suite"]) if rows else ""), rows, dest, config, curves)


def _mlflow_sweep(source: str, uri: str) -> Any:
    """The sweep run a source names: an experiment's latest sweep, or a run id."""
    names = [source] if source.startswith("rlbench-med/") else [f"rlbench-med/{source}", source]
    for experiment in names:
        try:
            return find_parent_run(uri, experiment)
        except TrackingError as exc:
            if "no experiment" not in str(exc):
                raise
    run = try_run(uri, source)
    if run is None:
        raise TrackingError(f"{source}: not a folder holding results.csv, an experiment or a run id in {uri}")
    if run.data.tags.get("rlbench.role") != "sweep":
        raise TrackingError(f"{source}: run {run.info.run_name} is a job's run, not a sweep's; give its parent run "
                            f"({run.data.tags.get('mlflow.parentRunId', '?')})")
    return run


def parent_config(uri: str, parent: Any, dest: Path) -> dict[str, Any]:
    """The sweep's config.yaml (attached to its parent run), or {} when absent."""
    from rlbench_med.reports.tracking import client_for

    client = client_for(uri)
    if "config.yaml" not in {a.path for a in client.list_artifacts(parent.info.run_id)}:
        return {}
    path = Path(client.download_artifacts(parent.info.run_id, "config.yaml", str(dest)))
    return yaml.safe_load(path.read_text()) or {}


def load_sweeps(sources: Sequence[str], uri: str, scratch: Path) -> list[Sweep]:
    """Every source, with names made unique (``s1``, ``s1-2``)."""
    sweeps = []
    seen: set[str] = set()
    for text in sources:
        sweep = load_sweep(text, uri, scratch)
        base, k = sweep.name, 2
        while sweep.name in seen:
            sweep.name = f"{base}-{k}"
            k += 1
        seen.add(sweep.name)
        sweeps.append(sweep)
    return sweeps
