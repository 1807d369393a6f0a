"""Conventions of the QoQ-Med release's data, restated as small pure functions.

Each convention cites the release's code (QoQ_Med commit ``97f7f3d``: ``verl/utils/dataset.py`` is
DS, ``examples/reward_function/medical.py`` is MED); the loader (:mod:`.data`) and the release's
reward and evaluation use these functions, so a convention lives in one place.

- :func:`split_release_labels` (defined with the release's reward in :mod:`.release`): an answer
  string -> its set of labels (MED L13-23).
- :func:`release_mimic_task`: the two MIMIC-IV prompts the release recognises (DS L422-427).
- :func:`path_origin`: domain and dataset folders of a media path (DS L428-431).
- :func:`frame_indices`: which frames of a video the release samples (DS L128-191).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rlbench_med.suites.catalogue import domain_of_folder
from rlbench_med.suites.release import split_release_labels

__all__ = [
    "PathOrigin", "frame_indices", "is_no_box", "path_origin", "release_mimic_task",
    "split_release_labels",
]

MIMIC_PROMPTS: tuple[tuple[str, str], ...] = (
    ("How long will the patient stay in the hospital?", "los"),
    ("Will the patient survive for at least 48 hours?", "ihm48"),
)
"""Prompt sentences that make a release record a MIMIC-IV task, tested in this order (DS L422-427)."""

MIMIC_RELEASE_DATASETS: dict[str, str] = {"los_prediction": "los", "48_ihm": "ihm48"}
"""The release's ``dataset`` value of each MIMIC-IV task -> our task name."""


def release_mimic_task(problem: str) -> str | None:
    """``los`` / ``ihm48`` when the prompt holds one of the release's MIMIC-IV questions, else None."""
    for sentence, task in MIMIC_PROMPTS:
        if sentence in problem:
            return task
    return None


@dataclass(frozen=True)
class PathOrigin:
    """What the folders of a media path say about its record.

    ``domain`` is our domain name when a folder names one (a CLIMB domain folder such as
    ``chest_xray``, or a domain such as ``cxr``: ``known`` is True), else the first folder, as the
    release takes it (``known`` False). ``dataset_folder`` is the folder right after the domain
    folder, when another folder follows it (the file name is never a dataset).
    """

    domain: str
    known: bool
    dataset_folder: str | None


def path_origin(path: str) -> PathOrigin | None:
    """Domain and dataset folders of a relative media path; None for a path without a folder.

    ``chest_xray/chexpert_full/p1/view1.jpg`` -> ``cxr``, ``chexpert_full`` (the release's rule);
    ``images/cxr/mimic_cxr/a.png`` -> ``cxr``, ``mimic_cxr`` (a domain folder further down);
    ``endoscopic/cholec80/a.mp4`` -> ``endoscopic`` (unknown, kept as its own domain), ``cholec80``.
    """
    folders = [part for part in path.replace("\\", "/").split("/")[:-1] if part not in ("", ".", "..")]
    for i, folder in enumerate(folders):
        domain = domain_of_folder(folder)
        if domain is not None:
            return PathOrigin(domain, True, folders[i + 1] if i + 1 < len(folders) else None)
    if not folders:
        return None
    return PathOrigin(folders[0], False, folders[1] if len(folders) > 1 else None)


def frame_indices(total: int, n: int) -> list[int]:
    """Indices of the ``n`` frames sampled evenly from a video of ``total`` frames (DS L128-191).

    ``n = 1``: the middle frame ``total // 2``; ``n > 1``: ``floor(i (total - 1) / (n - 1))`` for
    ``i = 0..n-1`` (first and last included); none when ``total <= 0``.
    """
    if total <= 0 or n <= 0:
        return []
    if n == 1:
        return [total // 2]
    return [i * (total - 1) // (n - 1) for i in range(n)]


def is_no_box(box: Sequence[float]) -> bool:
    """Whether a 4-number box is the release's "no box" ``[0, 0, 0, 0]``."""
    return len(box) == 4 and all(float(v) == 0.0 for v in box)
