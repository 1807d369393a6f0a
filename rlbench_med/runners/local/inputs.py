"""Turn suite samples into the builtin policy's input tensors (loaded once per data directory).

Per sample: its visual frames resized to ``image_size`` (``[F, 3, S, S]`` in [0, 1]): the first
image, then ``video_frames`` frames sampled evenly from the first video (the release's sampling,
:func:`~rlbench_med.suites.release_format.frame_indices`), ``F`` the most any sample has and unused
slots marked invalid; the first signal with leads padded/cut to ``signal_leads``, linearly
resampled to ``signal_length`` and standardised per lead; the ``problem`` text as hashed word ids
(crc32 of lower-cased words, ``text_words`` kept, ids in ``[1, text_buckets]``, 0 = padding); the
task index; whether a box is expected; the target box (``bbox``, else the bounding box of the mask
on the image's pixel grid).
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
from rlbench_med.suites.data import (
    SPLITS,
    ClinicalData,
    DataSource,
    Sample,
    load_data,
    load_image,
    load_sample_mask,
    load_signal,
    load_video_frames,
)

_WORD = re.compile(r"[a-z0-9]+")


def hash_words(text: str, buckets: int, max_words: int) -> list[int]:
    """Hashed word ids of ``text``: ``crc32(word) % buckets + 1`` for the first ``max_words`` words."""
    return [zlib.crc32(w.encode()) % buckets + 1 for w in _WORD.findall(text.lower())[:max_words]]


def region_box(sample: Sample) -> tuple[float, float, float, float] | None:
    """The sample's target box in pixels: ``bbox`` or the mask's bounding box (exclusive edges)."""
    if sample.bbox is not None:
        return sample.bbox
    mask = load_sample_mask(sample)
    if mask is None:
        return None
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
    validation: EncodedSplit
    test: EncodedSplit
    use_image: bool
    use_signal: bool


def frame_slots(samples: list[Sample], video_frames: int) -> int:
    """Visual slots per prompt: 1 for the first image, ``video_frames`` for the first video (at least 1)."""
    return max([int(bool(x.images)) + video_frames * int(bool(x.videos)) for x in samples] + [1])


def visual_frames(sample: Sample, config: LocalConfig) -> np.ndarray:
    """The sample's frames ``[f, 3, S, S]``: its first image, then the sampled frames of its first video."""
    parts = []
    if sample.images:
        parts.append(load_image(sample.images[0], size=config.image_size)[None])
    if sample.videos:
        parts.append(load_video_frames(sample.videos[0], config.video_frames, size=config.image_size))
    if not parts:
        return np.zeros((0, 3, config.image_size, config.image_size), np.float32)
    return np.concatenate(parts)


def _encode_split(samples: list[Sample], vocab: AnswerVocab, config: LocalConfig, slots: int) -> EncodedSplit:
    n, s = len(samples), config.image_size
    image = torch.zeros(n, slots, 3, s, s)
    frames = torch.zeros(n, slots, dtype=torch.bool)
    signal = torch.zeros(n, config.signal_leads, config.signal_length)
    has_signal = torch.zeros(n, dtype=torch.bool)
    text = torch.zeros(n, config.text_words, dtype=torch.long)
    task = torch.zeros(n, dtype=torch.long)
    grounded = torch.zeros(n, dtype=torch.bool)
    boxes = []
    for i, sample in enumerate(samples):
        visual = torch.from_numpy(visual_frames(sample, config))
        image[i, : len(visual)] = visual
        frames[i, : len(visual)] = True
        if sample.time_series:
            signal[i] = _signal(sample.time_series[0], config.signal_leads, config.signal_length)
            has_signal[i] = True
        ids = hash_words(sample.problem, config.text_buckets, config.text_words)
        text[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        task[i] = vocab.task_index(sample.task)
        box = region_box(sample)
        grounded[i] = box is not None and sample.image_size is not None
        boxes.append(box if grounded[i] else None)
    return EncodedSplit(
        samples, PromptBatch(image, frames, frames.any(1), signal, has_signal, text, task, grounded), boxes
    )


_CACHE: dict[tuple, EncodedData] = {}


def encode_data(root: Path, config: LocalConfig) -> EncodedData:
    """Load ``root`` (a data folder or source file) with ``suites.data.load_data`` and encode every
    split (memoised per process)."""
    source = DataSource.open(Path(root).resolve())
    files = [source.split_file(split) for split in SPLITS]
    stamps = tuple(p.stat().st_mtime_ns for p in files if p is not None and p.exists())
    key = (source.to_json(), stamps, config.image_size, config.video_frames, config.signal_length,
           config.signal_leads, config.text_buckets, config.text_words, config.reasoning_vocab, config.box_bins,
           config.max_labels)
    if key not in _CACHE:
        data = load_data(source)
        vocab = AnswerVocab.build(data.tasks, reasoning_vocab=config.reasoning_vocab, box_bins=config.box_bins,
                                  max_labels=config.max_labels)
        slots = frame_slots(data.train + data.validation + data.test, config.video_frames)
        train, validation, test = (_encode_split(data.split(s), vocab, config, slots) for s in SPLITS)
        _CACHE.clear()
        _CACHE[key] = EncodedData(
            data, vocab, train, validation, test,
            use_image=bool(train.prompts.has_image.any()), use_signal=bool(train.prompts.has_signal.any()),
        )
    return _CACHE[key]
