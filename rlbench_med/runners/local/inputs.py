"""Turn suite samples into the builtin policy's input tensors (loaded once per data directory).

Per sample: the first image resized to ``image_size`` (``[3, S, S]`` in [0, 1]); the first signal
with leads padded/cut to ``signal_leads``, linearly resampled to ``signal_length`` and standardised
per lead; the ``problem`` text as hashed word ids (crc32 of lower-cased words, ``text_words``
kept, ids in ``[1, text_buckets]``, 0 = padding); the task index; whether a box is expected; the
target box (``bbox``, else the bounding box of the mask).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.policy import PromptBatch
from rlbench_med.runners.local.vocab import AnswerVocab
from rlbench_med.suites.data import ClinicalData, Sample, load_data, load_image, load_mask, load_signal

_WORD = re.compile(r"[a-z0-9]+")


def hash_words(text: str, buckets: int, max_words: int) -> list[int]:
    """Hashed word ids of ``text``: ``crc32(word) % buckets + 1`` for the first ``max_words`` words."""
    return [zlib.crc32(w.encode()) % buckets + 1 for w in _WORD.findall(text.lower())[:max_words]]


def region_box(sample: Sample) -> tuple[float, float, float, float] | None:
    """The sample's target box in pixels: ``bbox`` or the mask's bounding box (exclusive edges)."""
    if sample.bbox is not None:
        return sample.bbox
    if sample.segmentation_path is None:
        return None
    mask = load_mask(sample.segmentation_path)
    ys, xs = np.nonzero(mask)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _signal(path: Path, leads: int, length: int) -> torch.Tensor:
    arr = torch.from_numpy(load_signal(path))[:leads]
    if arr.shape[0] < leads:
        arr = torch.cat([arr, torch.zeros(leads - arr.shape[0], arr.shape[1])])
    arr = F.interpolate(arr[None], size=length, mode="linear", align_corners=False)[0]
    return (arr - arr.mean(1, keepdim=True)) / (arr.std(1, keepdim=True) + 1e-6)


@dataclass
class EncodedSplit:
    """One split's samples and their input tensors (row ``i`` of ``prompts`` is ``samples[i]``)."""

    samples: list[Sample]
    prompts: PromptBatch
    boxes: list[tuple[float, float, float, float] | None]

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class EncodedData:
    """A data directory ready for the builtin policy."""

    data: ClinicalData
    vocab: AnswerVocab
    train: EncodedSplit
    test: EncodedSplit
    use_image: bool
    use_signal: bool


def _encode_split(samples: list[Sample], vocab: AnswerVocab, config: LocalConfig) -> EncodedSplit:
    n, s = len(samples), config.image_size
    image = torch.zeros(n, 3, s, s)
    has_image = torch.zeros(n, dtype=torch.bool)
    signal = torch.zeros(n, config.signal_leads, config.signal_length)
    has_signal = torch.zeros(n, dtype=torch.bool)
    text = torch.zeros(n, config.text_words, dtype=torch.long)
    task = torch.zeros(n, dtype=torch.long)
    grounded = torch.zeros(n, dtype=torch.bool)
    boxes = []
    for i, sample in enumerate(samples):
        if sample.images:
            image[i] = torch.from_numpy(load_image(sample.images[0], size=s))
            has_image[i] = True
        if sample.time_series:
            signal[i] = _signal(sample.time_series[0], config.signal_leads, config.signal_length)
            has_signal[i] = True
        ids = hash_words(sample.problem, config.text_buckets, config.text_words)
        text[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        task[i] = vocab.task_index(sample.task)
        box = region_box(sample)
        grounded[i] = box is not None and sample.image_size is not None
        boxes.append(box if grounded[i] else None)
    return EncodedSplit(samples, PromptBatch(image, has_image, signal, has_signal, text, task, grounded), boxes)


_CACHE: dict[tuple, EncodedData] = {}


def encode_data(root: Path, config: LocalConfig) -> EncodedData:
    """Load ``root`` with ``suites.data.load_data`` and encode both splits (memoised per process)."""
    root = Path(root).resolve()
    stamps = tuple((root / f).stat().st_mtime_ns for f in ("train.jsonl", "test.jsonl") if (root / f).exists())
    key = (str(root), stamps, config.image_size, config.signal_length, config.signal_leads, config.text_buckets,
           config.text_words, config.reasoning_vocab, config.box_bins, config.max_labels)
    if key not in _CACHE:
        data = load_data(root)
        vocab = AnswerVocab.build(data.tasks, reasoning_vocab=config.reasoning_vocab, box_bins=config.box_bins,
                                  max_labels=config.max_labels)
        train = _encode_split(data.train, vocab, config)
        test = _encode_split(data.test, vocab, config)
        _CACHE.clear()
        _CACHE[key] = EncodedData(
            data, vocab, train, test,
            use_image=bool(train.prompts.has_image.any()), use_signal=bool(train.prompts.has_signal.any()),
        )
    return _CACHE[key]
