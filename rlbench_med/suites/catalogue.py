"""The CLIMB dataset catalogue: domains, datasets, class lists and train/test sizes.

The facts live in ``data/climb_catalogue.csv`` (copied from the CLIMB corpus description used by
QoQ-Med, arXiv 2506.00711, and from the QoQ-Med release's data conventions; the file's first line
cites both). SynthCLIMB takes its domains, class lists and the skew between domains from here, and
validation takes the class list of a record's dataset from here.

Class names are the label strings exactly as the QoQ-Med release's answers write them (HAM10000
``Melanoma``, APTOS ``Mild DR``, VinDr-Mammo ``BIRAD 4``); the names this project used before are
kept as aliases (``MEL`` -> ``Melanoma``), so older exports keep loading. Image paths of the release
look like ``<domain folder>/<dataset folder>/...``: :data:`CLIMB_DOMAIN_FOLDERS` maps CLIMB's
domain folders to our domains and each entry's ``dataset_folder`` names its dataset folder.

The MIMIC-IV multimodal row describes its two tasks in words; their class lists are
:data:`MIMIC_TASKS` (``los``: length of stay in four bins, ``ihm48``: death within 48 hours).
"""

from __future__ import annotations

import csv
import functools
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

CLIMB_DOMAIN_FOLDERS: dict[str, str] = {
    "chest_xray": "cxr",
    "mammo": "mammography",
    "derm": "dermoscopy",
    "ct": "ct",
    "fundus": "fundus",
    "ultrasound": "ultrasound",
    "mri": "mri",
    "pathology": "pathology",
    "ecg": "ecg",
}
"""CLIMB's domain folder names (the first part of a release image path) -> our domain names.

Source: CLIMB commit 0f767b1, ``src/datasets/<folder>/`` (the QoQ-Med release derives its
``data_source`` from this folder, QoQ_Med commit 97f7f3d, ``verl/utils/dataset.py`` L428-431)."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One dataset of the catalogue.

    ``classes`` is empty for the multimodal MIMIC-IV row (its tasks are :data:`MIMIC_TASKS`).
    ``dataset_folder`` is the dataset's folder in release image paths ("" where unknown);
    ``aliases`` maps older class names to ``classes`` (``(("MEL", "Melanoma"), ...)``);
    ``multi_label`` declares whether a record may carry several labels (the metrics score the
    dataset by this declaration, never by what one record says).
    """

    domain: str
    dataset: str
    classes: tuple[str, ...]
    train: int
    test: int
    dataset_folder: str = ""
    aliases: tuple[tuple[str, str], ...] = ()
    multi_label: bool = False


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
        aliases = tuple(
            (old.strip(), new.strip())
            for old, _, new in (pair.partition("->") for pair in row["aliases"].split(";") if pair.strip())
        )
        if row["multi_label"] not in ("yes", "no"):
            raise ValueError(f"climb_catalogue.csv: {row['dataset']}: multi_label is {row['multi_label']!r}, not yes or no")
        entries.append(
            CatalogueEntry(
                domain=row["domain"].strip(),
                dataset=row["dataset"].strip(),
                classes=classes,
                train=int(row["train"]),
                test=int(row["test"]),
                dataset_folder=row["dataset_folder"].strip(),
                aliases=aliases,
                multi_label=row["multi_label"] == "yes",
            )
        )
    return tuple(entries)


CATALOGUE: tuple[CatalogueEntry, ...] = _read_catalogue()
"""Every dataset of the catalogue, in file order."""

_BY_DATASET = {normalize_label(e.dataset): e for e in CATALOGUE}
_BY_FOLDER = {(e.domain, normalize_label(e.dataset_folder)): e for e in CATALOGUE if e.dataset_folder}


def find_dataset(name: str, domain: str | None = None) -> CatalogueEntry | None:
    """The catalogue entry of a dataset name or release dataset folder, or None.

    Names compare case/whitespace-insensitively. A folder name is looked up inside ``domain``
    when given (``vindr`` is both VinDr-CXR and VinDr-Mammo); without a domain it must be unique.
    """
    key = normalize_label(name)
    if key in _BY_DATASET:
        return _BY_DATASET[key]
    if domain is not None:
        return _BY_FOLDER.get((domain, key))
    matches = [e for (_, folder), e in _BY_FOLDER.items() if folder == key]
    return matches[0] if len(matches) == 1 else None


def declared_multi_label(dataset: str) -> bool | None:
    """The catalogue's declaration of a dataset (True: a record may carry several labels), or None
    for a dataset outside the catalogue. The MIMIC-IV tasks are single-label."""
    if dataset in MIMIC_TASKS:
        return False
    entry = find_dataset(dataset)
    return entry.multi_label if entry is not None else None


def domain_of_folder(name: str) -> str | None:
    """The domain a path folder names: a CLIMB domain folder (``chest_xray`` -> ``cxr``) or a
    known domain name (``cxr``), case-insensitively; None otherwise."""
    key = name.strip().lower()
    if key in CLIMB_DOMAIN_FOLDERS:
        return CLIMB_DOMAIN_FOLDERS[key]
    return key if key in known_domains() else None


def class_lookup(classes: Iterable[str], aliases: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """Comparison key (:func:`normalize_label`) of every class name and alias -> the class name."""
    lookup = {normalize_label(c): c for c in classes}
    for old, new in aliases:
        lookup.setdefault(normalize_label(old), new)
    return lookup


def datasets_of(domain: str) -> tuple[CatalogueEntry, ...]:
    """The catalogue entries of one domain, in file order."""
    return tuple(e for e in CATALOGUE if e.domain == domain)


@functools.cache
def known_domains() -> tuple[str, ...]:
    """Every domain named in the catalogue (vision domains first), plus the MIMIC task domains."""
    others = sorted({e.domain for e in CATALOGUE} - set(VISION_DOMAINS) - {"multimodal"})
    return VISION_DOMAINS + tuple(others) + tuple(MIMIC_TASKS)


def order_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """``domains`` in the order of :func:`known_domains`, then the unknown ones sorted."""
    present = set(domains)
    order = known_domains()
    return tuple(d for d in order if d in present) + tuple(sorted(present - set(order)))
