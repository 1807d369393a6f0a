"""Clinical data in the CLIMB / QoQ-Med export format: sources, loading and validation.

A data set is two or three JSONL files, one JSON object per line: ``train.jsonl``, ``test.jsonl`` and
optionally ``validation.jsonl`` in a folder, or files named explicitly
(``train=PATH,test=PATH[,validation=PATH]``, see :class:`DataSource`); without a validation file the
validation split is carved from train (:mod:`rlbench_med.suites.source`).
Fields of a record (media paths are relative to the JSONL file's folder):

- ``problem`` (str, required): the prompt; for MIMIC-IV records it carries the EHR text.
- ``answer`` (str, required): the labels, split as the release splits them
  (:func:`~rlbench_med.suites.release_format.split_release_labels`: ``", "``, ``" and "``,
  ``" & "``, ``","``, ``"&"``, the first one present); a JSON list of labels is accepted too.
- ``dataset`` (str, optional): a dataset of the CLIMB catalogue (its name or its release folder,
  ``chexpert_full``), ``MIMIC-IV`` (or the release's ``los_prediction`` / ``48_ihm``), or any
  other name. Without it the dataset is the folder after the domain folder of the first media
  path (``chest_xray/chexpert_full/...`` -> CheXpert), as the release derives it.
- ``images``, ``videos`` (lists of paths; videos are read with OpenCV), ``time-series`` (list of
  paths: ``.pt`` tensors ``[leads, samples]``, ``.npy`` arrays of the same shape, or WFDB records
  given as ``name``, ``name.hea`` or ``name.dat``), ``segmentation_path`` (a mask image,
  foreground > 0; resized to the first image with nearest-neighbour sampling when its size
  differs; a mask without foreground falls back to ``bbox``), ``bbox`` (``[x1, y1, x2, y2]`` in
  pixels of the first image or video frame; ``[0, 0, 0, 0]`` means no box; the box covers pixel
  column ``j`` when ``x1 <= j + 0.5 < x2``). Each may be absent or null.
- ``domain`` (str, optional): wins over the catalogue and the paths; otherwise the domain is the
  catalogue's domain of the dataset, else a folder of the first media path naming a domain
  (CLIMB's ``chest_xray``, ``mammo``, ``derm``, ... or ``cxr``, ``mammography``, ...), else
  ``ecg`` for a record with only time series, else the first folder of the path (an unknown
  folder becomes its own domain).
- ``task`` (str, optional, MIMIC-IV only): ``los`` or ``ihm48``. A record whose prompt holds one
  of the release's two MIMIC-IV questions is that task; otherwise the task is the dataset's
  (``los_prediction``, ``48_ihm``), else inferred from the answer (the two class lists are
  disjoint), then from the prompt ("mortality" / "die" -> ``ihm48``; "length of stay" -> ``los``).
  A MIMIC-IV record's domain is its task, so metrics and DRPO's domains keep the tasks apart.
- ``id`` (optional): the sample's uid; otherwise ``<split>:<line>``. Other fields are ignored.

Class lists: ``classes.json`` (next to the train file, or ``classes=PATH``) maps a task (a dataset
name, or ``los`` / ``ihm48``) to its class list, ``{"MyData": ["A", "B"]}``, or to
``{"domain": "cxr", "classes": [...], "multi_label": true}``; it wins over the catalogue. A dataset
found in neither takes its classes from its answers (a warning says so). Labels compare case- and
whitespace-insensitively (the catalogue's older names are aliases) and are stored with the class
list's spelling.

Multi-label: a dataset is multi-label (a record may carry several labels) by its declaration,
``multi_label`` in classes.json, else the catalogue's; one declared nowhere is multi-label when
one of its answers names several labels. A record that contradicts the declaration (several
labels on a single-label dataset, or its own ``"multi_label"`` field) is a warning naming its
file and line, and the declaration stands.

Every media path must resolve (symlinks included) inside the folder of its JSONL file, unless the
source allows paths outside (``--allow-outside-data``).

Validation reports every finding as ``file:line: field: message`` (line 0 for a whole file):
problems make the data unusable; warnings (duplicate records, test records also in train, a
``domain`` contradicting the catalogue or the path, a mask without foreground, classes taken
from the answers) do not. :func:`load_data` raises :class:`DataError` carrying every problem;
nothing is silently dropped. A source selected for a suite (:meth:`DataSource.for_suite`) keeps
the records of the suite's domains and of domains no suite names, and counts the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from rlbench_med.suites.catalogue import order_domains
from rlbench_med.suites.media import (
    IMAGE_ERRORS,
    VIDEO_ERRORS,
    first_line,
    load_image,
    load_mask,
    load_signal,
    load_video_frames,
    signal_problem,
    video_info,
)
from rlbench_med.suites.records import (
    WARNING_KINDS,
    Draft,
    Problem,
    RecordReader,
    assign_classes,
    carve_validation,
    cross_record_warnings,
    declare_multi_label,
    read_split,
    unicode_twins,
)
from rlbench_med.suites.release_format import split_release_labels
from rlbench_med.suites.source import SPLITS, VALIDATION_FRACTION, DataSource

__all__ = [
    "SPLITS", "WARNING_KINDS", "ClinicalData", "DataCheck", "DataError", "DataSource", "Problem", "Sample",
    "check_data", "load_data", "load_image", "load_mask", "load_sample_mask", "load_signal", "load_video_frames",
    "split_release_labels", "summarize", "validate_dir",
]


class DataError(Exception):
    """A data set that cannot be used; ``problems`` lists every problem found (warnings excluded)."""

    def __init__(self, root: Path | str, problems: list[Problem]) -> None:
        self.root = root
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  ... and {more} more (run `rlbench-med data validate {root}` for all)" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in data {root}:\n{shown}{tail}")


@dataclass(frozen=True)
class Sample:
    """One evaluated question: inputs, true labels and the label space of its task.

    ``task`` equals ``dataset`` except for MIMIC-IV (``los`` / ``ihm48``). ``bbox`` is
    ``(x1, y1, x2, y2)`` in pixels of the first image (or video frame), ``image_size`` is its
    ``(W, H)``. Paths are absolute.
    """

    uid: str
    problem: str
    labels: tuple[str, ...]
    domain: str
    dataset: str
    task: str
    classes: tuple[str, ...]
    images: tuple[Path, ...] = ()
    time_series: tuple[Path, ...] = ()
    segmentation_path: Path | None = None
    bbox: tuple[float, float, float, float] | None = None
    image_size: tuple[int, int] | None = None
    split: str = "train"
    videos: tuple[Path, ...] = ()

    @property
    def has_region(self) -> bool:
        """Whether the sample has a ground-truth region (a mask or a box) to score IoU against."""
        return self.segmentation_path is not None or self.bbox is not None


def load_sample_mask(sample: Sample) -> Any:
    """The sample's mask as bool ``[H, W]`` on its image's pixel grid (None without a mask)."""
    if sample.segmentation_path is None:
        return None
    return load_mask(sample.segmentation_path, size=sample.image_size)


@dataclass
class ClinicalData:
    """A loaded data set: its samples per split, the domains and the task label spaces.

    ``set_aside`` counts the records a suite selection left out, ``{domain: {split: n}}``, and
    ``set_aside_reason`` says why per domain; ``warnings`` are the validation warnings;
    ``multi_label`` says per task whether a record may carry several labels (its declaration:
    classes.json, else the catalogue; pass it to :func:`~rlbench_med.suites.metrics.compute_metrics`).
    """

    root: Path
    train: list[Sample]
    test: list[Sample]
    domains: tuple[str, ...]
    tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    set_aside: dict[str, dict[str, int]] = field(default_factory=dict)
    set_aside_reason: dict[str, str] = field(default_factory=dict)
    validation: list[Sample] = field(default_factory=list)
    multi_label: dict[str, bool] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        """``train``, ``validation`` or ``test`` samples."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {domain: number of samples}}``."""
        out: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            per: dict[str, int] = {d: 0 for d in self.domains}
            for s in self.split(name):
                per[s.domain] = per.get(s.domain, 0) + 1
            out[name] = per
        return out


# --------------------------------------------------------------------------------------------
# media checks
# --------------------------------------------------------------------------------------------
class _MediaChecker:
    """Opens each media file once and turns a draft into a Sample (or records why it cannot)."""

    def __init__(self, reader: RecordReader) -> None:
        self.reader = reader
        self._sizes: dict[Path, tuple[int, int] | str] = {}
        self._signals: dict[Path, str | None] = {}

    def image_size(self, path: Path) -> tuple[int, int] | str:
        """(W, H) of a decodable image, or why it cannot be used."""
        if path not in self._sizes:
            if not path.is_file():
                self._sizes[path] = "file does not exist"
            else:
                try:
                    with Image.open(path) as im:
                        im.load()
                        self._sizes[path] = (int(im.size[0]), int(im.size[1]))
                except IMAGE_ERRORS as exc:
                    self._sizes[path] = f"does not decode as an image ({type(exc).__name__}: {first_line(exc)})"
        return self._sizes[path]

    def video_size(self, path: Path) -> tuple[int, int] | str:
        """(W, H) of a video's frames, or why it cannot be used."""
        if path not in self._sizes:
            try:
                self._sizes[path] = video_info(path)[1]
            except VIDEO_ERRORS as exc:
                message = first_line(exc)
                self._sizes[path] = message.removeprefix(f"{path}: ")
        return self._sizes[path]

    def sample(self, d: Draft) -> Sample | None:
        bad, warn = self.reader.bad, self.reader.warn
        ok = d.ok
        size: tuple[int, int] | None = None
        for field_name, paths, probe in (("images", d.images, self.image_size), ("videos", d.videos, self.video_size)):
            for rel, path in paths:
                got = probe(path)
                if isinstance(got, str):
                    bad(d.where, d.line, field_name, f"{rel}: {got}")
                    ok = False
                elif size is None:
                    size = got
        for rel, path in d.series:
            if path not in self._signals:
                self._signals[path] = signal_problem(path)
            if self._signals[path] is not None:
                bad(d.where, d.line, "time-series", f"{rel}: {self._signals[path]}")
                ok = False
        mask_path: Path | None = None
        if d.mask is not None:
            rel, path = d.mask
            got = self.image_size(path)
            if isinstance(got, str):
                bad(d.where, d.line, "segmentation_path", f"{rel}: {got}")
                ok = False
            elif not d.images and not d.videos:
                bad(d.where, d.line, "segmentation_path", "a mask needs an image (images and videos are empty)")
                ok = False
            elif size is not None and not load_mask(path, size=size).any():
                fallback = "the box is used" if d.bbox is not None else "the record has no region"
                warn(d.where, d.line, "segmentation_path", f"{rel}: mask has no foreground pixels; {fallback}",
                     "empty mask")
            else:
                mask_path = path
        if d.bbox is not None:
            if not d.images and not d.videos:
                bad(d.where, d.line, "bbox", "a box needs an image (images and videos are empty)")
                ok = False
            elif size is not None and (d.bbox[2] > size[0] or d.bbox[3] > size[1]):
                bad(d.where, d.line, "bbox", f"{list(d.bbox)}: outside the {size[0]}x{size[1]} image")
                ok = False
        if not ok:
            return None
        return Sample(
            uid=d.uid, problem=d.problem, labels=d.labels, domain=d.domain, dataset=d.dataset, task=d.task,
            classes=d.classes, images=tuple(p for _, p in d.images), time_series=tuple(p for _, p in d.series),
            segmentation_path=mask_path, bbox=d.bbox, image_size=size, split=d.split,
            videos=tuple(p for _, p in d.videos),
        )


# --------------------------------------------------------------------------------------------
# the checks, whole
# --------------------------------------------------------------------------------------------
@dataclass
class DataCheck:
    """Everything found about a data set: samples per split (media checked), problems, warnings.

    ``records`` counts the readable records per split and domain before the suite selection;
    ``set_aside`` the ones the selection leaves out.
    """

    source: DataSource
    samples: dict[str, list[Sample]]
    problems: list[Problem]
    warnings: list[Problem]
    tasks: dict[str, tuple[str, ...]]
    records: dict[str, dict[str, int]]
    set_aside: dict[str, dict[str, int]]
    multi_label: dict[str, bool] = field(default_factory=dict)

    def findings(self) -> list[Problem]:
        """Problems and warnings in line order: the train file's, the validation file's, the test file's, then
        other files'."""
        order = {str(self.source.split_file(s)): i for i, s in enumerate(SPLITS)}
        return sorted(self.problems + self.warnings, key=lambda p: (order.get(p.file, 2), p.file, p.line))

    def set_aside_reason(self, domain: str) -> str:
        """Why the suite selection sets ``domain`` aside."""
        users = dict(self.source.claimed).get(domain, "")
        return f"not domains of {self.source.suite}; used by {users}"


def check_data(source: DataSource | Path | str, *, media: bool = True) -> DataCheck:
    """Read and check a data set; ``media=False`` skips opening the media (samples stay empty)."""
    source = DataSource.open(source)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    records: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    set_aside: dict[str, dict[str, int]] = {}
    samples: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    if source.folder is not None and not source.folder.is_dir():
        problems.append(Problem(str(source.folder), 0, "directory", "does not exist or is not a directory"))
        return DataCheck(source, samples, problems, warnings, {}, records, set_aside)
    reader = RecordReader(source, problems, warnings)
    drafts = [d for split in SPLITS for d in read_split(source, split, reader)]
    if source.validation_file() is None:
        carve_validation(drafts)
    unicode_twins(drafts, reader)
    tasks = assign_classes(drafts, reader)
    multi_label = declare_multi_label(drafts, reader)
    cross_record_warnings(drafts, reader)
    kept: list[Draft] = []
    for d in drafts:
        if not d.domain:
            continue
        records[d.split][d.domain] = records[d.split].get(d.domain, 0) + 1
        if source.keeps(d.domain):
            kept.append(d)
        else:
            per = set_aside.setdefault(d.domain, {s: 0 for s in SPLITS})
            per[d.split] += 1
    if media:
        checker = _MediaChecker(reader)
        for d in kept:
            sample = checker.sample(d)
            if sample is not None:
                samples[d.split].append(sample)
    used = {d.task for d in kept if d.task}
    return DataCheck(source, samples, problems, warnings, {t: c for t, c in sorted(tasks.items()) if t in used},
                     records, set_aside, {t: m for t, m in sorted(multi_label.items()) if t in used})


def validate_dir(source: DataSource | Path | str) -> list[Problem]:
    """Every problem and warning of a data set, in :meth:`DataCheck.findings` order (never raises for bad data)."""
    return check_data(source).findings()


def load_data(source: DataSource | Path | str) -> ClinicalData:
    """Load and validate a data set (a folder, a ``*.source.json`` file or a source); raise DataError on any problem."""
    check = check_data(source)
    if check.problems:
        raise DataError(check.source.describe(), [p for p in check.findings() if p.level == "error"])
    samples = check.samples
    domains = order_domains({s.domain for ss in samples.values() for s in ss})
    root = check.source.folder or check.source.train.resolve().parent
    return ClinicalData(
        root=root, train=samples["train"], validation=samples["validation"], test=samples["test"], domains=domains,
        tasks=check.tasks,
        warnings=check.warnings, set_aside=check.set_aside,
        set_aside_reason={d: check.set_aside_reason(d) for d in check.set_aside}, multi_label=check.multi_label,
    )


def summarize(source: DataSource, limit: int = 8, check: DataCheck | None = None) -> list[str]:
    """A few plain lines about a source without opening its media: records kept and set aside per
    domain, and the count of problems and warnings (for the run plan); ``check``: the source's
    ``check_data(source, media=False)``, when the caller has it already."""
    check = check if check is not None else check_data(source, media=False)
    lines = []

    def per_domain(counts: dict[str, dict[str, int]], domains: Iterable[str]) -> str:
        parts = [f"{d} {'/'.join(str(counts[s].get(d, 0)) for s in SPLITS)}" for d in domains]
        return ", ".join(parts[:limit]) + (f", ... ({len(parts) - limit} more)" if len(parts) > limit else "")

    kept = order_domains(d for split in SPLITS for d in check.records[split] if source.keeps(d))
    n = {s: sum(check.records[s].get(d, 0) for d in kept) for s in SPLITS}
    who = f"{source.suite} uses" if source.suite else "uses"
    carved = "" if source.validation_file() is not None else (
        f"; validation carved from train: {VALIDATION_FRACTION:.0%} of each task's records")
    lines.append(f"{who} {n['train']} train / {n['validation']} validation / {n['test']} test records "
                 f"(train/validation/test per domain: {per_domain(check.records, kept) or 'none'}){carved}")
    by_reason: dict[str, list[str]] = defaultdict(list)
    for d, counts in check.set_aside.items():
        by_reason[check.set_aside_reason(d)].append(f"{d} {'/'.join(str(counts[s]) for s in SPLITS)}")
    for reason, parts in by_reason.items():
        lines.append(f"set aside: {', '.join(parts)} ({reason})")
    if check.problems or check.warnings:
        kinds = [(k, sum(w.kind == k for w in check.warnings)) for k in WARNING_KINDS]
        detail = ", ".join(f"{n} {k}" for k, n in kinds if n)
        lines.append(
            f"{len(check.problems)} problem(s), {len(check.warnings)} warning(s)"
            + (f" ({detail})" if detail else "")
            + f" before opening the media; see `rlbench-med data validate {source.describe()}`"
        )
    return lines

