"""Clinical data in the CLIMB / QoQ-Med export format: sources, loading and validation.

A data set is two JSONL files, one JSON object per line: ``train.jsonl`` and ``test.jsonl`` in a
folder, or any two files named explicitly (``train=PATH,test=PATH``, see :class:`DataSource`).
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
``{"domain": "cxr", "classes": [...]}``; it wins over the catalogue. A dataset found in neither
takes its classes from its answers (a warning says so). Labels compare case- and
whitespace-insensitively (the catalogue's older names are aliases) and are stored with the class
list's spelling.

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

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from rlbench_med.suites.catalogue import (
    ECG_DOMAIN,
    MIMIC_DATASET,
    MIMIC_TASKS,
    class_lookup,
    find_dataset,
    normalize_label,
    order_domains,
)
from rlbench_med.suites.media import (
    IMAGE_ERRORS,
    VIDEO_ERRORS,
    first_line,
    load_image,
    load_mask,
    load_signal,
    load_video_frames,
    signal_files,
    signal_problem,
    video_info,
)
from rlbench_med.suites.release_format import (
    MIMIC_RELEASE_DATASETS,
    is_no_box,
    path_origin,
    release_mimic_task,
    split_release_labels,
)

SPLITS = ("train", "test")
SOURCE_SUFFIX = ".source.json"
_SOURCE_FORMAT = 1

__all__ = [
    "SPLITS", "ClinicalData", "DataError", "DataSource", "Problem", "Sample", "check_data", "load_data",
    "load_image", "load_mask", "load_sample_mask", "load_signal", "load_video_frames", "split_release_labels",
    "summarize", "validate_dir",
]


@dataclass(frozen=True)
class Problem:
    """One finding about a data set; ``str()`` gives ``file:line: field: message``.

    ``level`` is ``error`` (the data cannot be used) or ``warning`` (it can; the message starts
    with ``warning:``).
    """

    file: str
    line: int
    field: str
    message: str
    level: str = "error"

    def __str__(self) -> str:
        text = f"warning: {self.message}" if self.level == "warning" else self.message
        return f"{self.file}:{self.line}: {self.field}: {text}"


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
    ``set_aside_reason`` says why per domain; ``warnings`` are the validation warnings.
    """

    root: Path
    train: list[Sample]
    test: list[Sample]
    domains: tuple[str, ...]
    tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    set_aside: dict[str, dict[str, int]] = field(default_factory=dict)
    set_aside_reason: dict[str, str] = field(default_factory=dict)

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
# where the data is, and which records a suite uses
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSource:
    """The two split files of a data set, its path policy, and the suite selection.

    ``DataSource.parse("DIR")`` reads ``DIR/train.jsonl`` and ``DIR/test.jsonl``;
    ``DataSource.parse("train=A.jsonl,test=B.jsonl[,classes=C.json]")`` reads any two files.
    Media paths of a file resolve against that file's folder and must stay inside it unless
    ``allow_outside``. :meth:`for_suite` adds the selection: ``suite_domains`` are kept,
    ``claimed`` lists ``(domain, suites)`` of other suites' domains, which are set aside; a domain
    in neither is kept. A source is saved as a ``*.source.json`` file that :func:`load_data`
    accepts wherever it accepts a folder.
    """

    train: Path
    test: Path
    classes: Path | None = None
    folder: Path | None = None
    allow_outside: bool = False
    suite: str | None = None
    suite_domains: tuple[str, ...] = ()
    claimed: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str | Path, *, allow_outside: bool = False) -> DataSource:
        """A ``--data`` value: a folder, or ``train=PATH,test=PATH[,classes=PATH]``.

        Raises ``ValueError`` with a one-line reason for a malformed explicit list.
        """
        text = str(spec).strip()
        if "=" not in text or Path(text).is_dir():
            folder = Path(text).resolve()
            return cls(folder / "train.jsonl", folder / "test.jsonl", None, folder, allow_outside)
        parts: dict[str, Path] = {}
        for item in [p.strip() for p in text.split(",") if p.strip()]:
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in ("train", "test", "classes") or not value.strip():
                raise ValueError(
                    f"--data {text!r}: expected a folder or train=PATH,test=PATH[,classes=PATH]; "
                    f"cannot read {item!r}"
                )
            if key in parts:
                raise ValueError(f"--data {text!r}: {key}= given twice")
            parts[key] = Path(value.strip()).resolve()
        missing = [k for k in SPLITS if k not in parts]
        if missing:
            raise ValueError(f"--data {text!r}: give {' and '.join(k + '=PATH' for k in missing)} too")
        return cls(parts["train"], parts["test"], parts.get("classes"), None, allow_outside)

    @classmethod
    def open(cls, path: str | Path | DataSource) -> DataSource:
        """A source from a folder, a saved ``*.source.json`` file, or a source itself."""
        if isinstance(path, DataSource):
            return path
        path = Path(path)
        if path.name.endswith(SOURCE_SUFFIX) and path.is_file():
            return cls.from_json(path.read_text("utf-8"))
        return cls.parse(path)

    def for_suite(self, suite: str) -> DataSource:
        """This source restricted to a registered suite's records (see the class docstring)."""
        from rlbench_med.suites.spec import SUITES

        own = tuple(SUITES.get(suite).domains)
        users: dict[str, list[str]] = defaultdict(list)
        for name in SUITES.names():
            for domain in SUITES.get(name).domains:
                if domain not in own:
                    users[domain].append(name)
        claimed = tuple((d, ", ".join(users[d])) for d in order_domains(users))
        return replace(self, suite=suite, suite_domains=own, claimed=claimed)

    def keeps(self, domain: str) -> bool:
        """Whether the suite selection keeps a record of ``domain`` (always, without a selection)."""
        return self.suite is None or domain in self.suite_domains or domain not in dict(self.claimed)

    def classes_file(self) -> Path | None:
        """``classes``, else ``classes.json`` next to the train file when it exists."""
        if self.classes is not None:
            return self.classes
        candidate = self.train.parent / "classes.json"
        return candidate if candidate.exists() else None

    def describe(self) -> str:
        """The folder, or ``train=...,test=...`` (a valid ``--data`` value either way)."""
        if self.folder is not None:
            return str(self.folder)
        text = f"train={self.train},test={self.test}"
        return text + (f",classes={self.classes}" if self.classes is not None else "")

    def to_json(self) -> str:
        doc = {
            "format": _SOURCE_FORMAT, "train": str(self.train), "test": str(self.test),
            "classes": str(self.classes) if self.classes is not None else None,
            "folder": str(self.folder) if self.folder is not None else None,
            "allow_outside": self.allow_outside, "suite": self.suite,
            "suite_domains": list(self.suite_domains), "claimed": [list(c) for c in self.claimed],
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DataSource:
        doc = json.loads(text)
        if doc.get("format") != _SOURCE_FORMAT:
            raise ValueError(f"data source file of format {doc.get('format')!r}; expected {_SOURCE_FORMAT}")
        optional = {k: Path(doc[k]) if doc.get(k) else None for k in ("classes", "folder")}
        return cls(
            Path(doc["train"]), Path(doc["test"]), optional["classes"], optional["folder"],
            bool(doc["allow_outside"]), doc.get("suite"), tuple(doc["suite_domains"]),
            tuple((str(d), str(s)) for d, s in doc["claimed"]),
        )

    def file_name(self) -> str:
        """``<suite>-<hash of the content>.source.json``: the name :meth:`save` writes under."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return f"{self.suite or 'all'}-{digest}{SOURCE_SUFFIX}"

    def save(self, folder: Path) -> Path:
        """Write this source to ``folder/``:meth:`file_name` (atomically; an existing file is the same)."""
        path = Path(folder) / self.file_name()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(self.to_json(), "utf-8")
            os.replace(tmp, path)
        return path

    def fingerprint(self) -> str:
        """sha256 of the split files, the class list file and the selection (media are named by the files)."""
        digest = hashlib.sha256()
        for name, path in (("train", self.train), ("test", self.test), ("classes", self.classes_file())):
            if path is not None and path.is_file():
                digest.update(name.encode())
                digest.update(path.read_bytes())
        selection = {"allow_outside": self.allow_outside, "suite_domains": self.suite_domains,
                     "claimed": self.claimed}
        digest.update(json.dumps(selection, sort_keys=True, default=list).encode())
        return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# reading records
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TaskInfo:
    classes: tuple[str, ...]
    domain: str | None


def _read_classes_json(path: Path | None, problems: list[Problem]) -> dict[str, _TaskInfo]:
    if path is None:
        return {}
    where = str(path)
    try:
        raw = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        problems.append(Problem(where, exc.lineno, "json", f"not valid JSON: {exc.msg}"))
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(where, 0, "file", f"cannot be read: {first_line(exc)}"))
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
        bad = [c for c in classes if split_release_labels(c) != [c.strip()]]
        if bad:
            problems.append(Problem(
                where, 0, str(task),
                f"class names cannot contain an answer separator (', ', ' and ', ' & ', ',', '&'): {bad}",
            ))
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


@dataclass
class _Draft:
    """A record read without opening its media: what it says and where its files are."""

    split: str
    where: str
    line: int
    uid: str
    problem: str
    answers: list[str]
    dataset: str
    task: str
    domain: str
    images: list[tuple[str, Path]]
    videos: list[tuple[str, Path]]
    series: list[tuple[str, Path]]
    mask: tuple[str, Path] | None
    bbox: tuple[float, float, float, float] | None
    ok: bool = True
    labels: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def inputs_key(self) -> tuple:
        """What a model sees of this record: duplicates share it."""
        return (self.problem.strip(), tuple(p for _, p in self.images), tuple(p for _, p in self.videos),
                tuple(p for _, p in self.series), self.mask[1] if self.mask else None, self.bbox)


class _Reader:
    """Turns JSON records into drafts: domain, dataset and task resolved, paths confined."""

    def __init__(self, source: DataSource, problems: list[Problem], warnings: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        self.warnings = warnings
        self.tasks = _read_classes_json(source.classes_file(), problems)

    def _bad(self, where: str, line: int, name: str, message: str) -> None:
        self.problems.append(Problem(where, line, name, message))

    def _warn(self, where: str, line: int, name: str, message: str) -> None:
        self.warnings.append(Problem(where, line, name, message, "warning"))

    def _paths(self, rels: list[str], base: Path, where: str, line: int, name: str) -> list[tuple[str, Path]]:
        out = []
        for rel in rels:
            path = (base / rel).resolve()
            files = signal_files(path) if name == "time-series" else [path]
            outside = [f for f in files if not f.resolve().is_relative_to(base)]
            if outside and not self.source.allow_outside:
                self._bad(where, line, name, f"{rel}: resolves to {outside[0].resolve()}, outside the data folder "
                          f"{base}; keep media inside it (or pass --allow-outside-data)")
            else:
                out.append((rel, path))
        return out

    def classes_of(self, task: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """Class list and aliases of a task ((), () when neither classes.json nor the catalogue has it)."""
        info = self.tasks.get(normalize_label(task))
        if info is not None:
            return info.classes, ()
        if task in MIMIC_TASKS:
            return MIMIC_TASKS[task], ()
        entry = find_dataset(task)
        return (entry.classes, entry.aliases) if entry is not None else ((), ())

    def _mimic_task(self, rec: dict[str, Any], answers: list[str], dataset: str | None, where: str, line: int) -> str | None:
        task = rec.get("task")
        if task is not None:
            if not isinstance(task, str) or normalize_label(task) not in MIMIC_TASKS:
                self._bad(where, line, "task", f"{task!r} is not a MIMIC-IV task; use one of {', '.join(MIMIC_TASKS)}")
                return None
            return normalize_label(task)
        problem = str(rec.get("problem", ""))
        from_prompt = release_mimic_task(problem)
        if from_prompt is not None:
            return from_prompt
        if dataset is not None and normalize_label(dataset) in MIMIC_RELEASE_DATASETS:
            return MIMIC_RELEASE_DATASETS[normalize_label(dataset)]
        keys = {normalize_label(x) for x in answers}
        matches = [t for t in MIMIC_TASKS if keys and keys <= set(class_lookup(self.classes_of(t)[0]))]
        if len(matches) == 1:
            return matches[0]
        text = normalize_label(problem)
        if "mortality" in text or " die" in text:
            return "ihm48"
        if "length of stay" in text:
            return "los"
        self._bad(where, line, "task", 'cannot tell whether this MIMIC-IV record is "los" or "ihm48"; add "task"')
        return None

    def draft(self, rec: Any, where: str, line: int, base: Path, split: str) -> _Draft | None:
        """Read one parsed JSON line (problems are recorded); None when it cannot be a record at all."""
        n_before = len(self.problems)
        if not isinstance(rec, dict):
            self._bad(where, line, "record", f"expected a JSON object, got {type(rec).__name__}")
            return None
        problem_text = rec.get("problem")
        if not isinstance(problem_text, str) or not problem_text.strip():
            self._bad(where, line, "problem", "missing or empty; the prompt text is required")
            problem_text = ""
        answer = rec.get("answer")
        answers: list[str] = []
        if isinstance(answer, str):
            answers = split_release_labels(answer)
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            answers = list(dict.fromkeys(a.strip() for a in answer))
        if not answers or answers == [""]:
            self._bad(where, line, "answer", f"missing or empty; expected labels such as \"A, B\", got {answer!r}")
            answers = []
        elif "" in answers:
            self._bad(where, line, "answer", f"{answer!r} has an empty label between separators")
        given = rec.get("dataset")
        if given is not None and (not isinstance(given, str) or not given.strip()):
            self._bad(where, line, "dataset", f"expected a dataset name, got {given!r}")
            given = None
        given = given.strip() if isinstance(given, str) else None

        images = self._paths(_as_path_list(rec.get("images"), where, line, "images", self.problems), base, where, line, "images")
        videos = self._paths(_as_path_list(rec.get("videos"), where, line, "videos", self.problems), base, where, line, "videos")
        series = self._paths(
            _as_path_list(rec.get("time-series"), where, line, "time-series", self.problems), base, where, line, "time-series"
        )
        mask = None
        seg = rec.get("segmentation_path")
        if seg is not None and seg != "":
            if not isinstance(seg, str):
                self._bad(where, line, "segmentation_path", f"expected a relative path or null, got {seg!r}")
            else:
                found = self._paths([seg], base, where, line, "segmentation_path")
                mask = found[0] if found else None
        bbox = self._bbox(rec.get("bbox"), where, line)

        first_media = next((rel for rel, _ in images + videos + series), None)
        origin = path_origin(first_media) if first_media is not None else None
        mimic = (
            release_mimic_task(problem_text) is not None
            or (given is not None and normalize_label(given) in {normalize_label(MIMIC_DATASET), *MIMIC_RELEASE_DATASETS})
        )
        dataset: str | None
        task: str | None
        domain: str | None
        if mimic:
            dataset = MIMIC_DATASET
            task = self._mimic_task(rec, answers, given, where, line)
            domain = task
            self._check_mimic_domain(rec.get("domain"), task, where, line)
        else:
            dataset = self._dataset(given, origin, rec.get("domain"))
            if dataset is None:
                shown = f"the path {first_media} does not name one (<domain>/<dataset>/<file>)" if first_media else "the record has no media"
                self._bad(where, line, "dataset", f"missing, and {shown}; add \"dataset\"")
            task = dataset
            domain = self._domain(rec, dataset, origin, bool(series) and not images and not videos, where, line)
        if len(self.problems) > n_before or dataset is None or task is None or domain is None:
            return _Draft(split, where, line, "", problem_text, answers, dataset or "", task or "", domain or "",
                          images, videos, series, mask, bbox, ok=False)
        uid = rec.get("id")
        return _Draft(split, where, line, str(uid) if uid is not None else f"{split}:{line}", problem_text, answers,
                      dataset, task, domain, images, videos, series, mask, bbox)

    def _bbox(self, raw: Any, where: str, line: int) -> tuple[float, float, float, float] | None:
        if raw is None or raw == []:
            return None
        if not (isinstance(raw, list) and len(raw) == 4 and all(_number(v) for v in raw)):
            self._bad(where, line, "bbox", f"expected [x1, y1, x2, y2] (4 finite numbers), got {raw!r}")
            return None
        if is_no_box(raw):
            return None
        x1, y1, x2, y2 = (float(v) for v in raw)
        if not (x1 < x2 and y1 < y2):
            self._bad(where, line, "bbox", f"{raw}: needs x1 < x2 and y1 < y2 ([0, 0, 0, 0] means no box)")
            return None
        if x1 < 0 or y1 < 0:
            self._bad(where, line, "bbox", f"{raw}: negative coordinates lie outside the image")
            return None
        return (x1, y1, x2, y2)

    def _dataset(self, given: str | None, origin: Any, domain_field: Any) -> str | None:
        """The dataset's name: classes.json's key, the catalogue's name, or the name as written."""
        domain_hint = domain_field.strip() if isinstance(domain_field, str) and domain_field.strip() else None
        if domain_hint is None and origin is not None and origin.known:
            domain_hint = origin.domain
        name = given if given is not None else (origin.dataset_folder if origin is not None else None)
        if name is None:
            return None
        if normalize_label(name) in self.tasks:
            return name
        entry = find_dataset(name, domain_hint) or find_dataset(name)
        return entry.dataset if entry is not None else name

    def _domain(self, rec: dict[str, Any], dataset: str | None, origin: Any, signal_only: bool, where: str,
                line: int) -> str | None:
        """The record's domain, first of: ``domain``, classes.json, catalogue, path; warns on contradictions."""
        candidates: list[tuple[str, str]] = []
        given = rec.get("domain")
        if isinstance(given, str) and given.strip():
            candidates.append(("the record's \"domain\"", given.strip()))
        if dataset is not None:
            info = self.tasks.get(normalize_label(dataset))
            if info is not None and info.domain:
                candidates.append(("classes.json", info.domain))
            entry = find_dataset(dataset)
            if entry is not None and entry.domain != "multimodal" and info is None:
                candidates.append((f"the catalogue ({entry.dataset})", entry.domain))
        if origin is not None and origin.known:
            candidates.append(("the path", origin.domain))
        if not candidates:
            if signal_only:
                return ECG_DOMAIN
            if origin is not None:
                return origin.domain
            self._bad(where, line, "domain", f"cannot infer the domain of dataset {dataset!r}; add \"domain\"")
            return None
        chosen_from, chosen = candidates[0]
        for source, domain in candidates[1:]:
            if domain != chosen:
                self._warn(where, line, "domain", f"{chosen!r} from {chosen_from} contradicts {source}, which says "
                           f"{domain!r}; {chosen!r} is used")
                break
        return chosen

    def _check_mimic_domain(self, given: Any, task: str | None, where: str, line: int) -> None:
        if isinstance(given, str) and given.strip() and task is not None and given.strip() not in (task, "multimodal"):
            self._warn(where, line, "domain", f"{given.strip()!r} contradicts the MIMIC-IV task {task!r}, which is "
                       "the domain used")


def _read_split(source: DataSource, split: str, reader: _Reader) -> list[_Draft]:
    path = source.train if split == "train" else source.test
    where = str(path)
    problems = reader.problems
    if not path.is_file():
        message = (f"missing; a data directory needs {' and '.join(s + '.jsonl' for s in SPLITS)}"
                   if source.folder is not None else "does not exist")
        problems.append(Problem(where, 0, "file", message))
        return []
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(where, 0, "file", f"cannot be read as UTF-8 text: {first_line(exc)}"))
        return []
    base = path.resolve().parent
    ids: dict[str, int] = {}
    drafts: list[_Draft] = []
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
        draft = reader.draft(rec, where, line_no, base, split)
        if draft is not None:
            drafts.append(draft)
    if n_records == 0:
        problems.append(Problem(where, 0, "file", "has no records"))
    return drafts


def _assign_classes(drafts: list[_Draft], reader: _Reader) -> dict[str, tuple[str, ...]]:
    """Class lists of every task (unknown datasets: their answers, with a warning) and canonical labels."""
    tasks: dict[str, tuple[str, ...]] = {}
    aliases: dict[str, tuple[tuple[str, str], ...]] = {}
    seen: dict[str, list[str]] = defaultdict(list)
    first: dict[str, _Draft] = {}
    for d in drafts:
        if d.task and d.task not in tasks:
            tasks[d.task], aliases[d.task] = reader.classes_of(d.task)
        if d.task and not tasks[d.task]:
            first.setdefault(d.task, d)
            seen[d.task].extend(a for a in d.answers if a and a not in seen[d.task])
    for task, labels in seen.items():
        tasks[task] = tuple(labels)
        d = first[task]
        reader._warn(d.where, d.line, "dataset", f"{task!r} is not in the CLIMB catalogue or classes.json; its "
                     f"{len(labels)} classes are taken from the answers ({'; '.join(labels)}); list them in "
                     "classes.json to fix the class list")
    for d in drafts:
        if not d.ok:
            continue
        lookup = class_lookup(tasks[d.task], aliases[d.task])
        canonical: list[str] = []
        for label in d.answers:
            key = normalize_label(label)
            if key not in lookup:
                reader._bad(d.where, d.line, "answer", f"label {label!r} is not a class of {d.task!r} "
                            f"({'; '.join(tasks[d.task])})")
                d.ok = False
            elif lookup[key] not in canonical:
                canonical.append(lookup[key])
        d.labels, d.classes = tuple(canonical), tasks[d.task]
    return tasks


def _cross_record_warnings(drafts: list[_Draft], reader: _Reader) -> None:
    """Duplicate records inside a split, and test records whose inputs also appear in train."""
    first: dict[tuple[str, tuple], _Draft] = {}
    for d in drafts:
        key = d.inputs_key()
        earlier = first.get((d.split, key))
        if earlier is not None:
            same = "the same answer" if earlier.answers == d.answers else "a different answer"
            reader._warn(d.where, d.line, "record", f"duplicate of line {earlier.line} (same inputs, {same})")
        else:
            first[(d.split, key)] = d
        if d.split == "test" and ("train", key) in first:
            train = first[("train", key)]
            reader._warn(d.where, d.line, "record", f"same inputs as {train.where}:{train.line}: a test record "
                         "also in train")


# --------------------------------------------------------------------------------------------
# media checks
# --------------------------------------------------------------------------------------------
class _MediaChecker:
    """Opens each media file once and turns a draft into a Sample (or records why it cannot)."""

    def __init__(self, reader: _Reader) -> None:
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

    def sample(self, d: _Draft) -> Sample | None:
        bad, warn = self.reader._bad, self.reader._warn
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
                warn(d.where, d.line, "segmentation_path", f"{rel}: mask has no foreground pixels; {fallback}")
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

    def findings(self) -> list[Problem]:
        """Problems and warnings in line order: the train file's, the test file's, then other files'."""
        order = {str(self.source.train): 0, str(self.source.test): 1}
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
    reader = _Reader(source, problems, warnings)
    drafts = [d for split in SPLITS for d in _read_split(source, split, reader)]
    tasks = _assign_classes(drafts, reader)
    _cross_record_warnings(drafts, reader)
    kept: list[_Draft] = []
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
                     records, set_aside)


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
        root=root, train=samples["train"], test=samples["test"], domains=domains, tasks=check.tasks,
        warnings=check.warnings, set_aside=check.set_aside,
        set_aside_reason={d: check.set_aside_reason(d) for d in check.set_aside},
    )


def summarize(source: DataSource, limit: int = 8) -> list[str]:
    """A few plain lines about a source without opening its media: records kept and set aside per
    domain, and the count of problems and warnings (for the run plan)."""
    check = check_data(source, media=False)
    lines = []

    def per_domain(counts: dict[str, dict[str, int]], domains: Iterable[str]) -> str:
        parts = [f"{d} {counts['train'].get(d, 0)}/{counts['test'].get(d, 0)}" for d in domains]
        return ", ".join(parts[:limit]) + (f", ... ({len(parts) - limit} more)" if len(parts) > limit else "")

    kept = order_domains(d for split in SPLITS for d in check.records[split] if source.keeps(d))
    n_train = sum(check.records["train"].get(d, 0) for d in kept)
    n_test = sum(check.records["test"].get(d, 0) for d in kept)
    who = f"{source.suite} uses" if source.suite else "uses"
    lines.append(f"{who} {n_train} train / {n_test} test records (train/test per domain: "
                 f"{per_domain(check.records, kept) or 'none'})")
    by_reason: dict[str, list[str]] = defaultdict(list)
    for d, n in check.set_aside.items():
        by_reason[check.set_aside_reason(d)].append(f"{d} {n['train']}/{n['test']}")
    for reason, parts in by_reason.items():
        lines.append(f"set aside: {', '.join(parts)} ({reason})")
    if check.problems or check.warnings:
        kinds: dict[str, int] = defaultdict(int)
        for w in check.warnings:
            kinds[w.field] += 1
        detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
        lines.append(
            f"{len(check.problems)} problem(s), {len(check.warnings)} warning(s)"
            + (f" ({detail})" if detail else "")
            + f" before opening the media; see `rlbench-med data validate {source.describe()}`"
        )
    return lines
