"""The QoQ-Med release's reward and evaluation, reproduced quirk for quirk (``reward=release``, ``acc_release``).

Pure functions, no I/O. Sources (line numbers refer to these commits): QoQ_Med ``97f7f3d``
(DDVD233/QoQ_Med) and MathRuler ``14dadeb`` (hiyouga/MathRuler). Short names used below:
**MED** = ``examples/reward_function/medical.py`` (``medical_compute_score``, the configured reward,
``examples/grpo_climb_engaging.yaml:74``), **EV** = ``examples/reward_function/evaluation.py``,
**MR** = ``mathruler/grader.py``, **DS** = ``verl/utils/dataset.py``.

Reward (:func:`medical_compute_score`, MED:283-367) of a response ``r`` for a ground truth
``answer``, a mask and a box::

    total = 0.5 F1 + 0.3 IoU + 0.1 format + 0.1 length

- F1 (MED:298-316): the **last** ``\\boxed{`` with brace walking (:func:`extract_boxed_last`); no
  answer is the string ``"None"`` and scores 0; both sides become label sets with
  :func:`split_release_labels`; ``F1 = 2 TP / (2 TP + FP + FN)`` (0 when TP = 0).
- format (MED:205-280, :func:`format_score`): +0.2 for a triple backtick, +0.1 more for
  ```` ```json ````, +0.2 for a strict JSON parse of the candidate text or +0.1 for a Python-literal
  parse after replacing ``'`` with ``"``, +0.1 if the value is a list, +0.4 x the share of its items
  that are ``{"bbox_2d": [4 numbers], "label": ...}``.
- length (MED:321-325, :func:`length_score`): ``0.001 x len(r)`` characters up to 600, 1.0 above.
- IoU (MED:41-202, :func:`release_iou`): boxes from the first parseable fenced block; against the
  mask (inclusive rasterisation) when it has foreground, else against the ground-truth box.

Evaluation (:func:`release_accuracy`, EV:29-210): the **first** ``\\boxed{...}`` without ``}``,
else the first ``[...]`` on one line, else the whole response; per class ``(TP + TN) / N`` over the
classes of the ground truth, averaged per dataset.

Frames (DS:198-222, 543-560, 618-688): the release scores boxes in the frame of the *processed*
image (:func:`release_frame`): the ground-truth box is scaled into it and the mask is resized
into it (nearest neighbour, with the release's width/height swap, :func:`release_mask`).

Where the restated spec is silent, this module chooses (each is marked in its function): the
format candidate splits lines on ``"\n"``; a box whose length cannot be taken (a number) makes
the whole IoU step fail (0) rather than being skipped; the evaluation's ``[...]`` fallback returns
the text inside the brackets; an evaluation answer ``"None"`` predicts no label; masks with other
than 1 or 3 channels are refused.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

#: The release's weights of (F1, IoU, format, length) (MED:360-366).
RELEASE_WEIGHTS = (0.5, 0.3, 0.1, 0.1)
#: ``max_pixels`` / ``min_pixels`` of the release's training config (``examples/grpo_climb_engaging.yaml:14-15``).
MAX_PIXELS = 524288
MIN_PIXELS = 65536
#: The length at and below which the length score is ``0.001 x`` characters (MED:321-325).
LENGTH_CAP = 600

_BOXED = "\\boxed{"
#: Label separators in the order the release tries them; only the first present one is used (MED:13-23).
SEPARATORS = (", ", " and ", " & ", ",", "&")
_FENCE = "```"
#: A fenced block: triple backtick, optional ``json``, optional whitespace, shortest text to the next fence (MED:41-77).
_FENCED_BLOCK = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
#: EV:29-52: the first ``\boxed{...}`` whose content holds no ``}``; else the first ``[...]`` on one line.
_EVAL_BOXED = re.compile(r"\\boxed\{([^}]*)\}")
_EVAL_BRACKETS = re.compile(r"\[(.*?)\]")


# --------------------------------------------------------------------------------------------
# answers and labels
# --------------------------------------------------------------------------------------------
def extract_boxed_last(response: str) -> str:
    """The content of the **last** ``\\boxed{``, closed by brace walking; ``"None"`` if none (MR:292-314).

    From the last ``\\boxed{`` the text is walked counting ``{`` and ``}``; the content up to the
    ``}`` that brings the depth below zero is returned, whitespace-stripped. Nested braces are kept
    (``\\boxed{\\text{A}}`` -> ``\\text{A}``). No ``\\boxed{``, or no closing brace: ``"None"``.
    """
    start = response.rfind(_BOXED)
    if start == -1:
        return "None"
    content = response[start + len(_BOXED) :]
    depth = 0
    for i, char in enumerate(content):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == -1:
            return content[:i].strip()
    return "None"


def split_release_labels(text: str) -> list[str]:
    """The release's label splitting (MED:13-23, also EV:7-26), in first-seen order without repeats.

    1. every ``\\boxed{`` substring is removed, then **every** ``}`` character (``{`` is kept);
    2. the first separator of ``", "``, ``" and "``, ``" & "``, ``","``, ``"&"`` present in the text
       is the only one used to split; each piece is whitespace-stripped (empty pieces stay, as ``""``);
    3. with no separator the result is the stripped text alone.

    Matching on these labels is exact and case-sensitive. ``"A, B & C"`` -> ``["A", "B & C"]``;
    ``"A,B"`` -> ``["A", "B"]``; ``"\\text{Benign}"`` -> ``["\\text{Benign"]``.
    """
    cleaned = text.replace(_BOXED, "").replace("}", "")
    for sep in SEPARATORS:
        if sep in cleaned:
            return list(dict.fromkeys(piece.strip() for piece in cleaned.split(sep)))
    return [cleaned.strip()]


def set_f1(predicted: set[str], truth: set[str]) -> float:
    """F1 of two label sets (MED:307-316): ``2 p r / (p + r)`` with ``p = TP / |P|``, ``r = TP / |T|``.

    Equal to ``2 TP / (2 TP + FP + FN)`` when ``TP > 0``, else 0 (also when both sets are empty).
    """
    tp = len(predicted & truth)
    fp = len(predicted - truth)
    fn = len(truth - predicted)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def answer_f1(response: str, answer: str) -> float:
    """The reward's accuracy component (MED:298-316): set F1 of the last ``\\boxed{}`` vs ``answer``.

    An extracted answer equal to ``"None"`` (no ``\\boxed{``, no closing brace, or a literal
    ``\\boxed{None}``) scores 0.
    """
    predicted = extract_boxed_last(response)
    if predicted == "None":
        return 0.0
    return set_f1(set(split_release_labels(predicted)), set(split_release_labels(answer)))


# --------------------------------------------------------------------------------------------
# format and length
# --------------------------------------------------------------------------------------------
def candidate_text(response: str) -> str:
    """The text the format score parses (MED:26-38).

    Lines are ``response.split("\\n")``. At the first line that is exactly ```` ```json ```` or is
    ```` ``` ```` once stripped, the candidate is every later line (joined by ``"\\n"``) cut at its
    first triple backtick; without such a line the candidate is the whole response.
    """
    lines = response.split("\n")
    for i, line in enumerate(lines):
        if line == "```json" or line.strip() == _FENCE:
            rest = "\n".join(lines[i + 1 :])
            end = rest.find(_FENCE)
            return rest if end == -1 else rest[:end]
    return response


def _parse_strict_then_literal(text: str) -> tuple[Any, bool] | None:
    """``(value, strict)``: ``json.loads(text)``, else ``ast.literal_eval`` of ``text`` with ``'`` -> ``"``."""
    try:
        return json.loads(text), True
    except Exception:  # the release catches every parse failure
        pass
    try:
        return ast.literal_eval(text.replace("'", '"')), False
    except Exception:
        return None


def _valid_box_item(item: Any) -> bool:
    """A dict with ``bbox_2d`` and ``label``, ``bbox_2d`` a list of exactly 4 ints/floats (bools count)."""
    if not isinstance(item, dict) or "bbox_2d" not in item or "label" not in item:
        return False
    box = item["bbox_2d"]
    return isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)


def format_score(response: str) -> float:
    """The format component (MED:205-280); increments in this order, stopping at the first failure.

    +0.2 if the response contains ```` ``` ````, and then +0.1 more if it contains ```` ```json ````;
    the :func:`candidate_text` (empty: stop); +0.2 if it parses as strict JSON, else +0.1 if
    ``ast.literal_eval`` parses it with every ``'`` replaced by ``"``, else stop; +0.1 if the value
    is a list, else stop; for a list of N > 0 items, +0.4 x (valid items / N) (see
    :func:`_valid_box_item`). At most 1.0.
    """
    score = 0.0
    if _FENCE in response:
        score += 0.2
        if _FENCE + "json" in response:
            score += 0.1
    candidate = candidate_text(response)
    if not candidate:
        return score
    parsed = _parse_strict_then_literal(candidate)
    if parsed is None:
        return score
    value, strict = parsed
    score += 0.2 if strict else 0.1
    if not isinstance(value, list):
        return score
    score += 0.1
    if value:
        score += 0.4 * (sum(_valid_box_item(item) for item in value) / len(value))
    return score


def length_score(response: str) -> float:
    """``1.0`` if the response has more than 600 characters, else ``0.001 x`` its length (MED:321-325).

    599 characters score 0.599, 600 score 0.6, 601 score 1.0.
    """
    n = len(response)
    return 1.0 if n > LENGTH_CAP else 0.001 * n


# --------------------------------------------------------------------------------------------
# boxes and IoU
# --------------------------------------------------------------------------------------------
def extract_boxes(response: str) -> list[Any]:
    """The predicted boxes the IoU uses (MED:41-77, 331-357); ``[]`` when there are none.

    Every fenced block (:data:`_FENCED_BLOCK`) is stripped and parsed with ``json.loads`` in order,
    keeping the first success; when none succeeds, each is tried in order with ``ast.literal_eval``
    after replacing ``'`` by ``"``. An empty (falsy) value gives no boxes. Accepted shapes, in this
    order: a list -> the ``bbox_2d`` of every dict item holding that key (no ``label`` needed); a
    dict with ``bbox_2d`` -> that value; a dict with ``objects_of_interest`` -> the ``bbox_2d`` of
    each dict item of that list. The values are returned as parsed (any type).
    """
    blocks = [b.strip() for b in _FENCED_BLOCK.findall(response)]
    value: Any = None
    for block in blocks:
        try:
            value = json.loads(block)
            break
        except Exception:
            continue
    else:
        for block in blocks:
            try:
                value = ast.literal_eval(block.replace("'", '"'))
                break
            except Exception:
                continue
    if not value:
        return []
    if isinstance(value, list):
        return [item["bbox_2d"] for item in value if isinstance(item, dict) and "bbox_2d" in item]
    if isinstance(value, dict) and "bbox_2d" in value:
        return [value["bbox_2d"]]
    if isinstance(value, dict) and "objects_of_interest" in value:
        return [item["bbox_2d"] for item in value["objects_of_interest"] if isinstance(item, dict) and "bbox_2d" in item]
    return []


def _scaled(box: Any, scale: tuple[float, float]) -> Any:
    """``box`` with its int/float entries multiplied by ``(sx, sy, sx, sy)``; anything else as it is."""
    if scale == (1.0, 1.0) or not isinstance(box, list):
        return box
    factors = (scale[0], scale[1]) * 2
    return [v * factors[i] if i < 4 and isinstance(v, (int, float)) else v for i, v in enumerate(box)]


def rasterize_box(box: Sequence[Any], height: int, width: int) -> np.ndarray:
    """Bool ``[height, width]`` mask of a predicted box, as the release draws it (MED:80-110).

    The first four values are truncated with ``int()``; x is clamped to ``[0, width - 1]`` and y to
    ``[0, height - 1]``; reversed corners are swapped; when ``x1 < x2`` and ``y1 < y2`` the rows
    ``y1..y2`` and columns ``x1..x2`` are set **inclusively**, else the mask stays empty (a box of
    zero width or height covers nothing). Raises for values ``int()`` rejects.
    """
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    x1, x2 = (min(max(x, 0), width - 1) for x in (x1, x2))
    y1, y2 = (min(max(y, 0), height - 1) for y in (y1, y2))
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    out = np.zeros((height, width), dtype=bool)
    if x1 < x2 and y1 < y2:
        out[y1 : y2 + 1, x1 : x2 + 1] = True
    return out


def _mask_iou(boxes: list[Any], mask: np.ndarray) -> float:
    """Mask branch (MED:113-160): mean over all K boxes of pixel IoU; short or undrawable boxes add 0.

    A box without a length (e.g. a number after a list) raises here, which zeroes the whole IoU.
    """
    truth = mask > 0
    height, width = truth.shape[-2:]
    total = 0.0
    for box in boxes:
        if len(box) < 4:
            continue  # still counted in K
        try:
            drawn = rasterize_box(box, height, width)
        except Exception:  # the release skips a box it cannot draw, still counting it in K
            continue
        union = int((drawn | truth).sum())
        total += int((drawn & truth).sum()) / union if union else 0.0
    return total / len(boxes)


def _box_iou(boxes: list[Any], truth: Sequence[float]) -> float:
    """Box branch (MED:161-202): area IoU on raw corners; a second box of >= 4 values raises (the release's defect)."""
    total = 0.0
    drawn = 0
    for box in boxes:
        if len(box) < 4:
            continue  # still counted in K
        if drawn:
            raise RuntimeError("the release converts the ground-truth tensor to a list inside the loop")
        drawn = 1
        px1, py1, px2, py2 = box[:4]
        gx1, gy1, gx2, gy2 = truth
        ox1, oy1, ox2, oy2 = max(px1, gx1), max(py1, gy1), min(px2, gx2), min(py2, gy2)
        if ox1 >= ox2 or oy1 >= oy2:
            continue
        inter = (ox2 - ox1) * (oy2 - oy1)
        union = (px2 - px1) * (py2 - py1) + (gx2 - gx1) * (gy2 - gy1) - inter
        total += inter / union if union > 0 else 0.0
    return total / len(boxes)


def release_iou(
    response: str,
    mask: np.ndarray | None,
    gt_box: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    box_scale: tuple[float, float] = (1.0, 1.0),
) -> float:
    """The IoU component (MED:113-202, 331-357) of the boxes in ``response``.

    ``mask``: ``[H, W]`` ground truth in the release frame (:func:`release_mask`), or None;
    ``gt_box``: ``[x1, y1, x2, y2]`` in the release frame (:func:`release_gt_box`; the release's
    default is ``[0, 0, 0, 0]``, against which every box scores 0). ``box_scale`` multiplies the
    predicted x and y values first (``(1, 1)`` when the response states release-frame pixels).

    K = number of boxes from :func:`extract_boxes`; if the first one is not a list the whole
    collection is one box (K = 1). Mask branch (the mask has a pixel > 0): mean over K of the pixel
    IoU of :func:`rasterize_box` with ``mask > 0``; a box of fewer than 4 values, or one that cannot
    be drawn, adds 0 but counts in K. Box branch (otherwise): mean over K of the area IoU with
    ``gt_box`` on raw corners (no clamp, no swap); a second box of >= 4 values raises inside the
    release, so the IoU is 0. No box: 0; any other error: 0.
    """
    try:
        boxes = extract_boxes(response)
        if not boxes:
            return 0.0
        if not isinstance(boxes[0], list):
            boxes = [boxes]
        boxes = [_scaled(b, box_scale) for b in boxes]
        if mask is not None and mask.sum() > 0:
            return _mask_iou(boxes, mask)
        return _box_iou(boxes, [float(v) for v in gt_box])
    except Exception:  # MED:356-357 turns any error of this step into IoU 0
        return 0.0


# --------------------------------------------------------------------------------------------
# the release frame
# --------------------------------------------------------------------------------------------
def release_frame(size: tuple[int, int], max_pixels: int = MAX_PIXELS, min_pixels: int = MIN_PIXELS) -> tuple[int, int]:
    """``(W', H')`` of the processed image for an original ``(W, H)`` (DS:198-222).

    If ``W H > max_pixels`` both sides are scaled by ``sqrt(max_pixels / (W H))`` and truncated to
    int; then, if ``W H < min_pixels``, the same with ``min_pixels``. Between the two bounds the
    frame is the original one: a 64 x 64 image becomes 256 x 256, a 512 x 512 one stays.
    """
    width, height = size
    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    if width * height < min_pixels:
        factor = math.sqrt(min_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    return width, height


def release_mask(mask: Image.Image, frame: tuple[int, int]) -> np.ndarray:
    """A mask as the release's reward sees it in the processed ``frame`` ``(W', H')`` (DS:543-560, 618-654).

    Resized with nearest neighbour to PIL size ``(H', W')`` (the release unpacks the processed size
    as (height, width)), so the array is ``[W', H']``: a stretch, not a transpose, harmless for
    square images. 3-channel masks are averaged over the channels; values are not binarised (the
    reward thresholds at > 0). Raises ``ValueError`` for other channel counts (e.g. RGBA), whose
    shape the release misreads.
    """
    width, height = frame
    array = np.asarray(mask.resize((height, width), Image.NEAREST), dtype=np.float64)
    if array.ndim == 3 and array.shape[2] == 3:
        array = array.mean(axis=2)
    if array.ndim != 2:
        raise ValueError(f"mask of mode {mask.mode} has shape {array.shape}; the release reads 1- or 3-channel masks")
    return array


def frame_scale(size: tuple[int, int], frame: tuple[int, int]) -> tuple[float, float]:
    """``(W'/W, H'/H)``: original pixels -> release-frame pixels."""
    return frame[0] / size[0], frame[1] / size[1]


def release_gt_box(bbox: Sequence[float] | None, scale: tuple[float, float]) -> tuple[float, float, float, float]:
    """The ground-truth box in the release frame (DS:250-277, 656-688), float32-rounded as the release stores it.

    ``bbox`` in original pixels is scaled by ``scale`` (:func:`frame_scale`); no box is ``[0, 0, 0, 0]``.
    """
    if bbox is None:
        return (0.0, 0.0, 0.0, 0.0)
    sx, sy = scale
    scaled = np.asarray([bbox[0] * sx, bbox[1] * sy, bbox[2] * sx, bbox[3] * sy], dtype=np.float32)
    return tuple(float(v) for v in scaled)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# the reward
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseScore:
    """The release's reward dict (MED:360-366): ``standard_score`` is ``accuracy`` here."""

    accuracy: float
    iou: float
    format: float
    length: float
    total: float


def medical_compute_score(
    response: str,
    answer: str,
    mask: np.ndarray | None = None,
    gt_box: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    *,
    weights: tuple[float, float, float, float] = RELEASE_WEIGHTS,
    box_scale: tuple[float, float] = (1.0, 1.0),
) -> ReleaseScore:
    """The release's reward of ``response`` against the ground-truth ``answer`` string (MED:283-367).

    ``total = w_f1 F1 + w_iou IoU + w_fmt format + w_len length``, by default 0.5 / 0.3 / 0.1 / 0.1;
    the components are :func:`answer_f1`, :func:`release_iou`, :func:`format_score` and
    :func:`length_score`. ``mask`` and ``gt_box`` are in the release frame; see :func:`release_iou`.
    """
    f1 = answer_f1(response, answer)
    iou = release_iou(response, mask, gt_box, box_scale)
    fmt = format_score(response)
    length = length_score(response)
    w_f1, w_iou, w_fmt, w_len = weights
    return ReleaseScore(f1, iou, fmt, length, w_f1 * f1 + w_iou * iou + w_fmt * fmt + w_len * length)


# --------------------------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------------------------
def extract_eval_answer(response: str) -> str:
    """The evaluation's answer text (EV:29-52), which differs from the reward's.

    The content of the **first** ``\\boxed{...}`` whose content holds no ``}`` (so
    ``\\boxed{\\text{A}}`` gives ``\\text{A``); failing that, the content of the first ``[...]`` on
    one line (shortest); failing that, the whole response. A missing box is not an empty answer.
    """
    for pattern in (_EVAL_BOXED, _EVAL_BRACKETS):
        match = pattern.search(response)
        if match is not None:
            return match.group(1)
    return response


def release_truth(truths: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """``(classes, truth)`` of one group's ground-truth answer strings (EV:96-153).

    ``classes``: the sorted labels of :func:`split_release_labels` over all truths (the classes with
    support; labels only ever predicted have none and never enter an average); ``truth [N, C]``:
    class ``j`` is in record ``i``'s truth.
    """
    return multi_hot([set(split_release_labels(t)) for t in truths])


def multi_hot(sets: Sequence[Collection[str]]) -> tuple[list[str], np.ndarray]:
    """``(classes, truth)``: the sorted union of ``sets``, and ``truth [N, C]`` with class ``j`` in set ``i``."""
    classes = sorted(set().union(*sets)) if sets else []
    index = {c: j for j, c in enumerate(classes)}
    truth = np.zeros((len(sets), len(classes)), dtype=bool)
    for i, labels in enumerate(sets):
        for c in labels:
            truth[i, index[c]] = True
    return classes, truth


def release_predicted(classes: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """``[N, C]``: class ``classes[j]`` is among the labels the evaluation reads from response ``i``.

    Labels: :func:`split_release_labels` of :func:`extract_eval_answer`; an extracted ``"None"``
    predicts nothing. Labels outside ``classes`` are dropped (they have no support).
    """
    index = {c: j for j, c in enumerate(classes)}
    pred = np.zeros((len(responses), len(classes)), dtype=bool)
    for i, response in enumerate(responses):
        text = extract_eval_answer(response)
        if text == "None":
            continue
        for label in split_release_labels(text):
            j = index.get(label)
            if j is not None:
                pred[i, j] = True
    return pred


def release_class_accuracy(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean per-class ``(TP + TN) / N`` over the classes with support, under sample weights ``[R, N]`` -> ``[R]``.

    With weights all 1 this is the release's dataset accuracy (EV:55-210); other weights (bootstrap
    counts) give its replicates: a class counts when a weighted record has it. NaN without one.
    """
    w = np.asarray(weights, dtype=np.float64)
    agree = (truth == pred).astype(np.float64)  # TP or TN, per record and class
    support = (w @ truth.astype(np.float64)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (w @ agree) / w.sum(1, keepdims=True)
        n_classes = support.sum(1)
        return np.where(n_classes > 0, np.where(support, accuracy, 0.0).sum(1) / np.maximum(n_classes, 1), np.nan)


def release_accuracy(truths: Sequence[str], responses: Sequence[str]) -> float:
    """The release's per-class accuracy of one (data_source, dataset) group (EV:55-210).

    ``truths[i]`` is record i's ground-truth answer string, ``responses[i]`` its response. The class
    universe is the union of the truth and predicted label sets; for each class ``c`` and record,
    TP / FN / FP / TN by ``c`` in truth and prediction, so ``TP + FP + FN + TN = N``. Per class,
    accuracy ``(TP + TN) / N``; the result is its mean over the classes with support > 0 (present in
    some truth). Classes only ever predicted (invented labels) are left out; a class in every record
    has ``TN = 0`` and accuracy = recall. NaN with no records.

    Worked example: truths ``A``, ``A, B``, ``B``; predictions ``A``, ``A``, ``C``. Class A: TP 2,
    TN 1 -> 3/3; class B: FN 2, TN 1 -> 1/3; class C has support 0. Result ``(1 + 1/3) / 2 = 2/3``.
    """
    classes, truth = release_truth(truths)
    pred = release_predicted(classes, responses)
    return float(release_class_accuracy(truth, pred, np.ones((1, len(truths))))[0])
