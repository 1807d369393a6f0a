"""The CLIMB dataset catalogue: domains, datasets, class lists and train/test sizes.

The facts live in ``data/climb_catalogue.csv`` (copied from the CLIMB corpus description used by
QoQ-Med, arXiv 2506.00711; the file's first line cites it). SynthCLIMB takes its domains, class
lists and the skew between domains from here, and validation takes the class list of a record's
dataset from here.

The MIMIC-IV multimodal row describes its two tasks in words; their class lists are
:data:`MIMIC_TASKS` (``los``: length of stay in four bins, ``ihm48``: death within 48 hours).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

VISION_DOMAINS: tuple[str, ...] = (
    "cxr",
    "mammography",
    "dermoscopy",
    "ct",
    "fundus",
    "ultrasound",
    "mri",
    "pathology",
)
"""The eight vision domains of ``climb_vision``, in the order of the QoQ-Med tables."""

ECG_DOMAIN = "ecg"
MIMIC_DATASET = "MIMIC-IV"
MIMIC_TASKS: dict[str, tuple[str, ...]] = {
    "los": ("under 3 days", "3 to 7 days", "1 to 2 weeks", "over 2 weeks"),
    "ihm48": ("Yes", "No"),
}
"""Class lists of the MIMIC-IV tasks: binned length of stay and 48-hour in-hospital mortality."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One dataset of the catalogue.

    ``classes`` is empty for the multimodal MIMIC-IV row (its tasks are :data:`MIMIC_TASKS`).
    """

    domain: str
    dataset: str
    classes: tuple[str, ...]
    train: int
    test: int


def normalize_label(label: str) -> str:
    """Case-folded label with runs of whitespace collapsed to one space (the comparison key)."""
    return " ".join(str(label).split()).casefold()


def _read_catalogue() -> tuple[CatalogueEntry, ...]:
    text = resources.files("rlbench_med.suites").joinpath("data/climb_catalogue.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    entries = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        is_multimodal = row["dataset"] == MIMIC_DATASET
        classes = () if is_multimodal else tuple(c.strip() for c in row["classes"].split(";") if c.strip())
        entries.append(
            CatalogueEntry(
                domain=row["domain"].strip(),
                dataset=row["dataset"].strip(),
                classes=classes,
                train=int(row["train"]),
                test=int(row["test"]),
            )
        )
    return tuple(entries)


CATALOGUE: tuple[CatalogueEntry, ...] = _read_catalogue()
"""Every dataset of the catalogue, in file order."""

_BY_DATASET = {normalize_label(e.dataset): e for e in CATALOGUE}


def find_dataset(name: str) -> CatalogueEntry | None:
    """The catalogue entry of a dataset name (case/whitespace-insensitive), or None."""
    return _BY_DATASET.get(normalize_label(name))


def datasets_of(domain: str) -> tuple[CatalogueEntry, ...]:
    """The catalogue entries of one domain, in file order."""
    return tuple(e for e in CATALOGUE if e.domain == domain)


def known_domains() -> tuple[str, ...]:
    """Every domain named in the catalogue (vision domains first), plus the MIMIC task domains."""
    others = sorted({e.domain for e in CATALOGUE} - set(VISION_DOMAINS) - {"multimodal"})
    return VISION_DOMAINS + tuple(others) + tuple(MIMIC_TASKS)


def order_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """``domains`` in the order of :func:`known_domains`, then the unknown ones sorted."""
    present = set(domains)
    order = known_domains()
    return tuple(d for d in order if d in present) + tuple(sorted(present - set(order)))
