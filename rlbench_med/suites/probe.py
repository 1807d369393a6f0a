"""Probe: how much of a suite's answers its data's own inputs explain, before any policy is trained.

A suite can only compare estimators if a policy can learn something from it. The probe checks
that independently of the policy: for every task (a CLIMB dataset, or a MIMIC-IV task) it fits a
simple supervised model on the training split, from each modality's features alone, from each
combination of modalities, and from nothing, and scores the validation split (the split every
choice reads; the test split when the data has no validation records) with the suite's own
metrics (:func:`rlbench_med.suites.metrics.compute_metrics`). A suite is sound when the union of
its modalities explains more than any single one, and every modality more than nothing.

Features (fixed, generic, never tuned to the generator):

- ``vision``: the first image at 32x32, 2x2 mean-pooled to 16x16 RGB pixels (768 numbers).
- ``ecg``: per lead of the first signal, linearly resampled to 1000 samples: 9 quantiles
  (0, 1, 5, 25, 50, 75, 95, 99, 100 %), the standard deviation, and the magnitude spectrum
  (of the mean-removed lead) averaged in 37 log-spaced bands (564 numbers for 12 leads):
  amplitude and rhythm without the beat phase.
- ``text``: binary bag of words of ``problem`` (lower-cased ``[a-z0-9_]+`` words, so a
  ``field_value`` word stays one feature), used only where the text varies inside a task (the
  MIMIC-IV record); a constant prompt tells nothing that ``none`` does not know.

Models, per task and input set: each modality's block of features standardised on the training
records and divided by the square root of its width, so that every modality enters the model with
the same prior weight however many features it has (a union is not drowned by its widest noisy
block); single-label tasks, a multinomial
logistic regression; multi-label tasks (any training record with two labels or more),
one-vs-rest logistic regressions, a label predicted when its probability exceeds 0.5 (the most
probable one when none does). Classes are weighted inversely to their training frequency (the
metrics are balanced accuracy and macro-F1, so a weak cue is not drowned by the majority class),
and the inverse regularisation ``C`` is chosen from :data:`CS` by 3-fold cross-validated
balanced accuracy on the training split. Boxes (tasks with masks or boxes): a ridge regression of
the four box edges (as fractions of the image side) with its ``alpha`` chosen from
:data:`ALPHAS` by leave-one-out. ``none`` predicts the most frequent training label set and the
mean training box of the task: what no input at all gives. ``random`` names one class of the task
uniformly at random (seeded; no box): chance, and the noisiest evaluation a metric can get.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlbench_med.suites.data import ClinicalData, Sample, load_data, load_image, load_mask, load_signal
from rlbench_med.suites.metrics import compute_metrics

MODALITIES = ("vision", "ecg", "text")
"""Modalities in the names of the suites' input ablations (``eval_inputs``)."""
NONE = "none"
RANDOM = "random"
CS = (0.1, 1.0, 10.0, 100.0, 1000.0)
ALPHAS = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
IMAGE_SIDE = 16
SIGNAL_LENGTH = 1000
SIGNAL_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
SPECTRUM_BANDS = 40
_WORD = re.compile(r"[a-z0-9_]+")


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------
def image_features(path: Path) -> np.ndarray:
    """``[3 * 16 * 16]`` float32: the image at 32x32, 2x2 mean-pooled."""
    img = load_image(path, size=2 * IMAGE_SIDE)
    return img.reshape(3, IMAGE_SIDE, 2, IMAGE_SIDE, 2).mean((2, 4)).ravel()


def signal_features(path: Path) -> np.ndarray:
    """Per-lead quantiles, sd and banded magnitude spectrum, float32 ``[leads * (10 + bands)]``.

    The spectrum of the mean-removed lead (resampled to 1000 samples) is averaged in log-spaced
    bands between 0.5 % and 100 % of the Nyquist frequency (40 edges rounded to whole frequency
    bins, duplicates merged: 37 bands; for 10 s at 100 Hz, 0.2 to 50 Hz, a step of about 15 %
    around heart rates).
    """
    sig = load_signal(path).astype(np.float64)
    grid = np.linspace(0.0, sig.shape[1] - 1.0, SIGNAL_LENGTH)
    sig = np.stack([np.interp(grid, np.arange(sig.shape[1]), lead) for lead in sig])
    quantiles = np.quantile(sig, SIGNAL_QUANTILES, axis=1).T  # [leads, 9]
    spectrum = np.abs(np.fft.rfft(sig - sig.mean(1, keepdims=True), axis=1)) / SIGNAL_LENGTH  # [leads, 501]
    edges = np.unique((np.geomspace(0.005, 1.0, SPECTRUM_BANDS + 1) * (spectrum.shape[1] - 1)).round().astype(int))
    bands = np.stack([spectrum[:, lo:hi].mean(1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    return np.concatenate([quantiles, sig.std(1, keepdims=True), bands], 1).ravel().astype(np.float32)


def _text_vocabulary(samples: Sequence[Sample]) -> dict[str, int]:
    words = sorted({w for s in samples for w in _words(s.problem)})
    return {w: i for i, w in enumerate(words)}


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def text_features(samples: Sequence[Sample], vocabulary: dict[str, int]) -> np.ndarray:
    """``[n, len(vocabulary)]`` float32 binary bag of words of each sample's ``problem``."""
    out = np.zeros((len(samples), len(vocabulary)), np.float32)
    for i, sample in enumerate(samples):
        for w in _words(sample.problem):
            j = vocabulary.get(w)
            if j is not None:
                out[i, j] = 1.0
    return out


def _media_features(samples: Sequence[Sample], paths: Callable[[Sample], tuple[Path, ...]],
                    encode: Callable[[Path], np.ndarray]) -> np.ndarray | None:
    """Features of each sample's first file (zeros where a sample has none); None when none has one."""
    firsts = [paths(s)[0] if paths(s) else None for s in samples]
    present = [encode(p) if p is not None else None for p in firsts]
    width = next((len(f) for f in present if f is not None), None)
    if width is None:
        return None
    return np.stack([f if f is not None else np.zeros(width, np.float32) for f in present])


def _text_varies(samples: Sequence[Sample]) -> bool:
    by_task: dict[str, set[str]] = {}
    for s in samples:
        by_task.setdefault(s.task, set()).add(s.problem)
    return any(len(problems) > 1 for problems in by_task.values())


def held_out(data: ClinicalData) -> tuple[str, list[Sample]]:
    """The split the probe scores: ``validation`` (every choice reads it), else ``test`` when it is empty."""
    return ("validation", data.validation) if data.validation else ("test", data.test)


def extract_features(data: ClinicalData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{modality: (train [n_train, f], held-out [n, f])}`` for every modality the data carries
    (the held-out split of :func:`held_out`)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    held = held_out(data)[1]
    for name, paths, encode in (("vision", lambda s: s.images, image_features),
                                ("ecg", lambda s: s.time_series, signal_features)):
        train = _media_features(data.train, paths, encode)
        if train is not None:
            test = _media_features(held, paths, encode)
            out[name] = (train, test if test is not None else np.zeros((len(held), train.shape[1]), np.float32))
    if _text_varies(data.train):
        vocabulary = _text_vocabulary(data.train)
        out["text"] = (text_features(data.train, vocabulary), text_features(held, vocabulary))
    return out


def input_sets(modalities: Sequence[str]) -> list[str]:
    """``none``, then every combination of ``modalities`` named as the input ablations (``ecg+text``).

    The last one holds every modality (the union).
    """
    ordered = [m for m in MODALITIES if m in modalities]
    sets = [NONE]
    for k in range(1, len(ordered) + 1):
        sets += ["+".join(c) for c in itertools.combinations(ordered, k)]
    return sets


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
def _fit_predict_labels(x_train: np.ndarray, y_train: list[tuple[str, ...]], x_test: np.ndarray,
                        seed: int) -> list[tuple[str, ...]]:
    """Predicted label sets of ``x_test`` (module docstring: models)."""
    from sklearn.preprocessing import MultiLabelBinarizer

    multi = any(len(y) > 1 for y in y_train)
    if not multi:
        single = [y[0] for y in y_train]
        classes = sorted(set(single))
        if len(classes) == 1:
            return [(classes[0],)] * len(x_test)
        model = _classifier(x_train, np.asarray(single), seed)
        return [(str(c),) for c in model.predict(x_test)]
    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform(y_train)
    proba = np.zeros((len(x_test), y.shape[1]))
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.min() == column.max():
            proba[:, j] = float(column[0])
            continue
        model = _classifier(x_train, column, seed)
        proba[:, j] = model.predict_proba(x_test)[:, 1]
    picked = proba > 0.5
    picked[np.arange(len(x_test)), proba.argmax(1)] = True
    return [tuple(str(c) for c in binarizer.classes_[row]) for row in picked]


def _classifier(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """Logistic regression, ``C`` by 3-fold CV balanced accuracy (fewer folds for rare classes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    folds = min(3, min(Counter(y.tolist()).values()))
    if folds < 2:
        return model.set_params(C=CS[len(CS) // 2]).fit(x, y)
    search = GridSearchCV(model, {"C": list(CS)}, scoring="balanced_accuracy",
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny folds may miss a class; the search still ranks C
        return search.fit(x, y).best_estimator_


def _fit_predict_boxes(x_train: np.ndarray, boxes: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Ridge-regressed boxes ``[n_test, 4]`` (fractions of the image side)."""
    from sklearn.linear_model import RidgeCV

    if len(x_train) < 3:
        return np.repeat(boxes.mean(0, keepdims=True), len(x_test), 0)
    return RidgeCV(alphas=ALPHAS).fit(x_train, boxes).predict(x_test)


def _blocks(features: dict[str, tuple[np.ndarray, np.ndarray]], parts: Sequence[str], train_idx: list[int],
            test_idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The task's features of ``parts``, each block standardised on the training records and divided by
    the square root of its width (so every modality has the same prior weight in the model)."""
    trains, tests = [], []
    for m in parts:
        train, test = features[m][0][train_idx], features[m][1][test_idx]
        mean, sd = train.mean(0), train.std(0)
        sd = np.where(sd > 0, sd, 1.0) * math.sqrt(train.shape[1])
        trains.append((train - mean) / sd)
        tests.append((test - mean) / sd)
    return np.concatenate(trains, 1), np.concatenate(tests, 1)


def _box_fraction(sample: Sample) -> np.ndarray | None:
    """The sample's region as fractions ``(x1/W, y1/H, x2/W, y2/H)``: its ``bbox``, else its mask's box."""
    if sample.image_size is None or not sample.has_region:
        return None
    if sample.bbox is not None:
        box = np.asarray(sample.bbox, np.float64)
    else:
        mask = load_mask(sample.segmentation_path)
        ys, xs = np.nonzero(mask)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    w, h = sample.image_size
    return box / np.array([w, h, w, h])


# --------------------------------------------------------------------------------------------
# the probe
# --------------------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """Scores of every input set and the records behind them.

    ``rows``: ``{"inputs", "domain", "metric", "value", "n"}`` from ``compute_metrics`` of each
    input set's predictions of the held-out split ``split`` (``validation``, else ``test``) (``inputs`` is ``random``, ``none``, a modality, or a
    ``+``-joined combination; the last one in ``inputs`` is the union). ``records[inputs]``: the per-sample
    records (``domain``, ``dataset``, ``labels``, ``predicted``, ``iou`` where scored).
    """

    modalities: tuple[str, ...]
    inputs: tuple[str, ...]
    rows: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]]
    split: str = "validation"

    def value(self, inputs: str, domain: str, metric: str) -> float:
        """The score of one input set on one domain (``overall`` too) and metric."""
        for row in self.rows:
            if (row["inputs"], row["domain"], row["metric"]) == (inputs, domain, metric):
                return float(row["value"])
        raise KeyError(f"no probe score for inputs={inputs!r}, domain={domain!r}, metric={metric!r}")


def probe_data(data: ClinicalData | Path | str, *, seed: int = 0) -> ProbeResult:
    """Fit and score the probe on a data directory (or a loaded one); see the module docstring."""

    from threadpoolctl import threadpool_limits

    if not isinstance(data, ClinicalData):
        data = load_data(data)
    # One BLAS thread: many small fits run far faster without thread hand-offs on a busy CPU.
    with threadpool_limits(1):
        return _probe(data, seed)


def _probe(data: ClinicalData, seed: int) -> ProbeResult:
    from rlbench_med.suites.rewards import RewardFunction

    features = extract_features(data)
    modalities = tuple(m for m in MODALITIES if m in features)
    sets = [RANDOM, *input_sets(modalities)]
    iou = RewardFunction()
    train_by_task: dict[str, list[int]] = {}
    for i, s in enumerate(data.train):
        train_by_task.setdefault(s.task, []).append(i)
    split, held = held_out(data)
    test_by_task: dict[str, list[int]] = {}
    for i, s in enumerate(held):
        test_by_task.setdefault(s.task, []).append(i)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
    for task, test_idx in test_by_task.items():
        train_idx = train_by_task.get(task, [])
        if not train_idx:
            raise ValueError(f"task {task!r} has {split} records but no training records; the probe cannot fit it")
        y_train = [data.train[i].labels for i in train_idx]
        train_boxes = [_box_fraction(data.train[i]) for i in train_idx]
        boxed = [i for i, b in enumerate(train_boxes) if b is not None]
        for name in sets:
            if name == RANDOM:
                rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
                classes = held[test_idx[0]].classes
                predicted = [(classes[int(i)],) for i in rng.integers(len(classes), size=len(test_idx))]
                x_train = x_test = np.zeros((0, 0))
            elif name == NONE:
                majority = Counter(y_train).most_common(1)[0][0]
                predicted = [majority] * len(test_idx)
                x_train = np.zeros((len(train_idx), 0))
                x_test = np.zeros((len(test_idx), 0))
            else:
                x_train, x_test = _blocks(features, name.split("+"), train_idx, test_idx)
                predicted = _fit_predict_labels(x_train, y_train, x_test, seed)
            boxes = None
            if boxed and name != RANDOM:
                target = np.stack([train_boxes[i] for i in boxed])
                boxes = (np.repeat(target.mean(0, keepdims=True), len(test_idx), 0) if name == NONE
                         else _fit_predict_boxes(x_train[boxed], target, x_test))
            for row, (k, labels) in enumerate(zip(test_idx, predicted)):
                sample = held[k]
                record: dict[str, Any] = {"domain": sample.domain, "dataset": sample.dataset,
                                          "labels": list(sample.labels), "predicted": list(labels)}
                if boxes is not None and sample.has_region and sample.image_size is not None:
                    record["iou"] = iou.iou(sample, [_to_pixels(boxes[row], sample.image_size)])
                records[name].append(record)
    rows = [{"inputs": name, **row} for name in sets for row in compute_metrics(records[name])]
    return ProbeResult(modalities=modalities, inputs=tuple(sets), rows=rows, records=records, split=split)


def _to_pixels(box: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A fractional box, clipped to the image and ordered, in pixels of a ``(W, H)`` image."""
    w, h = size
    x1, y1, x2, y2 = np.clip(box, 0.0, 1.0) * np.array([w, h, w, h])
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def order_violations(result: ProbeResult, metric: str) -> list[str]:
    """Where the designed order ``union > each single modality > none`` fails on ``metric``.

    One string per failure, e.g. ``"los: vision+ecg+text 0.61 <= text 0.63"``; empty when it
    holds on every domain (and ``overall``). With one modality, only ``modality > none`` is checked.
    """
    union = result.inputs[-1]
    domains = list(dict.fromkeys(r["domain"] for r in result.rows if r["metric"] == metric))
    out: list[str] = []
    for domain in domains:
        none = result.value(NONE, domain, metric)
        for modality in result.modalities:
            value = result.value(modality, domain, metric)
            if value <= none:
                out.append(f"{domain}: {modality} {value:.3f} <= none {none:.3f}")
            if modality != union and result.value(union, domain, metric) <= value:
                out.append(f"{domain}: {union} {result.value(union, domain, metric):.3f} <= {modality} {value:.3f}")
    return out


def probe_rows(result: ProbeResult, metric: str) -> tuple[list[str], list[list[str]]]:
    """The probe's table of one metric, as every table of the project: domains as rows (``overall`` last,
    left out when there is a single domain, which it would repeat), ``n`` (records of the split scored), one column per
    input set (the last is the union). Returns ``(header, rows)`` of text."""
    domains = [d for d in dict.fromkeys(r["domain"] for r in result.rows if r["metric"] == metric)]
    if len([d for d in domains if d != "overall"]) == 1:
        domains = [d for d in domains if d != "overall"]
    domains = [d for d in domains if d != "overall"] + (["overall"] if "overall" in domains else [])
    n = {r["domain"]: r["n"] for r in result.rows if r["metric"] == metric}
    header = ["domain", f"n ({result.split})", *(name + (" (union)" if name == result.inputs[-1] else "") for name in result.inputs)]
    rows = []
    for domain in domains:
        values = []
        for name in result.inputs:
            try:
                values.append(f"{result.value(name, domain, metric):.3f}")
            except KeyError:
                values.append("-")
        rows.append([domain, str(n.get(domain, "")), *values])
    return header, rows
