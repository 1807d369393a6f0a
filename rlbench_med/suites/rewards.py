"""Rewards of a diagnosis answer: label F1, box IoU, format and reasoning length.

Reward functions are chosen by name (:func:`make_reward`, the ``reward`` config knob); two are built in:

- ``paper`` (:class:`RewardFunction`, default): the paper's four components and weights
  (accuracy 0.6, IoU 0.2, format 0.1, length 0.1). The paper does not define the components
  precisely; the definitions below are this project's.
- ``release`` (:class:`ReleaseReward`): the QoQ-Med code release's ``medical_compute_score``,
  reproduced quirk for quirk in :mod:`rlbench_med.suites.release` (F1 0.5, IoU 0.3, format 0.1,
  length 0.1).

``reward_weights`` only re-weights the chosen function's components: ``auto`` (its own weights),
``paper`` (0.6, 0.2, 0.1, 0.1) or four numbers.

A plugin adds one with :func:`register_reward` (in a ``--plugin`` file or module, or through the
entry-point group ``rlbench_med.rewards``): a function of a record (:class:`~rlbench_med.suites.data.Sample`)
and a response (text) that returns the components it scores, a mapping with keys among
``accuracy``, ``iou``, ``format``, ``length`` (finite numbers; a component it leaves out is 0)::

    @register_reward("exact_only", weights=(1, 0, 0, 0))
    def exact_only(record, response):
        labels = parse_answer(response).labels
        return {"accuracy": float(sorted(labels) == sorted(record.labels))}

The total is the weighted sum of the components with the registered weights (``reward_weights``
overrides them). The built-in policy's structured answers reach it as their canonical text
(:func:`answer_text`).

An answer is scored the same way whether it comes from a text policy (parsed with
:func:`parse_answer`) or from the built-in policy's structured output (an :class:`Answer` built
directly). The text format, produced by :func:`answer_to_text`::

    <reasoning words>
    \\boxed{Label A, Label B}
    ```json
    [{"label": "Label A", "bbox_2d": [x1, y1, x2, y2]}]
    ```

Components (each in ``[0, 1]``):

- ``accuracy``: with ``accuracy="set_f1"`` (the paper's; the default) the F1 between the predicted
  and the true label sets, ``2 |P ∩ T| / (|P| + |T|)``, so naming two classes when one is right
  earns 0.67 (hedging pays); with ``accuracy="exact"``, 1 when ``P == T`` and 0 otherwise. Labels
  are compared case- and whitespace-insensitively.
- ``iou``: for a sample with a segmentation mask, the pixel IoU of each predicted box rasterized
  on the mask's grid (pixel ``(i, j)`` is inside ``[x1, y1, x2, y2]`` when
  ``x1 <= j + 0.5 < x2`` and ``y1 <= i + 0.5 < y2``; boxes are clipped to the image) against the
  mask; for a sample with only a true box, the area IoU of the two boxes. ``iou_reduce="max"``
  (default) keeps the best predicted box, ``"mean"`` averages over the predicted boxes (the
  published code's behaviour). No predicted box scores 0. A sample without a region scores 1
  when the answer has no box and 0 when it has one (boxes on a region-less sample are wrong);
  such samples are not counted by the ``iou`` metric (``iou_scored`` is False).
- ``format``: 1 when the answer is well formed (a non-empty ``\\boxed{}`` answer and every
  ```` ```json ```` block closed and a valid list of ``{"label", "bbox_2d"}`` objects), else 0.
- ``length``: reasoning length ``n`` (whitespace tokens outside the answer and JSON blocks, or
  inside ``<think>...</think>`` when present) against ``(lo, hi)``: ``min(1, n / lo)`` for
  ``n <= hi``, then ``max(0, 1 - (n - hi) / hi)``.

``total = w_acc * accuracy + w_iou * iou + w_fmt * format + w_len * length``. Output without a
parseable answer (no non-empty ``\\boxed{}``) scores 0 on every component.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

AccuracyForm = Literal["set_f1", "exact"]
ACCURACY_FORMS: tuple[str, ...] = ("set_f1", "exact")

import numpy as np
from PIL import Image

from rlbench_med.registry import Registry, RegistryError, did_you_mean
from rlbench_med.suites.catalogue import normalize_label
from rlbench_med.suites.data import Sample, load_sample_mask
from rlbench_med.suites.release import (
    RELEASE_WEIGHTS,
    frame_scale,
    medical_compute_score,
    release_frame,
    release_gt_box,
    release_mask,
)

Box = tuple[float, float, float, float]

_WEIGHT_SEPARATORS = re.compile(r"[,;:]")


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the four reward components (non-negative, not all zero)."""

    accuracy: float
    iou: float
    format: float
    length: float

    def __post_init__(self) -> None:
        values = (self.accuracy, self.iou, self.format, self.length)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"reward weights must be finite and >= 0, got {values}")
        if sum(values) <= 0:
            raise ValueError("reward weights are all zero; at least one component must count")

    @classmethod
    def parse(cls, spec: str | RewardWeights, reward: str = "paper") -> RewardWeights:
        """``auto`` (the weights of ``reward``, see :data:`DEFAULT_WEIGHTS`), a preset of
        :data:`REWARD_PRESETS`, or ``"acc,iou,format,length"`` numbers.

        The numbers may also be separated by ``;`` or ``:``; empty parts are ignored.
        """
        if isinstance(spec, RewardWeights):
            return spec
        text = str(spec).strip()
        if text == "auto":
            return default_weights(reward)
        if text in REWARD_PRESETS:
            return REWARD_PRESETS[text]
        if text in RETIRED_WEIGHT_PRESETS:
            raise ValueError(RETIRED_WEIGHT_PRESETS[text])
        parts = [p.strip() for p in _WEIGHT_SEPARATORS.split(text) if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ValueError(
                f"reward weights {spec!r}: use auto, a preset ({', '.join(REWARD_PRESETS)}) "
                'or four numbers "acc,iou,format,length", e.g. "0.6,0.2,0.1,0.1"'
            )
        return cls(*values)

    def as_text(self) -> str:
        """``"acc,iou,format,length"``, accepted back by :meth:`parse`."""
        return ",".join(f"{v:g}" for v in (self.accuracy, self.iou, self.format, self.length))


#: The reward functions (the ``reward`` knob): ``paper`` is the paper's text with this project's
#: component definitions (:class:`RewardFunction`); ``release`` is the code release's
#: ``medical_compute_score`` (:class:`ReleaseReward`, :mod:`rlbench_med.suites.release`).
REWARDS = ("paper", "release")

#: Weight presets of ``reward_weights`` (besides ``auto``).
REWARD_PRESETS: dict[str, RewardWeights] = {
    # QoQ-Med paper: accuracy 0.6, IoU 0.2, auxiliary (format + length) 0.2.
    "paper": RewardWeights(accuracy=0.6, iou=0.2, format=0.1, length=0.1),
}

#: ``reward_weights=auto``: each reward function's own weights.
DEFAULT_WEIGHTS: dict[str, RewardWeights] = {
    "paper": REWARD_PRESETS["paper"],
    # QoQ-Med code release, MED:360-366: F1 0.5, IoU 0.3, format 0.1, length 0.1.
    "release": RewardWeights(*RELEASE_WEIGHTS),
}

#: Weight preset names that are no longer accepted, with what to use instead.
RETIRED_WEIGHT_PRESETS = {
    "release": "reward_weights=release is retired (it put the release's weights on this project's components, "
    "which is not the release's reward): use reward=release for the release's reward function, or "
    "reward_weights=0.5,0.3,0.1,0.1 for its weights on the paper reward's components",
}


#: Every reward function by name: the built-in classes and the plugins' :class:`PluginReward` s.
REWARD_FUNCTIONS: Registry[Any] = Registry("reward", entry_point_group="rlbench_med.rewards")
COMPONENTS = ("accuracy", "iou", "format", "length")


@dataclass(frozen=True)
class PluginReward:
    """A reward function a plugin registered: ``fn(record, response) -> {component: value}``.

    Calling it calls ``fn``, so a decorated function still works as itself.
    """

    name: str
    fn: Callable[[Any, str], Any]
    weights: RewardWeights
    description: str = ""

    def __call__(self, record: Any, response: str) -> Any:
        return self.fn(record, response)

    def components(self, record: Any, response: str) -> dict[str, float]:
        """``fn``'s components, checked: keys among :data:`COMPONENTS`, finite numbers; absent ones are 0."""
        out = self.fn(record, response)
        if isinstance(out, RewardBreakdown):
            out = {k: getattr(out, k) for k in COMPONENTS}
        if not isinstance(out, Mapping):
            raise TypeError(f"reward {self.name!r} returned {type(out).__name__}; return a mapping of "
                            f"{', '.join(COMPONENTS)} to numbers")
        unknown = sorted(set(map(str, out)) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"reward {self.name!r} returned unknown component(s) {', '.join(unknown)}; "
                             f"components are {', '.join(COMPONENTS)}")
        values = {k: _finite(out.get(k, 0.0)) for k in COMPONENTS}
        bad = [k for k, v in values.items() if v is None]
        if bad:
            raise ValueError(f"reward {self.name!r} returned a non-finite or non-numeric {bad[0]}: {out[bad[0]]!r}")
        return values  # type: ignore[return-value]


def register_reward(
    name: str, *, weights: tuple[float, float, float, float] | str = "paper", description: str = ""
) -> Callable[[Callable[[Any, str], Any]], PluginReward]:
    """Decorator: register ``fn(record, response) -> {component: value}`` as reward ``name``.

    ``weights`` weigh (accuracy, iou, format, length) in the total (default: the paper's 0.6, 0.2,
    0.1, 0.1); ``reward_weights`` overrides them per run. ``description`` shows in
    ``rlbench-med list rewards``.
    """

    def add(fn: Callable[[Any, str], Any]) -> PluginReward:
        parsed = RewardWeights(*weights) if isinstance(weights, tuple) else RewardWeights.parse(weights)
        spec = PluginReward(name, fn, parsed, description or (fn.__doc__ or "").strip().split("\n")[0])
        REWARD_FUNCTIONS.register(name, spec)
        return spec

    return add


def reward_function(name: str) -> Any:
    """The reward registered as ``name``: a built-in class or a :class:`PluginReward`; an entry point naming a
    plain function gets the paper's weights. Raises :class:`~rlbench_med.registry.RegistryError` (did you mean)."""
    found = REWARD_FUNCTIONS.get(name)
    if isinstance(found, type) or isinstance(found, PluginReward):
        return found
    if callable(found):
        return PluginReward(name, found, REWARD_PRESETS["paper"], (found.__doc__ or "").strip().split("\n")[0])
    raise RegistryError(f"reward {name!r} is registered as {type(found).__name__}, not a function of (record, response)")


def list_rewards() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered reward function."""
    out = []
    for name in REWARD_FUNCTIONS.names():
        found = reward_function(name)
        out.append((name, str(getattr(found, "description", "") or "")))
    return out


def default_weights(reward: str) -> RewardWeights:
    """``reward_weights=auto``: the reward's own weights."""
    if reward in DEFAULT_WEIGHTS:
        return DEFAULT_WEIGHTS[reward]
    found = reward_function(reward)
    if isinstance(found, PluginReward):
        return found.weights
    raise ValueError(f"reward {reward!r} declares no weights")


@dataclass(frozen=True)
class Answer:
    """A parsed or structured answer.

    ``boxes`` are ``(x1, y1, x2, y2)`` pixels of the original image; ``box_labels`` (optional)
    names the label of each box; ``reasoning`` is the reasoning text when known. ``response`` is
    the raw text the answer was parsed from (None for a structured answer; see :func:`answer_text`);
    it does not take part in equality.
    """

    labels: tuple[str, ...]
    boxes: tuple[Box, ...] = ()
    reasoning_tokens: int = 0
    well_formed: bool = True
    reasoning: str = ""
    box_labels: tuple[str, ...] = ()
    response: str | None = field(default=None, compare=False)


EMPTY_ANSWER = Answer(labels=(), boxes=(), reasoning_tokens=0, well_formed=False)


@dataclass(frozen=True)
class RewardBreakdown:
    """The total reward and its components; ``iou_scored`` says whether ``iou`` counts as a metric."""

    total: float
    accuracy: float
    iou: float
    format: float
    length: float
    iou_scored: bool = False


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------
_BOXED = "\\boxed{"
_JSON_BLOCK = re.compile(r"```json\s*(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete ``\\boxed{...}`` with balanced braces."""
    spans = []
    start = text.find(_BOXED)
    while start != -1:
        depth = 1
        i = start + len(_BOXED)
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            spans.append((start, i, text[start + len(_BOXED) : i - 1]))
            start = text.find(_BOXED, i)
        else:
            break
    return spans


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _parse_box_block(content: str) -> tuple[list[Box], list[str]] | None:
    """Boxes and their labels of one JSON block, or None when the block is malformed."""
    try:
        obj = json.loads(content)
    except (ValueError, RecursionError):
        return None
    items = obj if isinstance(obj, list) else [obj]
    boxes: list[Box] = []
    labels: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        raw = item.get("bbox_2d")
        if not isinstance(raw, list) or len(raw) != 4:
            return None
        coords = [_finite(v) for v in raw]
        if any(c is None for c in coords):
            return None
        x1, y1, x2, y2 = coords  # type: ignore[misc]
        if not (x1 < x2 and y1 < y2):  # type: ignore[operator]
            return None
        boxes.append((x1, y1, x2, y2))  # type: ignore[arg-type]
        label = item.get("label")
        labels.append(label.strip() if isinstance(label, str) else "")
    return boxes, labels


def parse_answer(text: Any) -> Answer:
    """Parse a policy's text output; never raises (anything unusable gives an empty answer).

    The final answer is the last complete ``\\boxed{...}`` (labels split on commas); boxes come
    from every ```` ```json ```` block.
    """
    if not isinstance(text, str):
        return EMPTY_ANSWER
    spans = _boxed_spans(text)
    labels: list[str] = []
    if spans:
        for part in spans[-1][2].split(","):
            label = part.strip().strip("\"'").strip()
            if label and label not in labels:
                labels.append(label)
    boxes: list[Box] = []
    box_labels: list[str] = []
    matches = list(_JSON_BLOCK.finditer(text))
    blocks_ok = len(matches) == text.count("```json")  # an unclosed block is malformed
    for match in matches:
        parsed = _parse_box_block(match.group(1))
        if parsed is None:
            blocks_ok = False
            continue
        boxes.extend(parsed[0])
        box_labels.extend(parsed[1])
    think = _THINK.search(text)
    if think is not None:
        reasoning = think.group(1)
    else:
        reasoning = _JSON_BLOCK.sub(" ", text)
        for start, end, _ in reversed(_boxed_spans(reasoning)):
            reasoning = reasoning[:start] + " " + reasoning[end:]
    words = reasoning.split()
    return Answer(
        labels=tuple(labels),
        boxes=tuple(boxes),
        reasoning_tokens=len(words),
        well_formed=bool(labels) and blocks_ok,
        reasoning=" ".join(words),
        box_labels=tuple(box_labels),
        response=text,
    )


def _number_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def answer_to_text(answer: Answer) -> str:
    """The canonical text of an answer (reasoning, ``\\boxed{}`` labels, JSON boxes); parses back."""
    parts = []
    if answer.reasoning:
        parts.append(answer.reasoning)
    parts.append(_BOXED + ", ".join(answer.labels) + "}")
    if answer.boxes:
        items = []
        for i, box in enumerate(answer.boxes):
            label = answer.box_labels[i] if i < len(answer.box_labels) else (answer.labels[0] if answer.labels else "")
            coords = ", ".join(_number_text(v) for v in box)
            items.append(f'{{"label": {json.dumps(label)}, "bbox_2d": [{coords}]}}')
        parts.append("```json\n[" + ", ".join(items) + "]\n```")
    return "\n".join(parts)


def answer_text(answer: Answer) -> str:
    """The text of an answer: the raw response of a text policy, else the canonical :func:`answer_to_text`."""
    return answer.response if answer.response is not None else answer_to_text(answer)


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------
def label_f1(predicted: tuple[str, ...] | list[str], truth: tuple[str, ...] | list[str]) -> float:
    """F1 of two label sets, ``2 |P ∩ T| / (|P| + |T|)`` (1 when both are empty)."""
    p = {normalize_label(x) for x in predicted}
    t = {normalize_label(x) for x in truth}
    if not p and not t:
        return 1.0
    return 2.0 * len(p & t) / (len(p) + len(t))


def exact_match(predicted: tuple[str, ...] | list[str], truth: tuple[str, ...] | list[str]) -> float:
    """1.0 when the two label sets are equal (compared case- and whitespace-insensitively), else 0.0."""
    return float({normalize_label(x) for x in predicted} == {normalize_label(x) for x in truth})


def box_iou(a: Box, b: Box) -> float:
    """Area IoU of two ``(x1, y1, x2, y2)`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def raster_range(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Pixel index range ``[start, stop)`` whose centres ``j + 0.5`` lie in ``[lo, hi)``, clipped to ``[0, n)``."""
    start = min(max(math.ceil(lo - 0.5), 0), n)
    stop = min(max(math.ceil(hi - 0.5), 0), n)
    return start, max(start, stop)


def mask_box_iou(mask: np.ndarray, box: Box, mask_area: int | None = None) -> float:
    """Pixel IoU of a box rasterized on the mask grid against the bool mask ``[H, W]``."""
    h, w = mask.shape
    c0, c1 = raster_range(box[0], box[2], w)
    r0, r1 = raster_range(box[1], box[3], h)
    area = mask_area if mask_area is not None else int(mask.sum())
    box_area = (c1 - c0) * (r1 - r0)
    inter = int(mask[r0:r1, c0:c1].sum()) if box_area else 0
    union = area + box_area - inter
    return inter / union if union > 0 else 0.0


class _MaskCache:
    """Masks read once per (path, frame) and kept in a bounded LRU cache."""

    def __init__(self, size: int) -> None:
        self._entries: OrderedDict[tuple[Path, Any], Any] = OrderedDict()
        self._size = size

    def get(self, path: Path, frame: Any, load: Callable[[Path], Any]) -> Any:
        """The cached ``load(path)`` for ``(path, frame)``."""
        key = (path, frame)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        entry = self._entries[key] = load(path)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return entry


class RewardFunction:
    """``reward=paper``: this project's components with the paper's weights (module docstring)."""

    description = "the paper's components (label-set F1, box IoU, format, length) as this project defines them; 0.6, 0.2, 0.1, 0.1"

    def __init__(
        self,
        weights: RewardWeights | str = "auto",
        iou_reduce: Literal["max", "mean"] = "max",
        length_target: tuple[int, int] = (16, 256),
        mask_cache_size: int = 8192,
        accuracy: AccuracyForm = "set_f1",
    ) -> None:
        if iou_reduce not in ("max", "mean"):
            raise ValueError(f"iou_reduce must be 'max' or 'mean', got {iou_reduce!r}")
        if accuracy not in ACCURACY_FORMS:
            raise ValueError(f"accuracy must be one of {', '.join(ACCURACY_FORMS)}, got {accuracy!r}")
        self.accuracy = accuracy
        lo, hi = length_target
        if not (0 < lo <= hi):
            raise ValueError(f"length_target must be (lo, hi) with 0 < lo <= hi, got {length_target}")
        self.weights = RewardWeights.parse(weights, "paper")
        self.iou_reduce = iou_reduce
        self.length_target = (int(lo), int(hi))
        self._masks = _MaskCache(mask_cache_size)

    def _mask(self, sample: Sample) -> tuple[np.ndarray, int]:
        """The sample's mask on its image's grid (resized, or drawn from its box) and its area, cached."""

        def load(_: Path) -> tuple[np.ndarray, int]:
            mask = load_sample_mask(sample)
            return mask, int(mask.sum())

        return self._masks.get(sample.segmentation_path, sample.image_size, load)

    def iou(self, sample: Sample, boxes: tuple[Box, ...] | list[Box]) -> float | None:
        """IoU of the predicted boxes with the sample's region (None when it has no region)."""
        if not sample.has_region:
            return None
        if not boxes:
            return 0.0
        if sample.segmentation_path is not None:
            mask, area = self._mask(sample)
            scores = [mask_box_iou(mask, b, area) for b in boxes]
        else:
            assert sample.bbox is not None
            scores = [box_iou(b, sample.bbox) for b in boxes]
        return max(scores) if self.iou_reduce == "max" else sum(scores) / len(scores)

    def length_score(self, n_tokens: int) -> float:
        lo, hi = self.length_target
        if n_tokens <= hi:
            return min(1.0, n_tokens / lo)
        return max(0.0, 1.0 - (n_tokens - hi) / hi)

    def score(self, sample: Sample, answer: Answer) -> RewardBreakdown:
        """Reward of ``answer`` for ``sample`` (see the module docstring for the formula)."""
        if not answer.labels:
            return RewardBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, iou_scored=sample.has_region)
        acc = (exact_match if self.accuracy == "exact" else label_f1)(answer.labels, sample.labels)
        measured = self.iou(sample, answer.boxes)
        iou = (0.0 if answer.boxes else 1.0) if measured is None else measured
        fmt = 1.0 if answer.well_formed else 0.0
        length = self.length_score(answer.reasoning_tokens)
        w = self.weights
        total = w.accuracy * acc + w.iou * iou + w.format * fmt + w.length * length
        return RewardBreakdown(total, acc, iou, fmt, length, iou_scored=measured is not None)

    def score_text(self, sample: Sample, text: str) -> RewardBreakdown:
        """Parse a text output and score it."""
        return self.score(sample, parse_answer(text))


#: The frame a response states its box coordinates in: ``original`` image pixels (this project's
#: policies and prompts) or ``release``-frame pixels (a model trained by the release sees the processed image).
BoxFrame = Literal["original", "release"]
BOX_FRAMES = ("original", "release")


class ReleaseReward:
    """``reward=release``: the QoQ-Med release's ``medical_compute_score`` (:mod:`rlbench_med.suites.release`).

    The response is the answer's raw text (a text policy) or its canonical text
    (:func:`answer_text`); the ground truth is the sample's labels joined by ``", "`` (the CLIMB
    answer string, which the release splits with the same rule).

    **Frame.** Boxes are scored where the release scores them: in the frame of the processed image,
    ``(W', H') = release_frame(W, H)`` (DS:198-222; a 64 x 64 image becomes 256 x 256, images of
    65 536 to 524 288 pixels keep their size). The ground-truth box is scaled by ``(W'/W, H'/H)``
    and stored as float32 (DS:656-688); the mask is resized into that frame with nearest neighbour
    and the release's width/height swap (DS:618-654). A release-trained model sees the processed
    image, so its boxes are already release-frame pixels (``box_frame="release"``); this project's
    policies state boxes in original-image pixels (``box_frame="original"``, the training default),
    which are multiplied by ``(W'/W, H'/H)`` before the release's int truncation, i.e. read as if the
    policy had looked at the processed image. The release's integer truncation and inclusive
    rasterisation then happen on the same grid as in the release, which is what makes the numbers
    equal to the release's for the same response and image.

    Not reproduced: the batch collate pads masks with zeros to the batch's largest mask (scores
    here are those of a batch of one), and the Qwen processor's 28-pixel grid (the release does not
    apply it to masks and boxes either).
    """

    description = "the QoQ-Med release's medical_compute_score, quirk for quirk; 0.5, 0.3, 0.1, 0.1"

    def __init__(
        self, weights: RewardWeights | str = "auto", box_frame: BoxFrame = "original", mask_cache_size: int = 8192
    ) -> None:
        if box_frame not in BOX_FRAMES:
            raise ValueError(f"box_frame must be one of {', '.join(BOX_FRAMES)}, got {box_frame!r}")
        self.weights = RewardWeights.parse(weights, "release")
        self.box_frame = box_frame
        self._masks = _MaskCache(mask_cache_size)
        self._metric = RewardFunction(mask_cache_size=mask_cache_size)

    def _mask(self, path: Path, frame: tuple[int, int]) -> np.ndarray:
        def load(p: Path) -> np.ndarray:
            with Image.open(p) as im:
                return release_mask(im, frame)

        return self._masks.get(path, frame, load)

    def score_text(self, sample: Sample, text: str) -> RewardBreakdown:
        """The release's reward of the response ``text`` for ``sample`` (see the class docstring)."""
        scale = (1.0, 1.0)
        mask = None
        if sample.image_size is not None:
            frame = release_frame(sample.image_size)
            scale = frame_scale(sample.image_size, frame)
            if sample.segmentation_path is not None:
                mask = self._mask(sample.segmentation_path, frame)
        w = self.weights
        result = medical_compute_score(
            text,
            ", ".join(sample.labels),
            mask,
            release_gt_box(sample.bbox, scale),
            weights=(w.accuracy, w.iou, w.format, w.length),
            box_scale=scale if self.box_frame == "original" else (1.0, 1.0),
        )
        return RewardBreakdown(result.total, result.accuracy, result.iou, result.format, result.length,
                               iou_scored=sample.has_region)

    def score(self, sample: Sample, answer: Answer) -> RewardBreakdown:
        """The release's reward of :func:`answer_text` of ``answer``."""
        return self.score_text(sample, answer_text(answer))

    def iou(self, sample: Sample, boxes: tuple[Box, ...] | list[Box]) -> float | None:
        """The ``iou`` *metric* of predicted boxes (this project's, best box): evaluation does not change with the reward."""
        return self._metric.iou(sample, boxes)


Reward = RewardFunction | ReleaseReward
REWARD_FUNCTIONS.register("paper", RewardFunction)
REWARD_FUNCTIONS.register("release", ReleaseReward)


def reward_settings_problem(
    reward: str, weights: RewardWeights | str, iou_reduce: str, accuracy: str = "set_f1"
) -> tuple[str, str] | None:
    """``(field, message)`` of the first setting that does not fit, or None.

    ``reward`` must be in :data:`REWARDS`; ``weights`` must parse (:meth:`RewardWeights.parse`);
    ``iou_reduce`` (``max`` or ``mean``) and ``accuracy`` (``set_f1`` or ``exact``) apply to
    ``reward=paper`` only.
    """
    if reward not in REWARD_FUNCTIONS:
        names = REWARD_FUNCTIONS.names()
        return "reward", (f"{reward!r} is not a reward function.{did_you_mean(reward, names)} Use one of "
                          f"{', '.join(names)} (or register one in a --plugin: rlbench-med list rewards)")
    if iou_reduce not in ("max", "mean"):
        return "iou_reduce", f"must be 'max' or 'mean', got {iou_reduce!r}"
    if accuracy not in ACCURACY_FORMS:
        return "accuracy_reward", f"must be one of {', '.join(ACCURACY_FORMS)}, got {accuracy!r}"
    if reward == "release" and iou_reduce != "max":
        return "iou_reduce", "applies to reward=paper; the release reward averages over boxes its own way"
    if reward == "release" and accuracy != "set_f1":
        return "accuracy_reward", "applies to reward=paper; the release reward's accuracy is its own set F1"
    if reward not in REWARDS and (iou_reduce != "max" or accuracy != "set_f1"):
        field_name = "iou_reduce" if iou_reduce != "max" else "accuracy_reward"
        return field_name, f"applies to reward=paper; reward {reward!r} (a plugin) scores its own components"
    try:
        RewardWeights.parse(weights, reward)
    except ValueError as exc:
        return "reward_weights", str(exc)
    return None


def make_reward(
    reward: str = "paper",
    weights: RewardWeights | str = "auto",
    iou_reduce: Literal["max", "mean"] = "max",
    box_frame: BoxFrame = "original",
    accuracy: AccuracyForm = "set_f1",
) -> Reward:
    """The reward function named ``reward`` (:data:`REWARDS`), weighted by ``weights``.

    ``iou_reduce`` and ``accuracy`` apply to ``paper`` only, ``box_frame`` to ``release`` only.
    Settings that do not fit raise ``ValueError`` (:func:`reward_settings_problem`).
    """
    problem = reward_settings_problem(reward, weights, iou_reduce, accuracy)
    if problem is not None:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    if reward == "release":
        return ReleaseReward(weights, box_frame)
    if reward == "paper":
        return RewardFunction(weights, iou_reduce, accuracy=accuracy)
    return PluginRewardFunction(reward_function(reward), weights)


class PluginRewardFunction:
    """A plugin's reward with the interface of the built-in ones (``score``, ``score_text``, ``iou``).

    The total is the weighted sum of the plugin's components; the ``iou`` *metric* stays this project's
    (best box), so evaluation does not change with the reward.
    """

    def __init__(self, spec: PluginReward, weights: RewardWeights | str = "auto") -> None:
        self.spec = spec
        self.weights = spec.weights if weights == "auto" else RewardWeights.parse(weights, "paper")
        self._metric = RewardFunction()

    def score_text(self, sample: Sample, text: str) -> RewardBreakdown:
        values = self.spec.components(sample, text)
        w = self.weights
        total = (w.accuracy * values["accuracy"] + w.iou * values["iou"] + w.format * values["format"]
                 + w.length * values["length"])
        return RewardBreakdown(total, values["accuracy"], values["iou"], values["format"], values["length"],
                               iou_scored=sample.has_region)

    def score(self, sample: Sample, answer: Answer) -> RewardBreakdown:
        """The plugin's reward of the answer's raw response, or of :func:`answer_text` for a structured answer."""
        return self.score_text(sample, answer_text(answer))

    def iou(self, sample: Sample, boxes: tuple[Box, ...] | list[Box]) -> float | None:
        return self._metric.iou(sample, boxes)
