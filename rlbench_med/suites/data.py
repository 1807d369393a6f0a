"""Clinical data in the CLIMB / QoQ-Med export format: loading, validation and media readers.

A data directory holds ``train.jsonl`` and ``test.jsonl``, one JSON object per line, plus the
media they point to. Fields of a record (paths are relative to the JSONL file):

- ``problem`` (str, required): the prompt; for MIMIC-IV records it carries the EHR text.
- ``answer`` (str, required): comma-separated labels (a JSON list of labels is accepted too).
- ``dataset`` (str, required): a dataset of the CLIMB catalogue, ``MIMIC-IV``, or a dataset whose
  class list is given in ``classes.json``.
- ``images`` (list of paths), ``time-series`` (list of paths: ``.pt`` tensors ``[leads, samples]``,
  ``.npy`` arrays of the same shape, or WFDB records given as ``name``, ``name.hea`` or
  ``name.dat``), ``segmentation_path`` (PNG mask, foreground > 0, same size as the first image),
  ``bbox`` (``[x1, y1, x2, y2]`` in pixels of the original image; the box covers pixel column
  ``j`` when ``x1 <= j + 0.5 < x2``, so ``x2``/``y2`` are exclusive pixel edges). Each may be
  absent or null.
- ``domain`` (str, optional): needed only where neither the catalogue nor the paths imply it.
  Otherwise the domain is the catalogue's domain of the dataset, or the first folder name of an
  image / time-series path that is a known domain (``cxr``, ``ecg``, ...).
- ``task`` (str, optional, MIMIC-IV only): ``los`` or ``ihm48``. Without it the task is inferred
  from the answer (the two class lists are disjoint), then from the prompt ("mortality" / "die"
  -> ``ihm48``; "length of stay" -> ``los``). A MIMIC-IV record's domain is its task, so metrics
  and DRPO's domains keep the two tasks apart.
- ``id`` (optional): the sample's uid; otherwise ``<split>:<line>``. Other fields are ignored.

``classes.json`` (optional) maps a task (a dataset name, or ``los`` / ``ihm48``) to its class
list, ``{"MyData": ["A", "B"]}``, or to ``{"domain": "cxr", "classes": [...]}``; it takes
precedence over the catalogue. Labels are compared case- and whitespace-insensitively and stored
with the class list's spelling.

Validation reports every problem as ``file:line: field: what is wrong`` (line 0 for a problem
with a whole file). Blank lines are not records and are skipped. :func:`load_data` applies the
same checks and raises :class:`DataError` carrying all of them; nothing is silently dropped.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rlbench_med.suites.catalogue import (
    MIMIC_DATASET,
    MIMIC_TASKS,
    find_dataset,
    known_domains,
    normalize_label,
    order_domains,
)

SPLITS = ("train", "test")
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# What torch.load / np.load / wfdb raise on unreadable or malformed files.
SIGNAL_ERRORS = (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, IndexError, TypeError)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data directory; ``str()`` gives ``file:line: field: what is wrong``."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class DataError(Exception):
    """A data directory that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, root: Path, problems: list[Problem]) -> None:
        self.root = Path(root)
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = len(self.problems) - 20
        tail = f"\n  ... and {more} more (run `rlbench-med data validate {root}` for all)" if more > 0 else ""
        super().__init__(f"{len(self.problems)} problem(s) in data directory {root}:\n{shown}{tail}")


@dataclass(frozen=True)
class Sample:
    """One evaluated question: inputs, true labels and the label space of its task.

    ``task`` equals ``dataset`` except for MIMIC-IV (``los`` / ``ihm48``). ``bbox`` is
    ``(x1, y1, x2, y2)`` in pixels of the original image, ``image_size`` is ``(W, H)`` of the first
    image. Paths are absolute.
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

    @property
    def has_region(self) -> bool:
        """Whether the sample has a ground-truth region (a mask or a box) to score IoU against."""
        return self.segmentation_path is not None or self.bbox is not None


@dataclass
class ClinicalData:
    """A loaded data directory: its samples per split, the domains and the task label spaces."""

    root: Path
    train: list[Sample]
    test: list[Sample]
    domains: tuple[str, ...]
    tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        """``train`` or ``test`` samples."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return self.train if name == "train" else self.test

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
# media readers
# --------------------------------------------------------------------------------------------
def load_image(path: Path | str, size: int = 64) -> np.ndarray:
    """Any PNG/JPEG as float32 ``[3, size, size]`` in ``[0, 1]`` (RGB, bilinear resize)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BILINEAR)
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_mask(path: Path | str) -> np.ndarray:
    """A mask image as bool ``[H, W]`` at its original resolution (foreground: value > 0)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 0


def _wfdb_base(path: Path) -> str | None:
    text = str(path)
    for suffix in (".hea", ".dat", ".mat"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    if Path(text + ".hea").is_file():
        return text
    return None


def signal_exists(path: Path) -> bool:
    """Whether ``path`` names a readable signal file (for WFDB: its header exists)."""
    base = _wfdb_base(path)
    if base is not None:
        return Path(base + ".hea").is_file()
    return path.is_file()


def load_signal(path: Path | str) -> np.ndarray:
    """A multi-lead signal as float32 ``[leads, samples]``.

    ``.pt``: a 2-D tensor ``[leads, samples]`` (``torch.load(weights_only=True)``); ``.npy``: a 2-D
    array of the same shape; otherwise a WFDB record (``name``, ``name.hea`` or ``name.dat``) read
    with ``wfdb.rdrecord``, whose ``p_signal [samples, leads]`` is transposed. Raises ``ValueError``
    for a file that is not a 2-D signal.
    """
    path = Path(path)
    if path.suffix == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor [leads, samples], got {type(obj).__name__}")
        arr = obj.detach().to(torch.float32).numpy()
    elif path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        base = _wfdb_base(path)
        if base is None:
            raise ValueError(f"{path}: not a .pt tensor, .npy array or WFDB record (no {path}.hea)")
        import wfdb

        record = wfdb.rdrecord(base)
        if record.p_signal is None:
            raise ValueError(f"{path}: WFDB record has no physical signal")
        arr = np.asarray(record.p_signal, dtype=np.float32).T
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D signal [leads, samples], got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TaskInfo:
    classes: tuple[str, ...]
    domain: str | None


def _read_classes_json(root: Path, problems: list[Problem]) -> dict[str, _TaskInfo]:
    path = root / "classes.json"
    if not path.exists():
        return {}
    where = str(path)
    try:
        raw = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        problems.append(Problem(where, exc.lineno, "json", f"not valid JSON: {exc.msg}"))
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(where, 0, "file", f"cannot be read: {exc}"))
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem(where, 0, "classes", 'expected an object {"task": ["class", ...]}'))
        return {}
    out: dict[str, _TaskInfo] = {}
    for task, value in raw.items():
        domain = None
        classes = value
        if isinstance(value, dict):
            domain = value.get("domain")
            classes = value.get("classes")
            if domain is not None and (not isinstance(domain, str) or not domain.strip()):
                problems.append(Problem(where, 0, f"{task}.domain", "must be a non-empty string"))
                domain = None
        if (
            not isinstance(classes, list)
            or not classes
            or not all(isinstance(c, str) and c.strip() for c in classes)
        ):
            problems.append(Problem(where, 0, str(task), "class list must be a non-empty list of non-empty strings"))
            continue
        bad = [c for c in classes if "," in c]
        if bad:
            problems.append(Problem(where, 0, str(task), f"class names cannot contain ',' (answers are comma-separated): {bad}"))
            continue
        out[normalize_label(task)] = _TaskInfo(tuple(c.strip() for c in classes), domain.strip() if domain else None)
    return out


def _as_path_list(value: Any, where: str, line: int, name: str, problems: list[Problem]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    problems.append(Problem(where, line, name, f"expected a list of relative paths, got {value!r}"))
    return []


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Checker:
    """Checks records of one data directory, caching decoded media facts across records."""

    def __init__(self, root: Path, problems: list[Problem]) -> None:
        self.root = root
        self.problems = problems
        self.tasks = _read_classes_json(root, problems)
        self._domains = set(known_domains()) | {t.domain for t in self.tasks.values() if t.domain}
        self._image_sizes: dict[Path, tuple[int, int] | str] = {}
        self._signal_checks: dict[Path, str | None] = {}

    def _bad(self, where: str, line: int, name: str, message: str) -> None:
        self.problems.append(Problem(where, line, name, message))

    def image_size(self, path: Path) -> tuple[int, int] | str:
        """(W, H) of a decodable image, or why it cannot be used."""
        if path not in self._image_sizes:
            if not path.is_file():
                self._image_sizes[path] = "file does not exist"
            else:
                try:
                    with Image.open(path) as im:
                        im.load()
                        self._image_sizes[path] = (int(im.size[0]), int(im.size[1]))
                except IMAGE_ERRORS as exc:
                    self._image_sizes[path] = f"does not decode as an image ({type(exc).__name__}: {exc})"
        return self._image_sizes[path]

    def signal_problem(self, path: Path) -> str | None:
        if path not in self._signal_checks:
            message: str | None = None
            if not signal_exists(path):
                message = "file does not exist"
            else:
                try:
                    arr = load_signal(path)
                    if arr.shape[0] > arr.shape[1]:
                        message = f"shape {tuple(arr.shape)} looks like [samples, leads]; expected [leads, samples]"
                    elif arr.size == 0:
                        message = "signal is empty"
                    elif not np.isfinite(arr).all():
                        message = "signal contains NaN or infinite values"
                except SIGNAL_ERRORS as exc:
                    message = f"cannot be read as a signal ({type(exc).__name__}: {exc})"
            self._signal_checks[path] = message
        return self._signal_checks[path]

    def _infer_mimic_task(self, rec: dict[str, Any], labels: list[str], where: str, line: int) -> str | None:
        task = rec.get("task")
        if task is not None:
            if not isinstance(task, str) or normalize_label(task) not in MIMIC_TASKS:
                self._bad(where, line, "task", f"{task!r} is not a MIMIC-IV task; use one of {', '.join(MIMIC_TASKS)}")
                return None
            return normalize_label(task)
        keys = {normalize_label(x) for x in labels}
        matches = [
            t for t in MIMIC_TASKS if keys and keys <= {normalize_label(c) for c in self.classes_of(t)}
        ]
        if len(matches) == 1:
            return matches[0]
        text = normalize_label(str(rec.get("problem", "")))
        if "mortality" in text or " die" in text:
            return "ihm48"
        if "length of stay" in text:
            return "los"
        self._bad(where, line, "task", 'cannot tell whether this MIMIC-IV record is "los" or "ihm48"; add "task"')
        return None

    def classes_of(self, task: str) -> tuple[str, ...]:
        info = self.tasks.get(normalize_label(task))
        if info is not None:
            return info.classes
        if task in MIMIC_TASKS:
            return MIMIC_TASKS[task]
        entry = find_dataset(task)
        return entry.classes if entry is not None else ()

    def _infer_domain(self, rec: dict[str, Any], dataset: str, paths: Iterable[str]) -> str | None:
        given = rec.get("domain")
        if isinstance(given, str) and given.strip():
            return given.strip()
        info = self.tasks.get(normalize_label(dataset))
        if info is not None and info.domain:
            return info.domain
        entry = find_dataset(dataset)
        if entry is not None and entry.domain != "multimodal":
            return entry.domain
        for p in paths:
            for part in Path(p).parts:
                if part.lower() in self._domains:
                    return part.lower()
        return None

    def record(self, rec: Any, where: str, line: int, base: Path, split: str) -> Sample | None:
        """Check one parsed JSON line; return its Sample when it has no problem."""
        n_before = len(self.problems)
        if not isinstance(rec, dict):
            self._bad(where, line, "record", f"expected a JSON object, got {type(rec).__name__}")
            return None
        problem_text = rec.get("problem")
        if not isinstance(problem_text, str) or not problem_text.strip():
            self._bad(where, line, "problem", "missing or empty; the prompt text is required")
        answer = rec.get("answer")
        labels: list[str] = []
        if isinstance(answer, str):
            labels = [a.strip() for a in answer.split(",") if a.strip()]
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            labels = [a.strip() for a in answer if a.strip()]
        if not labels:
            self._bad(where, line, "answer", f"missing or empty; expected comma-separated labels, got {answer!r}")
        dataset = rec.get("dataset")
        if not isinstance(dataset, str) or not dataset.strip():
            self._bad(where, line, "dataset", "missing or empty; name the dataset the record comes from")
            dataset = None
        else:
            dataset = dataset.strip()

        images = _as_path_list(rec.get("images"), where, line, "images", self.problems)
        series = _as_path_list(rec.get("time-series"), where, line, "time-series", self.problems)

        task: str | None = None
        classes: tuple[str, ...] = ()
        domain: str | None = None
        if dataset is not None:
            entry = find_dataset(dataset)
            is_mimic = normalize_label(dataset) == normalize_label(MIMIC_DATASET)
            if entry is not None and normalize_label(dataset) not in self.tasks:
                dataset = entry.dataset
            if is_mimic:
                task = self._infer_mimic_task(rec, labels, where, line)
                domain = task
            else:
                task = dataset
                domain = self._infer_domain(rec, dataset, images + series)
                if domain is None:
                    self._bad(where, line, "domain", f"cannot infer the domain of dataset {dataset!r}; add \"domain\"")
            if task is not None:
                classes = self.classes_of(task)
                if not classes:
                    self._bad(
                        where,
                        line,
                        "dataset",
                        f"{dataset!r} is not in the CLIMB catalogue; give its class list in "
                        f'{self.root / "classes.json"} as {{"{dataset}": ["class", ...]}}',
                    )
        canonical: list[str] = []
        if classes and labels:
            lookup = {normalize_label(c): c for c in classes}
            for label in labels:
                key = normalize_label(label)
                if key not in lookup:
                    self._bad(where, line, "answer", f"label {label!r} is not a class of {task!r} ({'; '.join(classes)})")
                elif lookup[key] not in canonical:
                    canonical.append(lookup[key])

        image_paths = tuple((base / p).resolve() for p in images)
        image_size: tuple[int, int] | None = None
        for rel, path in zip(images, image_paths):
            size = self.image_size(path)
            if isinstance(size, str):
                self._bad(where, line, "images", f"{rel}: {size}")
            elif image_size is None:
                image_size = size
        series_paths = tuple((base / p).resolve() for p in series)
        for rel, path in zip(series, series_paths):
            message = self.signal_problem(path)
            if message is not None:
                self._bad(where, line, "time-series", f"{rel}: {message}")

        seg = rec.get("segmentation_path")
        seg_path: Path | None = None
        if seg is not None and seg != "":
            if not isinstance(seg, str):
                self._bad(where, line, "segmentation_path", f"expected a relative path or null, got {seg!r}")
            else:
                seg_path = (base / seg).resolve()
                size = self.image_size(seg_path)
                if isinstance(size, str):
                    self._bad(where, line, "segmentation_path", f"{seg}: {size}")
                elif image_size is not None and size != image_size:
                    self._bad(where, line, "segmentation_path", f"{seg}: mask is {size[0]}x{size[1]} but the image is {image_size[0]}x{image_size[1]}")
                elif not load_mask(seg_path).any():
                    self._bad(where, line, "segmentation_path", f"{seg}: mask has no foreground pixels; use null for records without a region")
                if not images:
                    self._bad(where, line, "segmentation_path", "a mask needs an image (images is empty)")

        raw_box = rec.get("bbox")
        bbox: tuple[float, float, float, float] | None = None
        if raw_box is not None and raw_box != []:
            if not (isinstance(raw_box, list) and len(raw_box) == 4 and all(_number(v) for v in raw_box)):
                self._bad(where, line, "bbox", f"expected [x1, y1, x2, y2] (4 finite numbers), got {raw_box!r}")
            else:
                x1, y1, x2, y2 = (float(v) for v in raw_box)
                if not (x1 < x2 and y1 < y2):
                    self._bad(where, line, "bbox", f"{raw_box}: needs x1 < x2 and y1 < y2")
                elif x1 < 0 or y1 < 0:
                    self._bad(where, line, "bbox", f"{raw_box}: negative coordinates lie outside the image")
                elif image_size is not None and (x2 > image_size[0] or y2 > image_size[1]):
                    self._bad(where, line, "bbox", f"{raw_box}: outside the {image_size[0]}x{image_size[1]} image")
                elif not images:
                    self._bad(where, line, "bbox", "a box needs an image (images is empty)")
                else:
                    bbox = (x1, y1, x2, y2)

        if len(self.problems) > n_before:
            return None
        assert dataset is not None and task is not None and domain is not None and isinstance(problem_text, str)
        uid = rec.get("id")
        return Sample(
            uid=str(uid) if uid is not None else f"{split}:{line}",
            problem=problem_text,
            labels=tuple(canonical),
            domain=domain,
            dataset=dataset,
            task=task,
            classes=classes,
            images=image_paths,
            time_series=series_paths,
            segmentation_path=seg_path,
            bbox=bbox,
            image_size=image_size,
            split=split,
        )


def _scan(root: Path) -> tuple[dict[str, list[Sample]], list[Problem], dict[str, tuple[str, ...]]]:
    root = Path(root)
    problems: list[Problem] = []
    samples: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    if not root.is_dir():
        return samples, [Problem(str(root), 0, "directory", "does not exist or is not a directory")], {}
    checker = _Checker(root, problems)
    for split in SPLITS:
        path = root / f"{split}.jsonl"
        where = str(path)
        if not path.is_file():
            problems.append(Problem(where, 0, "file", f"missing; a data directory needs {' and '.join(s + '.jsonl' for s in SPLITS)}"))
            continue
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(where, 0, "file", f"cannot be read as UTF-8 text: {exc}"))
            continue
        ids: dict[str, int] = {}
        n_records = 0
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            n_records += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(Problem(where, line_no, "json", f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if isinstance(rec, dict) and rec.get("id") is not None:
                key = str(rec["id"])
                if key in ids:
                    problems.append(Problem(where, line_no, "id", f"{key!r} already used on line {ids[key]}"))
                ids.setdefault(key, line_no)
            sample = checker.record(rec, where, line_no, path.parent, split)
            if sample is not None:
                samples[split].append(sample)
        if n_records == 0:
            problems.append(Problem(where, 0, "file", "has no records"))
    tasks = {name: checker.classes_of(name) for name in sorted({s.task for ss in samples.values() for s in ss})}
    return samples, problems, tasks


def validate_dir(root: Path | str) -> list[Problem]:
    """Every problem of a data directory (empty list: it loads). Never raises for bad data."""
    return _scan(Path(root))[1]


def load_data(root: Path | str) -> ClinicalData:
    """Load and validate ``root/train.jsonl`` and ``root/test.jsonl``; raise DataError on any problem."""
    root = Path(root)
    samples, problems, tasks = _scan(root)
    if problems:
        raise DataError(root, problems)
    domains = order_domains({s.domain for ss in samples.values() for s in ss})
    return ClinicalData(root=root, train=samples["train"], test=samples["test"], domains=domains, tasks=tasks)
