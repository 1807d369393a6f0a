"""Classes a trained policy gives up: per-class recall of each run against the starting policy's.

A reward paid per record (the paper's accuracy) is earned best by answering the class most likely for
each record, which for a doubtful record is a common one; the headline metrics (macro-F1, balanced
accuracy) weigh a rare class as much as a common one. So a policy can climb its training reward while
it stops answering a rare class, and its macro-F1 falls. This module finds where that happened.

Rule: in a single-label domain, a class with at least ``MIN_SUPPORT`` held-out records whose recall
under ``base`` (the shared start) is at least ``MIN_BASE_RECALL`` is *given up* by a run when that run's
recall is at most ``RATIO`` x base's. Recall of class ``c``: the share of records whose truth is ``c``
that are answered ``c`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Held-out records a class needs before its recall is judged (a recall of 10 records moves by 0.1 a record).
MIN_SUPPORT = 20
#: Base recall a class needs to have something to give up.
MIN_BASE_RECALL = 0.2
#: A run gives a class up when its recall is at most this share of base's.
RATIO = 0.5


def rule(split: str) -> str:
    """The rule and why it matters, in words, for the records of ``split``."""
    return (f"Recall of each class of a single-label domain on the {split} split against `base`'s. A class with at least "
            f"{MIN_SUPPORT} records and a recall of at least {MIN_BASE_RECALL:g} at `base` is listed where a seed's recall "
            f"is at most {RATIO:g} x base's. A reward paid per record is earned best by answering a doubtful record's "
            "most likely class, a common one; macro-F1 and balanced accuracy weigh a rare class as much as a common "
            "one, so a policy can climb its reward while it gives up a rare class and its macro-F1 falls.")


def class_recall(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(domain, class): (answered right, records)}`` over the single-label records (one true label)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for r in records:
        labels = list(r["labels"])
        if len(labels) != 1:
            continue
        key = (str(r["domain"]), str(labels[0]))
        hits, n = out.get(key, (0, 0))
        out[key] = (hits + int(list(r["predicted"]) == labels), n + 1)
    return out


@dataclass(frozen=True)
class GivenUp:
    """One class one algorithm gave up on some of its seeds."""

    algo: str
    domain: str
    label: str
    support: int
    base_recall: float
    recalls: tuple[tuple[int, float], ...]  # (seed, recall) of the seeds that gave it up
    seeds: int  # the algorithm's seeds

    def line(self) -> str:
        each = ", ".join(f"{r:.2f} (seed {s})" for s, r in self.recalls)
        return (f"`{self.algo}`: {self.domain} \"{self.label}\" ({self.support} records): recall {self.base_recall:.2f} "
                f"at `base`, {each}; {len(self.recalls)} of {self.seeds} seeds")


def given_up(runs: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]], base_of: Mapping[str, str]) -> list[GivenUp]:
    """The classes each algorithm of ``base_of`` (``{algo: its base label}``, e.g. ``grpo@text`` ->
    ``base@text``) gave up (module docstring) in ``runs`` (``{(label, seed): records}``), against its
    base's first run; an algorithm whose base has no run is left out."""
    out: list[GivenUp] = []
    for algo, base in base_of.items():
        first = min((s for label, s in runs if label == base), default=None)
        if first is None:
            continue
        reference = {k: (h / n, n) for k, (h, n) in class_recall(runs[(base, first)]).items()
                     if n >= MIN_SUPPORT and h / n >= MIN_BASE_RECALL}
        seeds = sorted(s for label, s in runs if label == algo)
        recalls = {s: class_recall(runs[(algo, s)]) for s in seeds}
        for (domain, label), (base_recall, support) in reference.items():
            low = []
            for s in seeds:
                hits, n = recalls[s].get((domain, label), (0, 0))
                if n and hits / n <= RATIO * base_recall:
                    low.append((s, hits / n))
            if low:
                out.append(GivenUp(algo, domain, label, support, base_recall, tuple(low), len(seeds)))
    return out
