"""Reading the records of a data set without opening their media.

:class:`RecordReader` turns each JSON line into a :class:`Draft`: labels split as the release
splits them, dataset, task and domain resolved (record fields, ``classes.json``, the catalogue,
the path's CLIMB folders), media paths resolved and confined to the data folder, the box read.
:func:`assign_classes` gives every task its class list (a dataset found nowhere takes its answers)
and canonical labels; :func:`cross_record_warnings` finds duplicates and test records also in
train. Findings are :class:`Problem` s: errors, or warnings of a :data:`WARNING_KINDS` kind.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench_med.suites.catalogue import (
    ECG_DOMAIN,
    MIMIC_DATASET,
    MIMIC_TASKS,
    class_lookup,
    declared_multi_label,
    find_dataset,
    normalize_label,
)
from rlbench_med.suites.media import first_line, signal_files
from rlbench_med.suites.release_format import (
    MIMIC_RELEASE_DATASETS,
    is_no_box,
    path_origin,
    release_mimic_task,
    split_release_labels,
)
from rlbench_med.suites.source import REQUIRED_SPLITS, DataSource, carve_count, carve_rank

WARNING_KINDS = ("duplicate", "test record in train", "validation record in train", "contradicting domain", "empty mask",
                 "classes from answers", "contradicting multi-label")


@dataclass(frozen=True)
class Problem:
    """One finding about a data set; ``str()`` gives ``file:line: field: message``.

    ``level`` is ``error`` (the data cannot be used) or ``warning`` (it can; the message starts
    with ``warning:``); a warning's ``kind`` names what it is about (:data:`WARNING_KINDS`), so
    they can be counted.
    """

    file: str
    line: int
    field: str
    message: str
    level: str = "error"
    kind: str = ""

    def __str__(self) -> str:
        text = f"warning: {self.message}" if self.level == "warning" else self.message
        return f"{self.file}:{self.line}: {self.field}: {text}"


@dataclass(frozen=True)
class _TaskInfo:
    classes: tuple[str, ...]
    domain: str | None
    multi_label: bool | None = None  # None: classes.json does not say


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
        multi = None
        classes = value
        if isinstance(value, dict):
            domain = value.get("domain")
            classes = value.get("classes")
            multi = value.get("multi_label")
            if domain is not None and (not isinstance(domain, str) or not domain.strip()):
                problems.append(Problem(where, 0, f"{task}.domain", "must be a non-empty string"))
                domain = None
            if multi is not None and not isinstance(multi, bool):
                problems.append(Problem(where, 0, f"{task}.multi_label", f"must be true or false, got {multi!r}"))
                multi = None
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
        out[normalize_label(task)] = _TaskInfo(tuple(c.strip() for c in classes), domain.strip() if domain else None,
                                               multi)
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


#: Characters a reader cannot see that change how a label looks or reads: the bidirectional controls
#: (a right-to-left override makes "Benign" display reversed) and the zero-width ones.
INVISIBLE = frozenset("\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                      "\u2060\u2066\u2067\u2068\u2069\ufeff")
#: Longest JSONL line read (characters): a record names its media by path, so a longer line is not a
#: record, and reading it whole would cost many times its size in memory.
MAX_LINE_CHARS = 1_000_000


def invisible_character(text: str) -> str | None:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: the first invisible or control character of ``text``, or None."""
    for c in text:
        if c in INVISIBLE or unicodedata.category(c) == "Cc":
            return f"U+{ord(c):04X} {unicodedata.name(c, 'CONTROL CHARACTER')}"
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a domain or dataset, or None. Names become parts of metric keys
    (``eval/<domain>/f1``) and MLflow treats those as paths, so each must be one path component."""
    if name in (".", ".."):
        return "it means the current or the parent folder"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    hidden = invisible_character(name)
    if hidden is not None:
        return f"it holds the invisible character {hidden}"
    return None


@dataclass
class Draft:
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
    says_multi_label: bool | None = None  # the record's own "multi_label" field, checked against the declaration

    def inputs_key(self) -> tuple:
        """What a model sees of this record: duplicates share it."""
        return (self.problem.strip(), tuple(p for _, p in self.images), tuple(p for _, p in self.videos),
                tuple(p for _, p in self.series), self.mask[1] if self.mask else None, self.bbox)


class RecordReader:
    """Turns JSON records into drafts: domain, dataset and task resolved, paths confined."""

    def __init__(self, source: DataSource, problems: list[Problem], warnings: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        self.warnings = warnings
        self.tasks = _read_classes_json(source.classes_file(), problems)

    def bad(self, where: str, line: int, name: str, message: str) -> None:
        self.problems.append(Problem(where, line, name, message))

    def warn(self, where: str, line: int, name: str, message: str, kind: str) -> None:
        self.warnings.append(Problem(where, line, name, message, "warning", kind))

    def _paths(self, rels: list[str], base: Path, where: str, line: int, name: str) -> list[tuple[str, Path]]:
        out = []
        for rel in rels:
            path = (base / rel).resolve()
            files = signal_files(path) if name == "time-series" else [path]
            outside = [f for f in files if not f.resolve().is_relative_to(base)]
            if outside and not self.source.allow_outside:
                self.bad(where, line, name, f"{rel}: resolves to {outside[0].resolve()}, outside the data folder "
                          f"{base}; keep media inside it (or pass --allow-outside-data)")
            else:
                out.append((rel, path))
        return out

    def _media(self, rec: dict[str, Any], name: str, base: Path, where: str, line: int) -> list[tuple[str, Path]]:
        """The record's list of paths under ``name``, each resolved and confined (problems recorded)."""
        return self._paths(_as_path_list(rec.get(name), where, line, name, self.problems), base, where, line, name)

    def classes_of(self, task: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """Class list and aliases of a task ((), () when neither classes.json nor the catalogue has it)."""
        info = self.tasks.get(normalize_label(task))
        if info is not None:
            return info.classes, ()
        if task in MIMIC_TASKS:
            return MIMIC_TASKS[task], ()
        entry = find_dataset(task)
        return (entry.classes, entry.aliases) if entry is not None else ((), ())

    def multi_label_of(self, task: str) -> tuple[bool, str] | None:
        """A task's declaration and where it comes from: classes.json, else the catalogue; None when neither says."""
        info = self.tasks.get(normalize_label(task))
        if info is not None and info.multi_label is not None:
            return info.multi_label, "classes.json"
        declared = declared_multi_label(task)
        return (declared, "the catalogue") if declared is not None else None

    def _mimic_task(
        self, rec: dict[str, Any], answers: list[str], dataset: str | None, where: str, line: int
    ) -> str | None:
        task = rec.get("task")
        if task is not None:
            if not isinstance(task, str) or normalize_label(task) not in MIMIC_TASKS:
                self.bad(where, line, "task", f"{task!r} is not a MIMIC-IV task; use one of {', '.join(MIMIC_TASKS)}")
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
        self.bad(where, line, "task", 'cannot tell whether this MIMIC-IV record is "los" or "ihm48"; add "task"')
        return None

    def draft(self, rec: Any, where: str, line: int, base: Path, split: str) -> Draft | None:
        """Read one parsed JSON line (problems are recorded); None when it cannot be a record at all."""
        n_before = len(self.problems)
        if not isinstance(rec, dict):
            self.bad(where, line, "record", f"expected a JSON object, got {type(rec).__name__}")
            return None
        problem_text = rec.get("problem")
        if not isinstance(problem_text, str) or not problem_text.strip():
            self.bad(where, line, "problem", "missing or empty; the prompt text is required")
            problem_text = ""
        answer = rec.get("answer")
        answers: list[str] = []
        if isinstance(answer, str):
            answers = split_release_labels(answer)
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            answers = list(dict.fromkeys(a.strip() for a in answer))
        if not answers or answers == [""]:
            self.bad(where, line, "answer", f"missing or empty; expected labels such as \"A, B\", got {answer!r}")
            answers = []
        elif "" in answers:
            self.bad(where, line, "answer", f"{answer!r} has an empty label between separators")
        for label in answers:
            hidden = invisible_character(label)
            if hidden is not None:
                self.bad(where, line, "answer", f"label {label!r} holds the invisible character {hidden}, which makes "
                         "labels look alike or reorders their text; remove it")
        given = rec.get("dataset")
        if given is not None and (not isinstance(given, str) or not given.strip()):
            self.bad(where, line, "dataset", f"expected a dataset name, got {given!r}")
            given = None
        given = given.strip() if isinstance(given, str) else None

        images, videos, series = (
            self._media(rec, name, base, where, line) for name in ("images", "videos", "time-series")
        )
        mask = None
        seg = rec.get("segmentation_path")
        if seg is not None and seg != "":
            if not isinstance(seg, str):
                self.bad(where, line, "segmentation_path", f"expected a relative path or null, got {seg!r}")
            else:
                found = self._paths([seg], base, where, line, "segmentation_path")
                mask = found[0] if found else None
        bbox = self._bbox(rec.get("bbox"), where, line)

        first_media = next((rel for rel, _ in images + videos + series), None)
        origin = path_origin(first_media) if first_media is not None else None
        mimic = (
            release_mimic_task(problem_text) is not None
            or (given is not None
                and normalize_label(given) in {normalize_label(MIMIC_DATASET), *MIMIC_RELEASE_DATASETS})
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
                shown = (f"the path {first_media} does not name one (<domain>/<dataset>/<file>)" if first_media
                         else "the record has no media")
                self.bad(where, line, "dataset", f"missing, and {shown}; add \"dataset\"")
            task = dataset
            domain = self._domain(rec, dataset, origin, bool(series) and not images and not videos, where, line)
        for name, value in (("dataset", dataset), ("domain", domain)):
            problem = name_problem(value) if value is not None else None
            if problem is not None:
                self.bad(where, line, name, f"{value!r} cannot be a {name} name: {problem} (names become parts of file "
                         "names and metric keys); rename it")
        if len(self.problems) > n_before or dataset is None or task is None or domain is None:
            return Draft(split, where, line, "", problem_text, answers, dataset or "", task or "", domain or "",
                          images, videos, series, mask, bbox, ok=False)
        uid = rec.get("id")
        says = rec.get("multi_label")
        return Draft(split, where, line, str(uid) if uid is not None else f"{split}:{line}", problem_text, answers,
                      dataset, task, domain, images, videos, series, mask, bbox,
                      says_multi_label=says if isinstance(says, bool) else None)

    def _bbox(self, raw: Any, where: str, line: int) -> tuple[float, float, float, float] | None:
        if raw is None or raw == []:
            return None
        if not (isinstance(raw, list) and len(raw) == 4 and all(_number(v) for v in raw)):
            self.bad(where, line, "bbox", f"expected [x1, y1, x2, y2] (4 finite numbers), got {raw!r}")
            return None
        if is_no_box(raw):
            return None
        x1, y1, x2, y2 = (float(v) for v in raw)
        if not (x1 < x2 and y1 < y2):
            self.bad(where, line, "bbox", f"{raw}: needs x1 < x2 and y1 < y2 ([0, 0, 0, 0] means no box)")
            return None
        if x1 < 0 or y1 < 0:
            self.bad(where, line, "bbox", f"{raw}: negative coordinates lie outside the image")
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
            self.bad(where, line, "domain", f"cannot infer the domain of dataset {dataset!r}; add \"domain\"")
            return None
        chosen_from, chosen = candidates[0]
        for source, domain in candidates[1:]:
            if domain != chosen:
                self.warn(where, line, "domain", f"{chosen!r} from {chosen_from} contradicts {source}, which says "
                           f"{domain!r}; {chosen!r} is used", "contradicting domain")
                break
        return chosen

    def _check_mimic_domain(self, given: Any, task: str | None, where: str, line: int) -> None:
        if isinstance(given, str) and given.strip() and task is not None and given.strip() not in (task, "multimodal"):
            self.warn(where, line, "domain", f"{given.strip()!r} contradicts the MIMIC-IV task {task!r}, which is "
                       "the domain used", "contradicting domain")


def read_split(source: DataSource, split: str, reader: RecordReader) -> list[Draft]:
    """The drafts of one split's file (none for a validation split without a file: see :func:`carve_validation`)."""
    path = source.split_file(split)
    if path is None:
        return []
    where = str(path)
    problems = reader.problems
    if not path.is_file():
        message = (f"missing; a data directory needs {' and '.join(s + '.jsonl' for s in REQUIRED_SPLITS)}"
                   if source.folder is not None else "does not exist")
        problems.append(Problem(where, 0, "file", message))
        return []
    base = path.resolve().parent
    ids: dict[str, int] = {}
    drafts: list[Draft] = []
    n_records = 0
    try:
        lines = list(_bounded_lines(path))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(where, 0, "file", f"cannot be read as UTF-8 text: {first_line(exc)}"))
        return []
    for line_no, line, length in lines:
        if length > MAX_LINE_CHARS:  # not parsed: json.loads of it could take tens of times its size
            n_records += 1
            problems.append(Problem(where, line_no, "record", f"line is {length:,} characters long, more than the "
                                    f"{MAX_LINE_CHARS:,} a record may take (media belong in the files it names); not read"))
            continue
        if not line.strip():
            continue
        n_records += 1
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(where, line_no, "json", f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        except RecursionError:
            problems.append(Problem(where, line_no, "json", "nested deeper than the JSON reader allows (about "
                                    f"{sys.getrecursionlimit()} levels); a record is a flat object"))
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


def _bounded_lines(path: Path) -> Iterator[tuple[int, str, int]]:
    """``(line number, text, length)`` of each line of a UTF-8 file. A line longer than
    :data:`MAX_LINE_CHARS` is measured in chunks, never held whole, and its text given as ``""``."""
    with open(path, encoding="utf-8") as fh:
        for line_no in itertools.count(1):
            line = fh.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            text = line.rstrip("\n")
            length = len(text)
            if length > MAX_LINE_CHARS:
                text = ""
                while line and not line.endswith("\n"):
                    line = fh.readline(MAX_LINE_CHARS)
                    length += len(line.rstrip("\n"))
            yield line_no, text, length


def unicode_twins(drafts: list[Draft], reader: RecordReader) -> None:
    """Labels of a task that differ only in their Unicode form (``Ménière`` composed, NFC, and
    decomposed, NFD): they look the same but would be two classes; each later form is a problem."""
    first: dict[tuple[str, str], tuple[str, Draft]] = {}
    for d in drafts:
        for label in d.answers:
            key = normalize_label(label)
            seen = first.setdefault((d.task, unicodedata.normalize("NFC", key)), (key, d))
            if seen[0] != key:
                reader.bad(d.where, d.line, "answer", f"label {label!r} is the label of {seen[1].where}:{seen[1].line} "
                           "in another Unicode form (composed vs decomposed characters); write both the same way")
                d.ok = False


def assign_classes(drafts: list[Draft], reader: RecordReader) -> dict[str, tuple[str, ...]]:
    """Class lists of every task (unknown datasets: their answers, with a warning) and canonical labels."""
    tasks: dict[str, tuple[str, ...]] = {}
    aliases: dict[str, tuple[tuple[str, str], ...]] = {}
    seen: dict[str, list[str]] = defaultdict(list)
    first: dict[str, Draft] = {}
    for d in drafts:
        if d.task and d.task not in tasks:
            tasks[d.task], aliases[d.task] = reader.classes_of(d.task)
        if d.task and not tasks[d.task]:
            first.setdefault(d.task, d)
            seen[d.task].extend(a for a in d.answers if a and a not in seen[d.task])
    for task, labels in seen.items():
        tasks[task] = tuple(labels)
        d = first[task]
        reader.warn(d.where, d.line, "dataset", f"{task!r} is not in the CLIMB catalogue or classes.json; its "
                     f"{len(labels)} classes are taken from the answers ({'; '.join(labels)}), and it is multi-label "
                     "if an answer names several; list them in classes.json (with \"multi_label\") to fix both",
                     "classes from answers")
    lookups = {task: class_lookup(classes, aliases[task]) for task, classes in tasks.items()}
    for d in drafts:
        if not d.ok:
            continue
        lookup = lookups[d.task]
        canonical: list[str] = []
        for label in d.answers:
            key = normalize_label(label)
            if key not in lookup:
                reader.bad(d.where, d.line, "answer", f"label {label!r} is not a class of {d.task!r} "
                            f"({'; '.join(tasks[d.task])})")
                d.ok = False
            elif lookup[key] not in canonical:
                canonical.append(lookup[key])
        d.labels, d.classes = tuple(canonical), tasks[d.task]
    return tasks


def carve_validation(drafts: list[Draft]) -> None:
    """Move each task's :func:`~rlbench_med.suites.source.carve_count` training drafts with the lowest
    :func:`~rlbench_med.suites.source.carve_rank` to the validation split (in place)."""
    by_task: dict[str, list[Draft]] = defaultdict(list)
    for d in drafts:
        if d.split == "train":
            by_task[d.task].append(d)
    for task_drafts in by_task.values():
        for d in sorted(task_drafts, key=lambda d: carve_rank(d.uid))[: carve_count(len(task_drafts))]:
            d.split = "validation"


def declare_multi_label(drafts: list[Draft], reader: RecordReader) -> dict[str, bool]:
    """Whether each task is multi-label: its declaration (classes.json, else the catalogue); a task
    declared nowhere is multi-label when one of its answers names several labels (its classes come
    from the answers too, and a warning says so). A record that contradicts its task's declaration
    (several labels on a single-label task, or its own ``"multi_label"`` field) is a warning; the
    declaration stands."""
    out: dict[str, bool] = {}
    for d in drafts:
        if d.task and d.task not in out:
            found = reader.multi_label_of(d.task)
            out[d.task] = found[0] if found is not None else any(
                len(e.labels or e.answers) > 1 for e in drafts if e.task == d.task)
    for d in drafts:
        found = reader.multi_label_of(d.task) if d.task else None
        if found is None:
            continue
        multi, where = found
        n = len(d.labels or d.answers)
        kind = "single" if not multi else "multi"
        if not multi and n > 1:
            reader.warn(d.where, d.line, "answer", f"{n} labels, but {d.task!r} is declared single-label by {where}; "
                         "an answer naming several labels scores as no prediction in f1_strict (declare "
                         f'{{"{d.task}": {{"classes": [...], "multi_label": true}}}} in classes.json if it is '
                         "multi-label)", "contradicting multi-label")
        elif d.says_multi_label is not None and d.says_multi_label != multi:
            reader.warn(d.where, d.line, "multi_label", f"{str(d.says_multi_label).lower()} contradicts {where}, which "
                         f"declares {d.task!r} {kind}-label; the declaration is used", "contradicting multi-label")
    return out


def cross_record_warnings(drafts: list[Draft], reader: RecordReader) -> None:
    """Duplicate records inside a split, and held-out (validation, test) records whose inputs also appear in train."""
    first: dict[tuple[str, tuple], Draft] = {}
    for d in drafts:
        key = d.inputs_key()
        earlier = first.get((d.split, key))
        if earlier is not None:
            same = "the same answer" if earlier.answers == d.answers else "a different answer"
            reader.warn(d.where, d.line, "record", f"duplicate of line {earlier.line} (same inputs, {same})",
                         "duplicate")
        else:
            first[(d.split, key)] = d
        if d.split != "train" and ("train", key) in first:
            train = first[("train", key)]
            reader.warn(d.where, d.line, "record", f"same inputs as {train.where}:{train.line}: a {d.split} record "
                         "also in train", f"{d.split} record in train")


