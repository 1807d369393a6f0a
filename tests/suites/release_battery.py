"""Hand-worked battery of the release reward (MED:283-367), shared by the unit and the CLI tests.

Every expected value below was worked out by hand from the release's rules (the spec in
``rlbench_med/suites/release.py``), never by running the code. Notation:

- ground truth of every record: ``"Edema, Pleural Effusion"`` -> {Edema, Pleural Effusion};
- ``mask``: a 256 x 256 image (65 536 pixels = min_pixels, so the release frame is the image's
  own) with mask rows 10..19, columns 20..29 (100 pixels); ``box``: the same image with
  ``bbox [20, 10, 30, 20]`` (area 100); ``none``: no region, so the release's box is
  ``[0, 0, 0, 0]``; ``small_mask`` / ``small_box``: a 64 x 64 image (release frame 256 x 256,
  scale 4) with mask rows 2..4, columns 5..7 (-> rows 8..19, columns 20..31 after the nearest
  resize: 144 pixels) / ``bbox [5, 2, 8, 5]`` (-> [20, 8, 32, 20]), responses in original pixels;
- ``fenced(j)`` is ``"```json\\n" + j + "\\n```"``: 7 + 1 + len(j) + 1 + 3 = len(j) + 12 characters;
- ``jbox(b)`` is ``'[{"label": "Edema", "bbox_2d": ' + b + '}]'``: 33 + len(b) characters
  (``[{`` 2, ``"label"`` 7, ``: `` 2, ``"Edema"`` 7, ``, `` 2, ``"bbox_2d"`` 9, ``: `` 2, ``}]`` 2);
  ``"[20, 10, 29, 19]"`` has 16 characters, so ``jbox`` of it has 49 and ``fenced(jbox(..))`` 61;
- ``\\boxed{`` has 7 characters, so ``\\boxed{X}`` has len(X) + 8.

Length score = 0.001 x characters (up to 600). Total = 0.5 F1 + 0.3 IoU + 0.1 format + 0.1 length.
Format increments: ``` +0.2, ```json +0.1, strict JSON +0.2 or literal +0.1, list +0.1,
+0.4 x valid items / items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rlbench_med.suites.data import Sample

TRUTH = "Edema, Pleural Effusion"
CLASSES = ("Edema", "Pleural Effusion", "Nevus")
DATASET = "ReleaseBattery"


def fenced(body: str) -> str:
    return "```json\n" + body + "\n```"


def jbox(box: str) -> str:
    return '[{"label": "Edema", "bbox_2d": ' + box + "}]"


J_FULL = jbox("[20, 10, 29, 19]")  # 49 characters; covers the mask exactly (inclusive rows 10..19, cols 20..29)
J_SINGLE = "[{'label': 'Edema', 'bbox_2d': [20, 10, 29, 19]}]"  # 49 characters, single quotes
BOXED_BOTH = "\\boxed{Edema, Pleural Effusion}"  # 8 + 23 = 31 characters


@dataclass(frozen=True)
class Case:
    name: str
    record: str  # mask | box | none | small_mask | small_box
    response: str
    f1: float
    iou: float
    format: float
    length: float
    total: float


CASES = [
    # -- answer extraction and labels (record none: IoU 0; no backticks, and neither json.loads nor
    #    literal_eval parses these texts, so format 0) ----------------------------------------------
    # No \boxed -> "None" -> F1 0. 5 characters.
    Case("no_boxed", "none", "Edema", 0.0, 0.0, 0.0, 0.005, 0.1 * 0.005),
    # Exact set. 31 characters.
    Case("boxed_exact", "none", BOXED_BOTH, 1.0, 0.0, 0.0, 0.031, 0.5 + 0.1 * 0.031),
    # Brace walking keeps \text{Edema}; cleaning drops "}" -> "\text{Edema" != Edema -> F1 0. 7 + 6 + 5 + 2 = 20.
    Case("braces_text", "none", "\\boxed{\\text{Edema}}", 0.0, 0.0, 0.0, 0.020, 0.1 * 0.020),
    # Content "{Edema}, Pleural Effusion" -> cleaned "{Edema, Pleural Effusion" -> {"{Edema", PE}:
    # TP 1, FP 1, FN 1 -> F1 0.5. 7 + 7 + 2 + 16 + 1 = 33.
    Case("braces_inside", "none", "\\boxed{{Edema}, Pleural Effusion}", 0.5, 0.0, 0.0, 0.033, 0.25 + 0.1 * 0.033),
    # The last \boxed wins: {Edema}: p 1, r 1/2 -> F1 2/3. 13 + 6 + 13 = 32.
    Case("last_boxed_wins", "none", "\\boxed{Nevus} then \\boxed{Edema}", 2 / 3, 0.0, 0.0, 0.032,
         0.5 * 2 / 3 + 0.1 * 0.032),
    # The last \boxed{ never closes -> "None" even though an earlier one is complete. 13 + 5 + 7 + 7 = 32.
    Case("last_boxed_unclosed", "none", "\\boxed{Edema} and \\boxed{Pleural", 0.0, 0.0, 0.0, 0.032, 0.1 * 0.032),
    # The inner \boxed{ is the last one: "Edema" -> F1 2/3. 7 + 7 + 5 + 1 + 2 + 16 + 1 = 39.
    Case("nested_boxed", "none", "\\boxed{\\boxed{Edema}, Pleural Effusion}", 2 / 3, 0.0, 0.0, 0.039,
         0.5 * 2 / 3 + 0.1 * 0.039),
    # A literal \boxed{None} is "None" -> 0. 12 characters.
    Case("literal_none", "none", "\\boxed{None}", 0.0, 0.0, 0.0, 0.012, 0.1 * 0.012),
    # \boxed{} -> "" (not "None") -> {""}: TP 0 -> 0. 8 characters.
    Case("empty_boxed", "none", "\\boxed{}", 0.0, 0.0, 0.0, 0.008, 0.1 * 0.008),
    # " and " separator -> exact set. 5 + 5 + 16 = 26 + 8 = 34.
    Case("sep_and", "none", "\\boxed{Edema and Pleural Effusion}", 1.0, 0.0, 0.0, 0.034, 0.5 + 0.1 * 0.034),
    # " & " separator. 5 + 3 + 16 = 24 + 8 = 32.
    Case("sep_amp_spaced", "none", "\\boxed{Edema & Pleural Effusion}", 1.0, 0.0, 0.0, 0.032, 0.5 + 0.1 * 0.032),
    # "," separator. 5 + 1 + 16 = 22 + 8 = 30.
    Case("sep_comma", "none", "\\boxed{Edema,Pleural Effusion}", 1.0, 0.0, 0.0, 0.030, 0.5 + 0.1 * 0.030),
    # "&" separator. 30 characters.
    Case("sep_amp", "none", "\\boxed{Edema&Pleural Effusion}", 1.0, 0.0, 0.0, 0.030, 0.5 + 0.1 * 0.030),
    # ", " comes first: {Edema, "Pleural Effusion & Nevus"}: TP 1, FP 1, FN 1 -> 0.5. 5 + 2 + 16 + 3 + 5 = 31 + 8 = 39.
    Case("sep_order_comma_space", "none", "\\boxed{Edema, Pleural Effusion & Nevus}", 0.5, 0.0, 0.0, 0.039,
         0.25 + 0.1 * 0.039),
    # No ", " -> " and " is used: {Edema, "Pleural Effusion,Nevus"} -> 0.5. 5 + 5 + 16 + 1 + 5 = 32 + 8 = 40.
    Case("sep_order_and", "none", "\\boxed{Edema and Pleural Effusion,Nevus}", 0.5, 0.0, 0.0, 0.040,
         0.25 + 0.1 * 0.040),
    # Case-sensitive: {edema, PE} -> TP 1, FP 1, FN 1 -> 0.5. 31 characters.
    Case("case_sensitive", "none", "\\boxed{edema, Pleural Effusion}", 0.5, 0.0, 0.0, 0.031, 0.25 + 0.1 * 0.031),
    # Stripped content "Edema," has no ", " -> "," splits -> {Edema, ""}: TP 1, FP 1, FN 1 -> 0.5. 7 + 7 + 1 = 15.
    Case("empty_piece", "none", "\\boxed{Edema, }", 0.5, 0.0, 0.0, 0.015, 0.25 + 0.1 * 0.015),
    # {E, PE, Nevus}: TP 2, FP 1 -> p 2/3, r 1 -> F1 0.8. 23 + 2 + 5 = 30 + 8 = 38.
    Case("extra_label", "none", "\\boxed{Edema, Pleural Effusion, Nevus}", 0.8, 0.0, 0.0, 0.038, 0.4 + 0.1 * 0.038),
    # Content "Edema ,Pleural Effusion": no ", " -> "," -> stripped pieces {E, PE} -> 1. 7 + 27 + 1 = 35.
    Case("whitespace", "none", "\\boxed{  Edema ,Pleural Effusion  }", 1.0, 0.0, 0.0, 0.035, 0.5 + 0.1 * 0.035),
    # -- format ----------------------------------------------------------------------------------------
    # ``` +0.2 (no ```json); line "```" starts the candidate "[1, 2]\n": JSON +0.2, list +0.1, 0 of 2
    # valid -> 0.5. IoU: block [1, 2] has no dicts -> 0. 3 + 1 + 6 + 1 + 3 = 14.
    Case("backticks_no_json", "none", "```\n[1, 2]\n```", 0.0, 0.0, 0.5, 0.014, 0.1 * 0.5 + 0.1 * 0.014),
    # 0.2 + 0.1 + 0.2 + 0.1 + 0.4 x 1/1 = 1.0; F1 {Edema} 2/3; box == mask -> IoU 1. 14 + 61 = 75.
    Case("fenced_valid", "mask", "\\boxed{Edema}\n" + fenced(J_FULL), 2 / 3, 1.0, 1.0, 0.075,
         0.5 * 2 / 3 + 0.3 + 0.1 + 0.1 * 0.075),
    # No backticks: candidate = whole text, JSON +0.2, list +0.1, valid +0.4 = 0.7; no fence -> IoU 0. 49.
    Case("unfenced_json", "mask", J_FULL, 0.0, 0.0, 0.7, 0.049, 0.1 * 0.7 + 0.1 * 0.049),
    # Single quotes: JSON fails, literal +0.1 -> 0.2 + 0.1 + 0.1 + 0.1 + 0.4 = 0.9; the IoU's literal
    # fallback finds the box -> 1. 61.
    Case("single_quoted", "mask", fenced(J_SINGLE), 0.0, 1.0, 0.9, 0.061, 0.3 + 0.1 * 0.9 + 0.1 * 0.061),
    # Trailing comma: JSON fails, literal parses -> 0.9; region-less record -> IoU 0. 50 + 12 = 62.
    Case("trailing_comma", "none", fenced('[{"label": "Edema", "bbox_2d": [20, 10, 29, 19]},]'), 0.0, 0.0, 0.9,
         0.062, 0.1 * 0.9 + 0.1 * 0.062),
    # One line: no line is "```json" -> candidate = whole text (starts with "\") -> stop at 0.3. The
    # IoU regex finds the block -> 1. F1 2/3. 13 + 1 + 7 + 1 + 49 + 1 + 3 = 75.
    Case("fence_inline", "mask", "\\boxed{Edema} ```json " + J_FULL + " ```", 2 / 3, 1.0, 0.3, 0.075,
         0.5 * 2 / 3 + 0.3 + 0.1 * 0.3 + 0.1 * 0.075),
    # "```json " (trailing space) is not the start line; the closing "```" is, so the candidate is
    # "tail" -> stop at 0.3. IoU 1. 8 + 1 + 49 + 1 + 3 + 1 + 4 = 67.
    Case("fence_line_trailing_space", "mask", "```json \n" + J_FULL + "\n```\ntail", 0.0, 1.0, 0.3, 0.067,
         0.3 + 0.1 * 0.3 + 0.1 * 0.067),
    # A dict: 0.2 + 0.1 + 0.2 = 0.5 (not a list); IoU from the dict's bbox_2d -> 1.
    # '{"bbox_2d": [20, 10, 29, 19]}' = 1 + 9 + 2 + 16 + 1 = 29 + 12 = 41.
    Case("dict_not_list", "mask", fenced('{"bbox_2d": [20, 10, 29, 19]}'), 0.0, 1.0, 0.5, 0.041,
         0.3 + 0.1 * 0.5 + 0.1 * 0.041),
    # objects_of_interest: one item with a box (rows 10..14 x cols 20..29 = 50 px in the mask: 50 / 100),
    # one without -> K 1 -> 0.5; format 0.5 (a dict). JSON: 1 + 21 + 2 + 1 + 29 + 2 + 14 + 1 + 1 = 72 + 12 = 84.
    Case("objects_of_interest", "mask",
         fenced('{"objects_of_interest": [{"bbox_2d": [20, 10, 29, 14]}, {"label": "x"}]}'),
         0.0, 0.5, 0.5, 0.084, 0.3 * 0.5 + 0.1 * 0.5 + 0.1 * 0.084),
    # Items without label still give boxes: IoUs 1 and 50/100 -> 0.75; format 0.6 + 0.4 x 1/2 = 0.8.
    # JSON 1 + 29 + 2 + 47 + 1 = 80 + 12 = 92.
    Case("unlabelled_item", "mask",
         fenced('[{"bbox_2d": [20, 10, 29, 19]}, {"label": "Edema", "bbox_2d": [20, 10, 24, 19]}]'),
         0.0, 0.75, 0.8, 0.092, 0.3 * 0.75 + 0.1 * 0.8 + 0.1 * 0.092),
    # -- IoU, mask branch ------------------------------------------------------------------------------
    # A 3-coordinate box is skipped but counted: (1 + 0) / 2 = 0.5; format 0.8 (1 of 2 valid).
    # JSON 1 + 47 + 2 + 40 + 1 = 91 + 12 = 103.
    Case("three_coordinates", "mask",
         fenced('[{"label": "Edema", "bbox_2d": [20, 10, 29, 19]}, {"label": "Edema", "bbox_2d": [1, 2, 3]}]'),
         0.0, 0.5, 0.8, 0.103, 0.3 * 0.5 + 0.1 * 0.8 + 0.1 * 0.103),
    # Reversed corners are swapped -> the mask exactly -> 1. 61.
    Case("reversed_mask", "mask", fenced(jbox("[29, 19, 20, 10]")), 0.0, 1.0, 1.0, 0.061, 0.3 + 0.1 + 0.1 * 0.061),
    # Inclusive: rows 10..14 x cols 20..24 = 25 px, all in the mask -> 25 / 100. 61.
    Case("inclusive", "mask", fenced(jbox("[20, 10, 24, 14]")), 0.0, 0.25, 1.0, 0.061,
         0.3 * 0.25 + 0.1 + 0.1 * 0.061),
    # x1 == x2: empty box -> 0 / 100. 61.
    Case("zero_width", "mask", fenced(jbox("[20, 10, 20, 19]")), 0.0, 0.0, 1.0, 0.061, 0.1 + 0.1 * 0.061),
    # Clamped to [0, 255]: the whole 256 x 256 image -> 100 / 65536. "[-5, -5, 300, 300]" 18 -> 45 + 18 = 63.
    Case("clamp", "mask", fenced(jbox("[-5, -5, 300, 300]")), 0.0, 100 / 65536, 1.0, 0.063,
         0.3 * 100 / 65536 + 0.1 + 0.1 * 0.063),
    # int() truncates 20.9 -> 20 ...: the mask exactly -> 1. "[20.9, 10.9, 29.9, 19.9]" 24 -> 69.
    Case("float_truncation", "mask", fenced(jbox("[20.9, 10.9, 29.9, 19.9]")), 0.0, 1.0, 1.0, 0.069,
         0.3 + 0.1 + 0.1 * 0.069),
    # int("20") works, so the IoU is 1; strings are not valid for format: 0.6. 24 -> 69.
    Case("string_coordinates", "mask", fenced(jbox('["20", "10", "29", "19"]')), 0.0, 1.0, 0.6, 0.069,
         0.3 + 0.1 * 0.6 + 0.1 * 0.069),
    # int("a") fails: that box is skipped but counted: (1 + 0) / 2; format 0.8. '["a", 1, 2, 3]' 14 ->
    # second item 30 + 14 + 1 = 45; JSON 1 + 47 + 2 + 45 + 1 = 96 + 12 = 108.
    Case("undrawable_box", "mask",
         fenced('[{"label": "Edema", "bbox_2d": [20, 10, 29, 19]}, {"label": "Edema", "bbox_2d": ["a", 1, 2, 3]}]'),
         0.0, 0.5, 0.8, 0.108, 0.3 * 0.5 + 0.1 * 0.8 + 0.1 * 0.108),
    # bbox_2d values 20, 10, 29, 19 are not lists -> the collection is one box [20, 10, 29, 19] -> 1;
    # format 0.6 (no item valid). Items 15 each: 60 + 3 x 2 + 2 = 68 + 12 = 80.
    Case("collection_as_one_box", "mask",
         fenced('[{"bbox_2d": 20}, {"bbox_2d": 10}, {"bbox_2d": 29}, {"bbox_2d": 19}]'),
         0.0, 1.0, 0.6, 0.080, 0.3 + 0.1 * 0.6 + 0.1 * 0.080),
    # true/false count as numbers for format (1.0); int() -> [1, 0, 1, 1]: x1 == x2 -> empty -> 0.
    # "[true, false, true, true]" 25 -> 70.
    Case("bool_coordinates", "mask", fenced(jbox("[true, false, true, true]")), 0.0, 0.0, 1.0, 0.070,
         0.1 + 0.1 * 0.070),
    # -- IoU, box branch (no mask) and no region -------------------------------------------------------
    # Overlap (20, 10, 29, 19) = 81; union 81 + 100 - 81 = 100 -> 0.81 (the mask branch gave 1). 75.
    Case("box_branch", "box", "\\boxed{Edema}\n" + fenced(J_FULL), 2 / 3, 0.81, 1.0, 0.075,
         0.5 * 2 / 3 + 0.3 * 0.81 + 0.1 + 0.1 * 0.075),
    # A second box of 4 values raises inside the release -> IoU 0, even though both equal the truth.
    # JSON 1 + 47 + 2 + 47 + 1 = 98 + 12 = 110.
    Case("box_second_box_defect", "box",
         fenced('[{"label": "Edema", "bbox_2d": [20, 10, 30, 20]}, {"label": "Edema", "bbox_2d": [20, 10, 30, 20]}]'),
         0.0, 0.0, 1.0, 0.110, 0.1 + 0.1 * 0.110),
    # The exact box plus a 3-value one: (1 + 0) / 2 = 0.5; format 0.8. 103.
    Case("box_short_second", "box",
         fenced('[{"label": "Edema", "bbox_2d": [20, 10, 30, 20]}, {"label": "Edema", "bbox_2d": [1, 2, 3]}]'),
         0.0, 0.5, 0.8, 0.103, 0.3 * 0.5 + 0.1 * 0.8 + 0.1 * 0.103),
    # No swap in the box branch: overlap x from max(30, 20) = 30 to min(20, 30) = 20 -> empty -> 0. 61.
    Case("box_reversed", "box", fenced(jbox("[30, 20, 20, 10]")), 0.0, 0.0, 1.0, 0.061, 0.1 + 0.1 * 0.061),
    # Overlap (25, 15, 30, 20) = 25; union 100 + 100 - 25 = 175 -> 1/7. 61.
    Case("box_partial", "box", fenced(jbox("[25, 15, 35, 25]")), 0.0, 1 / 7, 1.0, 0.061,
         0.3 / 7 + 0.1 + 0.1 * 0.061),
    # No region: the release's [0, 0, 0, 0] box -> 0. 75.
    Case("no_region", "none", "\\boxed{Edema}\n" + fenced(J_FULL), 2 / 3, 0.0, 1.0, 0.075,
         0.5 * 2 / 3 + 0.1 + 0.1 * 0.075),
    # -- several blocks --------------------------------------------------------------------------------
    # Candidate after the first "```" line is "not json\n": neither parse -> 0.3 (```json occurs later).
    # IoU: block 1 fails, block 2 parses -> 1. 3 + 1 + 8 + 1 + 3 + 1 + 61 = 78.
    Case("first_parseable_block", "mask", "```\nnot json\n```\n" + fenced(J_FULL), 0.0, 1.0, 0.3, 0.078,
         0.3 + 0.1 * 0.3 + 0.1 * 0.078),
    # Strict JSON is tried on every block before any literal parse: block 2 (strict) wins over block 1
    # (single quotes, box with IoU 0.5) -> 1. Format reads block 1: literal -> 0.9. 61 + 1 + 61 = 123.
    Case("strict_before_literal", "mask",
         fenced("[{'label': 'Edema', 'bbox_2d': [20, 10, 24, 19]}]") + "\n" + fenced(J_FULL),
         0.0, 1.0, 0.9, 0.123, 0.3 + 0.1 * 0.9 + 0.1 * 0.123),
    # Empty candidate: stop at 0.3; the empty block parses to nothing -> 0. 7 + 1 + 3 = 11.
    Case("empty_candidate", "mask", "```json\n```", 0.0, 0.0, 0.3, 0.011, 0.1 * 0.3 + 0.1 * 0.011),
    # [] parses (+0.2) and is a list (+0.1) with no items -> 0.6; an empty value gives no box -> 0. 14.
    Case("empty_list", "mask", fenced("[]"), 0.0, 0.0, 0.6, 0.014, 0.1 * 0.6 + 0.1 * 0.014),
    # -- length ----------------------------------------------------------------------------------------
    # 31 + 568 = 599 characters -> 0.599; 600 -> 0.6; 601 -> 1.0.
    Case("length_599", "none", BOXED_BOTH + "a" * 568, 1.0, 0.0, 0.0, 0.599, 0.5 + 0.1 * 0.599),
    Case("length_600", "none", BOXED_BOTH + "a" * 569, 1.0, 0.0, 0.0, 0.600, 0.5 + 0.1 * 0.600),
    Case("length_601", "none", BOXED_BOTH + "a" * 570, 1.0, 0.0, 0.0, 1.0, 0.5 + 0.1 * 1.0),
    # -- the release frame (64 x 64 -> 256 x 256) --------------------------------------------------------
    # [5, 2, 8, 5] x 4 = [20, 8, 32, 20]: inclusive rows 8..20 x cols 20..32 = 169 px holding the
    # 144-px resized mask -> 144 / 169. "[5, 2, 8, 5]" 12 -> 45 + 12 = 57.
    Case("frame_mask", "small_mask", fenced(jbox("[5, 2, 8, 5]")), 0.0, 144 / 169, 1.0, 0.057,
         0.3 * 144 / 169 + 0.1 + 0.1 * 0.057),
    # gt [20, 8, 32, 20], pred [6, 2, 8, 5] x 4 = [24, 8, 32, 20]: overlap 8 x 12 = 96, union 96 + 144 - 96
    # = 144 -> 2/3. 57.
    Case("frame_box", "small_box", fenced(jbox("[6, 2, 8, 5]")), 0.0, 2 / 3, 1.0, 0.057,
         0.3 * 2 / 3 + 0.1 + 0.1 * 0.057),
]


def write_media(root: Path) -> None:
    """The images and masks the battery's records point to (paths relative to ``root``)."""
    media = root / "battery"
    media.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((256, 256), 90, np.uint8)).save(media / "img256.png")
    mask = np.zeros((256, 256), np.uint8)
    mask[10:20, 20:30] = 255  # rows 10..19, cols 20..29: 100 pixels
    Image.fromarray(mask).save(media / "mask256.png")
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(media / "img64.png")
    small = np.zeros((64, 64), np.uint8)
    small[2:5, 5:8] = 255  # rows 2..4, cols 5..7: 9 pixels
    Image.fromarray(small).save(media / "mask64.png")


RECORD_FIELDS: dict[str, dict] = {
    "mask": {"images": ["battery/img256.png"], "segmentation_path": "battery/mask256.png"},
    "box": {"images": ["battery/img256.png"], "bbox": [20, 10, 30, 20]},
    "none": {"images": ["battery/img256.png"]},
    "small_mask": {"images": ["battery/img64.png"], "segmentation_path": "battery/mask64.png"},
    "small_box": {"images": ["battery/img64.png"], "bbox": [5, 2, 8, 5]},
}


def record(case: Case) -> dict:
    """The test.jsonl record of a case (id = the case's name)."""
    return {"id": case.name, "problem": "<image>\nWhich findings?", "answer": TRUTH, "dataset": DATASET,
            **RECORD_FIELDS[case.record]}


def classes_json() -> str:
    return json.dumps({DATASET: {"domain": "cxr", "classes": list(CLASSES)}})


def sample(root: Path, kind: str) -> Sample:
    """The loaded form of a record kind (absolute paths, the first image's size)."""
    fields = RECORD_FIELDS[kind]
    size = (64, 64) if "img64" in fields["images"][0] else (256, 256)
    seg = fields.get("segmentation_path")
    bbox = fields.get("bbox")
    return Sample(
        uid=kind, problem="Which findings?", labels=("Edema", "Pleural Effusion"), domain="cxr", dataset=DATASET,
        task=DATASET, classes=CLASSES, images=(root / fields["images"][0],),
        segmentation_path=root / seg if seg else None, bbox=tuple(float(v) for v in bbox) if bbox else None,
        image_size=size, split="test",
    )
