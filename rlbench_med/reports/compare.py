"""``rlbench-med compare``: several sweeps of one suite -> one report, paired where seeds match.

The sweeps must be of the same suite and evaluated on the same held-out records (the truth of
every dataset, record by record); otherwise the comparison is refused with the reason. Then
:func:`combine` puts their algorithms side by side:

- sweeps of **one setting** (the same runner config, and the same results on every (algorithm,
  seed) two of them share: a repeated or reused job) are pooled: an algorithm keeps its name, its
  seeds come from every sweep that ran it (a seed in several sweeps counts once), and algorithms
  of different sweeps are compared as if one sweep had run them;
- otherwise every trained algorithm is named by its sweep, ``grpo (s1)``, ``grpo (s2)`` (the notes
  say why: the config keys that differ, or the first run whose results differ, i.e. other code),
  and is compared with the baseline of its own sweep and with the same algorithm of the first
  sweep that ran it (``grpo (s2) − grpo (s1)``), never across settings otherwise;
- ``base`` and the floors are merged when their results are identical, else named per sweep.

Comparisons are paired by seed, with the intervals of :mod:`.stats`
(:func:`~rlbench_med.reports.report.make_report`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlbench_med.reports.results import Label, is_reference, predictions_path, split_label
from rlbench_med.reports.stats import ComparisonError, EvaluationSet, read_predictions
from rlbench_med.reports.sweeps import Sweep
from rlbench_med.reports.tracking import Curves, flatten
from rlbench_med.runners.base import run_slug

RowKey = tuple[int, str, str]  # (seed, domain, metric)


@dataclass
class Combined:
    """The sweeps' rows under their combined labels, where each (label, seed) run's predictions are,
    their curves and what was merged or named per sweep."""

    suite: str
    rows: list[dict[str, Any]]
    predictions: dict[tuple[str, int], Path]
    curves: Curves
    notes: list[str] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)


def check_comparable(sweeps: Sequence[Sweep]) -> None:
    """Raise :class:`ComparisonError` (one line) unless the sweeps share one suite and one test set."""
    if not sweeps:
        raise ComparisonError("no sweep to compare; give output folders, experiments or sweep run ids")
    suites = {s.suite for s in sweeps}
    if len(suites) > 1:
        raise ComparisonError("compare needs sweeps of one suite: " + ", ".join(f"{s.name} is {s.suite}" for s in sweeps)
                              + " (rlbench-med leaderboard puts suites side by side)")
    reference: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for sweep in sweeps:
        records = _any_predictions(sweep)
        if records is None:
            raise ComparisonError(f"{sweep.name} ({sweep.origin}) has no predictions file, so its test records "
                                  "cannot be checked")
        reference[(sweep.name, 0)] = records
    evalset = EvaluationSet.from_runs(reference, n_boot=1)
    for (name, _), why in evalset.excluded.items():
        first = next(iter(reference))[0]
        raise ComparisonError(f"{name} and {first} were not evaluated on the same test records: {why}")


def _any_predictions(sweep: Sweep) -> list[dict[str, Any]] | None:
    for label in sweep.labels:
        for seed in sweep.seeds(label):
            path = predictions_path(sweep.folder, label, seed)
            if path is not None:
                return read_predictions(path)
    return None


def _rows_by_seed(sweep: Sweep, label: str) -> dict[RowKey, float]:
    return {(int(r["seed"]), str(r["domain"]), str(r["metric"])): float(r["value"]) for r in sweep.rows
            if r["algo"] == label}


def _runner_config(sweep: Sweep) -> dict[str, str]:
    doc = sweep.config
    return flatten({"runner": doc.get("runner", "?"), **(doc.get("config") or {})})


def _why_apart(sweeps: Sequence[Sweep], labels: Sequence[str]) -> str | None:
    """Why the sweeps' runs of ``labels`` are not one setting, or None when they are: the runner
    configs of the sweeps (trained algorithms), then the results of every (label, seed) two sweeps share."""
    first = sweeps[0]
    for other in sweeps[1:]:
        if any(not is_reference(label) for label in labels):
            if not first.config or not other.config:
                return f"the config of {(first if not first.config else other).name} is unknown"
            a, b = _runner_config(first), _runner_config(other)
            differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if differ:
                shown = ", ".join(f"{k} {a.get(k, '-')} vs {b.get(k, '-')}" for k in differ[:4])
                return f"config differs between {first.name} and {other.name}: {shown}" + (" ..." if len(differ) > 4 else "")
    for label in labels:
        holders = [s for s in sweeps if label in s.labels]
        rows = [_rows_by_seed(s, label) for s in holders]
        for i in range(1, len(holders)):
            shared = sorted({k[0] for k in rows[0]} & {k[0] for k in rows[i]})
            if is_reference(label) and not shared:
                return f"{holders[0].name} and {holders[i].name} evaluated {label} with different seeds"
            for seed in shared:
                keys = {k for k in rows[0] if k[0] == seed} | {k for k in rows[i] if k[0] == seed}
                if any(rows[0].get(k) != rows[i].get(k) for k in keys):
                    return (f"{label} seed {seed} has other results in {holders[i].name} than in {holders[0].name}"
                            + ("" if is_reference(label) else " with the same config (other code, or another machine)"))
    return None


def combine(sweeps: Sequence[Sweep]) -> Combined:
    """The sweeps side by side (module docstring); call :func:`check_comparable` first."""
    combined = Combined(sweeps[0].suite, [], {}, {},
                        sources=[{"name": s.name, "origin": s.origin} for s in sweeps])
    labels = list(dict.fromkeys(label for s in sweeps for label in s.labels))
    trained = [label for label in labels if not is_reference(label)]
    apart = _why_apart(sweeps, trained) if len(sweeps) > 1 else None
    if apart is not None:
        combined.notes.append(f"Each sweep's algorithms are named by their sweep, e.g. {trained[0]} "
                              f"({sweeps[0].name}), and compared with each other: {apart}.")
    pooled: list[str] = []
    for label in labels:
        holders = [s for s in sweeps if label in s.labels]
        if is_reference(label):
            why = _why_apart(holders, [label]) if len(holders) > 1 else None
            if why is not None:
                combined.notes.append(f"{label}: shown per sweep ({why}).")
        else:
            why = apart
        if why is None and len(holders) > 1:
            pooled.append(label)
        taken: set[int] = set()
        for sweep in holders:
            new = label if why is None else str(_qualified(label, sweep.name))
            for seed in sweep.seeds(label):
                if seed in taken and why is None:
                    continue
                taken.add(seed)
                combined.rows += [{**r, "algo": new} for r in sweep.rows if r["algo"] == label and int(r["seed"]) == seed]
                path = predictions_path(sweep.folder, label, seed)
                if path is not None:
                    combined.predictions[(new, seed)] = path
                if sweep.curves and (label, seed) in sweep.curves:
                    combined.curves[(new, seed)] = dict(sweep.curves[(label, seed)])
    if pooled:
        combined.notes.insert(0, f"{', '.join(pooled)}: the same in every sweep that ran them (same config, same "
                                 "results on the seeds they share): their seeds are pooled, a seed in several sweeps "
                                 "counted once.")
    missing = [s.name for s in sweeps if not s.curves]
    if missing:
        combined.notes.append(f"No learning curves for {', '.join(missing)}: the tracking store holds no sweep for "
                              "that folder.")
    return combined


def _qualified(label: str, sweep: str) -> Label:
    """``label`` of sweep ``sweep`` (parentheses in the sweep's name would break the label's grammar); a
    label that names its setting already (``grpo (tuned)`` of ``run --tuned``) keeps it: ``grpo (tuned, s2)``."""
    parts = split_label(label)
    name = sweep.replace("(", "_").replace(")", "_")
    return replace(parts, sweep=f"{parts.sweep}, {name}" if parts.sweep else name)


def write_combined(combined: Combined, out: Path) -> Path:
    """``out/results.csv``, ``out/predictions/`` (copies, with ``index.json``) and ``out/sources.json``."""
    from rlbench_med.runners.sweep import ResultsWriter

    pred_dir = out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    for (label, seed), src in combined.predictions.items():
        dest = pred_dir / f"{run_slug(label, seed)}.jsonl"
        shutil.copyfile(src, dest)
        index[f"{label}|{seed}"] = str(Path("predictions") / dest.name)
    (pred_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    (out / "sources.json").write_text(json.dumps({"suite": combined.suite, "sweeps": combined.sources,
                                                  "notes": combined.notes}, indent=1))
    ResultsWriter(out / "results.csv", combined.rows).flush()
    return out / "results.csv"


def primary_of(sweeps: Sequence[Sweep], notes: list[str]) -> str | None:
    """The sweeps' headline metric (the first sweep's when they differ, said in ``notes``)."""
    chosen = [s.primary for s in sweeps if s.primary]
    if len(set(chosen)) > 1:
        notes.append(f"The sweeps lead with different metrics ({', '.join(sorted(set(chosen)))}); this report leads "
                     f"with {chosen[0]}, the first sweep's.")
    return chosen[0] if chosen else None


def compare_sweeps(
    sweeps: Sequence[Sweep], out: Path, *, baseline: str = "grpo", n_boot: int = 2000, seed: int = 0
) -> Any:
    """Check, combine and write the sweeps into ``out``, then build the report there (returns it)."""
    from rlbench_med.reports.report import make_report

    check_comparable(sweeps)
    if (out / "results.csv").exists():
        raise ComparisonError(f"--out {out} already holds results.csv; give another --out")
    combined = combine(sweeps)
    notes = list(combined.notes)
    primary = primary_of(sweeps, notes)
    write_combined(combined, out)
    source = "; ".join(f"{s.name} = {s.origin}" for s in sweeps)
    return make_report(out, rows=combined.rows, curves=combined.curves or None, baseline=baseline, primary=primary,
                       source=f"compare of {source}", n_boot=n_boot, seed=seed, run_dir=out, notes=notes)
