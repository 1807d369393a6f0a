"""The results table: results.csv rows -> mean ± std over seeds per (algo, domain, metric).

A pure function of the rows (lm-eval style: one structured record, renderers elsewhere).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlbench_med.reports.stats import mean_std
from rlbench_med.runners.base import BASE, TEST, ResultsError, predictions_dir, read_results, run_slug
from rlbench_med.suites.catalogue import order_domains
from rlbench_med.suites.floors import FLOORS, is_floor
from rlbench_med.suites.metrics import METRICS

METRIC_ORDER = METRICS
METRIC_TITLES = {"acc": "Acc", "f1": "F1", "iou": "IoU", "exact": "Exact", "f1_strict": "F1 strict",
                 "labels": "Labels", "acc_release": "Acc (release)", "advantage_ms": "ms"}


def load_results(path: Path) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` with ``seed``/``n`` as int and ``value`` as float, checked as
    :func:`~rlbench_med.runners.base.read_results` checks them (raises :class:`ResultsError`)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path} does not exist; give a run's output folder (it holds results.csv)")
    return read_results(path)


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    n_seeds: int

    def format(self, digits: int = 3, compact: bool = False) -> str:
        """``mean ± std`` over seeds (just the mean for a single seed); ``compact`` drops the spaces."""
        if math.isnan(self.mean):
            return "–"
        if self.n_seeds > 1:
            sep = "±" if compact else " ± "
            return f"{self.mean:.{digits}f}{sep}{self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}"


@dataclass(frozen=True)
class Label:
    """The parts of a results.csv algo label ``<name>[@<inputs>][ (<sweep>)]``: the algorithm
    (``drpo``, ``drpo:k_max=3``, ``drpo[acc0.2_iou0.6]``), an input ablation (``text``) and, in a
    report combining sweeps (``rlbench-med compare``), the sweep it comes from."""

    name: str
    inputs: str = ""
    sweep: str = ""

    def __str__(self) -> str:
        return self.name + (f"@{self.inputs}" if self.inputs else "") + (f" ({self.sweep})" if self.sweep else "")


_SWEEP_SUFFIX = re.compile(r"^(.*) \(([^()]+)\)$")


def split_label(label: str) -> Label:
    """``"drpo@text (s2)"`` -> ``Label("drpo", "text", "s2")``."""
    m = _SWEEP_SUFFIX.match(label)
    core, sweep = (m.group(1), m.group(2)) if m else (label, "")
    name, _, inputs = core.partition("@")
    return Label(name, inputs, sweep)


def is_reference(algo: str) -> bool:
    """``base`` and the floors (and their input ablations): reference rows, not trained algorithms."""
    name = split_label(algo).name
    return name == BASE or is_floor(name)


@dataclass
class ResultTable:
    """Cells = mean ± std over seeds per (algo, domain, metric); ``overall`` is the last domain.

    ``algos`` lists the trained algorithms first, then ``base`` (and its ablations), then the
    floors; ``n[(domain, metric)]`` is the number of test records behind a cell.
    """

    suite: str
    algos: list[str]
    domains: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str, str], Cell]
    seeds: dict[str, list[int]] = field(default_factory=dict)
    n: dict[tuple[str, str], int] = field(default_factory=dict)

    def cell(self, algo: str, domain: str, metric: str) -> Cell | None:
        return self.cells.get((algo, domain, metric))

    @property
    def trained(self) -> list[str]:
        return [a for a in self.algos if not is_reference(a)]

    @property
    def floors(self) -> list[str]:
        return [a for a in self.algos if is_floor(a)]

    def best(self, domain: str, metric: str, *, higher_is_better: bool = True) -> set[str]:
        """Trained algorithms with the best mean in a column (ties all marked); empty with fewer than 2."""
        means = {a: c.mean for a in self.trained if (c := self.cell(a, domain, metric)) and not math.isnan(c.mean)}
        if len(means) < 2:
            return set()
        target = max(means.values()) if higher_is_better else min(means.values())
        return {a for a, m in means.items() if m == target}


def build_table(rows: Iterable[Mapping[str, Any]], algo_order: Sequence[str] | None = None) -> ResultTable:
    """Group rows by (algo, domain, metric) and take mean and sample std over seeds (module docstring)."""
    rows = list(rows)
    suites = sorted({str(r["suite"]) for r in rows})
    values: dict[tuple[str, str, str], list[float]] = {}
    algos: list[str] = []
    domains: list[str] = []
    metrics: list[str] = []
    seeds: dict[str, list[int]] = {}
    n: dict[tuple[str, str], int] = {}
    for r in rows:
        algo, domain, metric = str(r["algo"]), str(r["domain"]), str(r["metric"])
        n[(domain, metric)] = max(n.get((domain, metric), 0), int(r.get("n") or 0))
        for seq, item in ((algos, algo), (domains, domain), (metrics, metric)):
            if item not in seq:
                seq.append(item)
        values.setdefault((algo, domain, metric), []).append(float(r["value"]))
        seeds.setdefault(algo, [])
        if int(r["seed"]) not in seeds[algo]:
            seeds[algo].append(int(r["seed"]))
    if algo_order:
        algos = [a for a in algo_order if a in algos] + [a for a in algos if a not in algo_order]
    floor_rank = {f: i for i, f in enumerate(FLOORS)}
    algos = ([a for a in algos if not is_reference(a)] + [a for a in algos if is_reference(a) and not is_floor(a)]
             + sorted((a for a in algos if is_floor(a)), key=lambda a: floor_rank.get(a, len(FLOORS))))
    # One domain order for every table and figure (rows rebuilt from MLflow come in another order).
    domains = [*order_domains(d for d in domains if d != "overall"), *(["overall"] if "overall" in domains else [])]
    metrics = [m for m in METRIC_ORDER if m in metrics] + [m for m in metrics if m not in METRIC_ORDER]
    cells = {k: Cell(*mean_std(v)) for k, v in values.items()}
    return ResultTable(", ".join(suites), algos, domains, metrics, cells, {a: sorted(s) for a, s in seeds.items()}, n)


def predictions_path(out_dir: Path, algo: str, seed: int, split: str = TEST) -> Path | None:
    """The predictions file of (algo, seed) in an output folder: of the test split (``predictions/``) or the
    validation split (``predictions/validation/``), the folder's ``index.json`` first."""
    out_dir = Path(out_dir)
    folder = predictions_dir(out_dir, split)
    index = folder / "index.json"
    if index.exists():
        rel = json.loads(index.read_text()).get(f"{algo}|{seed}")
        if rel and (out_dir / rel).exists():
            return out_dir / rel
    path = folder / f"{run_slug(algo, seed)}.jsonl"
    if path.exists():
        return path
    base, at, inputs = algo.partition("@")
    if at:
        path = folder / f"{run_slug(base, seed)}@{inputs}.jsonl"
        if path.exists():
            return path
    return None
