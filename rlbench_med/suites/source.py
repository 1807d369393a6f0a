"""Where a data set lives and which of its records a suite uses: :class:`DataSource`.

A source is its split files (``DIR/train.jsonl``, ``DIR/test.jsonl`` and, when present,
``DIR/validation.jsonl``; or files named ``train=PATH,test=PATH[,validation=PATH]``), an optional
class-list file, whether media may resolve outside the folder of their JSONL file, and the suite
selection. The sweep saves the source of its suite as a ``*.source.json`` file in the cache; every
job reads its data through that file.

**The validation split.** Every choice (curves, early looks, profile settings, tuning) reads the
validation split; the test split is scored once, at the end of a job. Without a validation file,
the validation split is carved from train (:func:`~rlbench_med.suites.records.carve_validation`): per task, the
``VALIDATION_FRACTION`` of its training records whose uids hash lowest (a task with fewer than
``1 / VALIDATION_FRACTION`` training records gives none), the same records on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from rlbench_med.suites.catalogue import order_domains

SPLITS = ("train", "validation", "test")
#: The splits a data set must have as files (validation may be carved from train).
REQUIRED_SPLITS = ("train", "test")
#: Fraction of each task's training records carved out as validation when there is no validation file.
VALIDATION_FRACTION = 0.1
SOURCE_SUFFIX = ".source.json"
_SOURCE_FORMAT = 1


@dataclass(frozen=True)
class DataSource:
    """The split files of a data set, its path policy, and the suite selection.

    ``DataSource.parse("DIR")`` reads ``DIR/train.jsonl``, ``DIR/test.jsonl`` and
    ``DIR/validation.jsonl`` when it exists; ``DataSource.parse("train=A.jsonl,test=B.jsonl
    [,validation=V.jsonl][,classes=C.json]")`` reads any files.
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
    validation: Path | None = None

    @classmethod
    def parse(cls, spec: str | Path, *, allow_outside: bool = False) -> DataSource:
        """A ``--data`` value: a folder, or ``train=PATH,test=PATH[,validation=PATH][,classes=PATH]``.

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
            if not eq or key not in (*SPLITS, "classes") or not value.strip():
                raise ValueError(
                    f"--data {text!r}: expected a folder or train=PATH,test=PATH[,validation=PATH][,classes=PATH]; "
                    f"cannot read {item!r}"
                )
            if key in parts:
                raise ValueError(f"--data {text!r}: {key}= given twice")
            parts[key] = Path(value.strip()).resolve()
        missing = [k for k in REQUIRED_SPLITS if k not in parts]
        if missing:
            raise ValueError(f"--data {text!r}: give {' and '.join(k + '=PATH' for k in missing)} too")
        return cls(parts["train"], parts["test"], parts.get("classes"), None, allow_outside,
                   validation=parts.get("validation"))

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

    def validation_file(self) -> Path | None:
        """``validation``, else ``validation.jsonl`` in the folder when it exists; None: carved from train."""
        if self.validation is not None:
            return self.validation
        if self.folder is not None and (self.folder / "validation.jsonl").is_file():
            return self.folder / "validation.jsonl"
        return None

    def split_file(self, split: str) -> Path | None:
        """The file of ``split`` (None for a validation split carved from train)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return self.validation_file() if split == "validation" else getattr(self, split)

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
        text += f",validation={self.validation}" if self.validation is not None else ""
        return text + (f",classes={self.classes}" if self.classes is not None else "")

    def to_json(self) -> str:
        doc = {
            "format": _SOURCE_FORMAT, "train": str(self.train), "test": str(self.test),
            "classes": str(self.classes) if self.classes is not None else None,
            "validation": str(self.validation) if self.validation is not None else None,
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
        optional = {k: Path(doc[k]) if doc.get(k) else None for k in ("classes", "folder", "validation")}
        return cls(
            Path(doc["train"]), Path(doc["test"]), optional["classes"], optional["folder"],
            bool(doc["allow_outside"]), doc.get("suite"), tuple(doc["suite_domains"]),
            tuple((str(d), str(s)) for d, s in doc["claimed"]), optional["validation"],
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
        """sha256 of the split files, the class list file, the selection and, for a validation split carved
        from train, the carving rule (media are named by the files)."""
        digest = hashlib.sha256()
        files = [(name, self.split_file(name)) for name in SPLITS] + [("classes", self.classes_file())]
        for name, path in files:
            if path is not None and path.is_file():
                digest.update(name.encode())
                digest.update(path.read_bytes())
        selection = {"allow_outside": self.allow_outside, "suite_domains": self.suite_domains,
                     "claimed": self.claimed}
        if self.validation_file() is None:
            selection["validation"] = f"carved {VALIDATION_FRACTION} of train by sha256(uid)"
        digest.update(json.dumps(selection, sort_keys=True, default=list).encode())
        return digest.hexdigest()


def carve_rank(uid: str) -> str:
    """The order in which :func:`~rlbench_med.suites.records.carve_validation` takes a task's training records (sha256 of the uid)."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()


def carve_count(n_train: int) -> int:
    """How many of a task's ``n_train`` training records become validation records when carved."""
    return int(n_train * VALIDATION_FRACTION)
