"""``rlbench-med compare``: several sweeps of one suite -> one report, paired where seeds match.

The sweeps must be of the same suite and evaluated on the same held-out records (the truth of
every dataset, record by record); otherwise the comparison is refused with the reason. Then
:func:`combine` puts their algorithms side by side:

- a label only one sweep ran keeps its name;
- a trained algorithm several sweeps ran **with the same runner config** and the same results on
  every seed they share (a repeated or reused job) is one algorithm: its seeds are pooled (a seed
  in several sweeps counts once);
- otherwise each sweep's runs get the sweep's name, ``grpo (s1)``, ``grpo (s2)``, and the notes
  say why (the config keys that differ, or the seed whose results differ: other code);
- ``base`` and the floors are merged when their results are identical, else named per sweep.

The report (:func:`~rlbench_med.reports.report.make_report`) then compares every algorithm with
the baseline and ``base`` of its own sweep and, for a name several sweeps ran differently, each
later sweep's runs with the first sweep's (``grpo (s2) − grpo (s1)``), paired by seed with the
intervals of :mod:`.stats`.
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


def _why_apart(label: str, holders: Sequence[Sweep]) -> str | None:
    """Why ``label``'s runs in ``holders`` are not one algorithm, or None when they are."""
    first = holders[0]
    rows = _rows_by_seed(first, label)
    for other in holders[1:]:
        if not is_reference(label):
            a, b = _runner_config(first), _runner_config(other)
            if not first.config or not other.config:
                return f"the config of {(first if not first.config else other).name} is unknown"
            differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if differ:
                shown = ", ".join(f"{k} {a.get(k, '-')} vs {b.get(k, '-')}" for k in differ[:4])
                return f"config differs between {first.name} and {other.name}: {shown}" + (" ..." if len(differ) > 4 else "")
        theirs = _rows_by_seed(other, label)
        shared = sorted({k[0] for k in rows} & {k[0] for k in theirs})
        for seed in shared:
            keys = {k for k in rows if k[0] == seed} | {k for k in theirs if k[0] == seed}
            if any(rows.get(k) != theirs.get(k) for k in keys):
                return (f"seed {seed} has other results in {other.name} than in {first.name}"
                        + ("" if is_reference(label) else " with the same config (other code, or another machine)"))
        if is_reference(label) and not shared:
            return f"{first.name} and {other.name} evaluated it with different seeds"
    return None


def combine(sweeps: Sequence[Sweep]) -> Combined:
    """The sweeps side by side (module docstring); call :func:`check_comparable` first."""
    combined = Combined(sweeps[0].suite, [], {}, {},
                        sources=[{"name": s.name, "origin": s.origin} for s in sweeps])
    labels = list(dict.fromkeys(label for s in sweeps for label in s.labels))
    pooled: dict[tuple[str, ...], list[str]] = {}
    for label in labels:
        holders = [s for s in sweeps if label in s.labels]
        why = _why_apart(label, holders) if len(holders) > 1 else None
        if len(holders) > 1 and why is None:
            pooled.setdefault(tuple(s.name for s in holders), []).append(label)
        elif why is not None:
            combined.notes.append(f"{label}: shown per sweep ({why}).")
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
    for names, same in pooled.items():
        combined.notes.insert(0, f"{', '.join(same)}: the same in {' and '.join(names)} (same config for a trained "
                                 "algorithm, same results on the seeds they share): their seeds are pooled, a seed "
                                 "in several sweeps counted once.")
    missing = [s.name for s in sweeps if not s.curves]
    if missing:
        combined.notes.append(f"No learning curves for {', '.join(missing)}: the tracking store holds no sweep for "
                              "that folder.")
    return combined


def _qualified(label: str, sweep: str) -> Label:
    """``label`` of sweep ``sweep`` (parentheses in the sweep's name would break the label's grammar)."""
    return replace(split_label(label), sweep=sweep.replace("(", "_").replace(")", "_"))


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
