"""Score any model's responses to a data folder's test records (``rlbench-med score``).

Input: a data folder (``train.jsonl`` / ``test.jsonl`` in the export format, loaded and validated
as ``run`` does) and a JSONL file of responses, one per test record::

    {"id": "rec-17", "response": "<think>...</think> \\boxed{Edema} ```json [...] ```"}
    {"index": 3, "response": "..."}

``id`` matches the ``id`` field of a test record; ``index`` is the record's 0-based position
among the records of ``test.jsonl`` (its line number - 1 when the file has no blank lines). When a
line gives both they must name the same record. Every problem of the file is reported as
``file:line: field: message`` (:class:`ScoreError`); nothing is skipped silently, and a test
record without a response is an error unless ``allow_missing``.

Output (:func:`write_score`) in ``out_dir``: ``scores.jsonl`` (per record: the reward's
``accuracy``, ``iou``, ``format``, ``length`` and ``total``), ``predictions/<algo>-seed0.jsonl``
(the predictions format of ``run``, with the raw ``response``), ``results.csv`` (the suite's
metrics from :func:`~rlbench_med.suites.metrics.compute_metrics`, algo ``<algo>``, seed 0, beside the
trivial floors of :mod:`~rlbench_med.suites.floors` on the same records) and the report
(:func:`~rlbench_med.reports.report.make_report`), which compares the responses with the floors.

Box coordinates: ``box_frame="original"`` reads them as pixels of the original image (this
project's prompts and policies), ``"release"`` as pixels of the release's processed image (a
model trained by the QoQ-Med release). The ``release`` reward scores in its own frame either way;
the ``paper`` reward and the ``iou`` metric read original pixels, so release-frame boxes are divided
by the frame's scale first.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench_med.reports.report import Report, make_report
from rlbench_med.suites.data import Problem, Sample, load_data
from rlbench_med.suites.floors import floor_predictions, floor_rows
from rlbench_med.suites.metrics import compute_metrics
from rlbench_med.suites.release import frame_scale, release_frame
from rlbench_med.suites.rewards import Answer, BoxFrame, RewardWeights, make_reward, parse_answer

COMPONENTS = ("accuracy", "iou", "format", "length", "total")
SEED = 0


class ScoreError(ValueError):
    """A responses file that cannot be scored; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        first = f" (first: {self.problems[0]})" if self.problems else ""
        super().__init__(f"{len(self.problems)} problem(s) in the responses{first}")


@dataclass
class ScoreOutcome:
    """Per-record scores and predictions (test-file order) and the metric rows of one responses file."""

    suite: str
    algo: str
    scores: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # the responses' metrics, then the floors' (on the same records)
    n_records: int
    floors: dict[str, list[list[dict[str, Any]]]] = dataclasses.field(default_factory=dict)


def _as_index(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def record_name(samples: Sequence[Sample], index: int) -> str:
    """A test record as a responses file names it: ``index 5 (line 6 of the test file, which gives no id)``, or
    ``index 5 (id 'r-17')``: the 0-based index beside the 1-based line, each called what it is."""
    uid = samples[index].uid
    line = re.fullmatch(r"test:(\d+)", uid)  # the id a record without one gets: its split and line
    return f"index {index} (line {line[1]} of the test file, which gives no id)" if line else f"index {index} (id {uid!r})"


def read_responses(path: Path, samples: Sequence[Sample], *, allow_missing: bool = False) -> dict[int, str]:
    """``{record index: response}`` of ``path`` for ``samples`` (the test records in file order).

    Raises :class:`ScoreError` carrying every problem (see the module docstring for the rules).
    """
    path = Path(path)
    where = str(path)
    problems: list[Problem] = []
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreError([Problem(where, 0, "file", f"cannot be read as UTF-8 text: {exc}")]) from None
    by_id = {s.uid: i for i, s in enumerate(samples)}
    answered: dict[int, tuple[str, int]] = {}
    n_lines = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        n_lines += 1

        def bad(field: str, message: str, line_no: int = line_no) -> None:
            problems.append(Problem(where, line_no, field, message))

        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            bad("json", f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(rec, dict):
            bad("record", f"expected a JSON object with id or index and response, got {type(rec).__name__}")
            continue
        response = rec.get("response")
        if not isinstance(response, str):
            what = "missing" if "response" not in rec else f"expected a string, got {type(response).__name__}"
            bad("response", f"{what}; give the model's full text output as a string")
        targets: list[int] = []
        if "id" in rec:
            key = rec["id"]
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                bad("id", f"expected a string or integer, got {key!r}")
            elif str(key) not in by_id:
                bad("id", f"no test record has id {str(key)!r}; use the test record's id field, or index")
            else:
                targets.append(by_id[str(key)])
        if "index" in rec:
            index = _as_index(rec["index"])
            if index is None or not 0 <= index < len(samples):
                bad("index", f"{rec['index']!r} is not a record position 0..{len(samples) - 1} of the test file")
            else:
                targets.append(index)
        if "id" not in rec and "index" not in rec:
            bad("id", 'missing; give "id" (the test record\'s id) or "index" (its 0-based position in test.jsonl)')
        if len(set(targets)) > 1:
            bad("index", f"names test record {targets[1]} but id names test record {targets[0]}")
            continue
        if not targets or not isinstance(response, str):
            continue
        target = targets[0]
        if target in answered:
            bad("id" if "id" in rec else "index", f"test record {record_name(samples, target)} already has a "
                f"response on line {answered[target][1]}")
            continue
        answered[target] = (response, line_no)
    if n_lines == 0:
        problems.append(Problem(where, 0, "file", "has no responses"))
    missing = [i for i in range(len(samples)) if i not in answered]
    if missing and not allow_missing and n_lines:
        problems.append(Problem(
            where, 0, "records", f"{len(missing)} of {len(samples)} test records have no response (first: "
            f"{record_name(samples, missing[0])}); answer every record, or allow missing ones (--allow-missing)",
        ))
    if problems:
        raise ScoreError(problems)
    return {i: r for i, (r, _) in sorted(answered.items())}


def _to_original(answer: Answer, sample: Sample, box_frame: BoxFrame) -> Answer:
    """``answer`` with release-frame boxes divided by the frame's scale (original pixels)."""
    if box_frame == "original" or sample.image_size is None or not answer.boxes:
        return answer
    sx, sy = frame_scale(sample.image_size, release_frame(sample.image_size))
    boxes = tuple((b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy) for b in answer.boxes)
    return dataclasses.replace(answer, boxes=boxes)


def score_responses(
    data_dir: Path,
    responses_path: Path,
    *,
    reward: str = "paper",
    weights: RewardWeights | str = "auto",
    box_frame: BoxFrame = "original",
    algo: str | None = None,
    suite: str | None = None,
    allow_missing: bool = False,
) -> ScoreOutcome:
    """Score the responses of ``responses_path`` to the test records of ``data_dir``.

    ``reward`` / ``weights``: the reward function and its weights (as the ``reward`` and
    ``reward_weights`` config knobs); ``algo`` defaults to the responses file's stem and ``suite`` to
    the suite recorded in ``data_dir/synth.json``, else the data folder's name.
    """
    data = load_data(data_dir)
    responses = read_responses(responses_path, data.test, allow_missing=allow_missing)
    scorer = make_reward(reward, weights, box_frame=box_frame if reward == "release" else "original")
    scores, predictions = [], []
    for index, response in responses.items():
        sample = data.test[index]
        answer = _to_original(parse_answer(response), sample, box_frame)
        breakdown = scorer.score(sample, answer)
        scores.append({"index": index, "uid": sample.uid, "domain": sample.domain, "dataset": sample.dataset,
                       **{name: float(getattr(breakdown, name)) for name in COMPONENTS},
                       "iou_scored": breakdown.iou_scored})
        record: dict[str, Any] = {"uid": sample.uid, "domain": sample.domain, "dataset": sample.dataset,
                                  "labels": list(sample.labels), "predicted": list(answer.labels)}
        iou = scorer.iou(sample, answer.boxes)
        if iou is not None:
            record["iou"] = float(iou)
        record["response"] = response
        predictions.append(record)
    name = algo or Path(responses_path).stem
    suite_name = suite or _recorded_suite(Path(data_dir))
    rows = [{"suite": suite_name, "algo": name, "seed": SEED, "domain": r["domain"], "metric": r["metric"],
             "value": float(r["value"]), "n": int(r["n"])} for r in compute_metrics(predictions)]
    floors = floor_predictions(data.train, [data.test[i] for i in responses])  # the answered records
    rows += floor_rows(suite_name, floors)
    return ScoreOutcome(suite_name, name, scores, predictions, rows, len(data.test), floors)


def _recorded_suite(data_dir: Path) -> str:
    """The suite ``rlbench-med data synth`` recorded in ``synth.json``, else the folder's name."""
    try:
        recorded = json.loads((data_dir / "synth.json").read_text("utf-8")).get("suite")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return str(recorded) if recorded else data_dir.resolve().name


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_score(outcome: ScoreOutcome, out_dir: Path) -> tuple[dict[str, Path], Report]:
    """Write scores.jsonl, the predictions, results.csv and the report into ``out_dir``.

    Returns the paths (``scores``, ``predictions``, ``results``) and the report. Refuses an
    ``out_dir`` that already holds a results.csv.
    """
    from rlbench_med.runners.base import run_slug
    from rlbench_med.runners.sweep import ResultsWriter
    from rlbench_med.runners.sweep.results import add_to_predictions_index, write_floor_files

    out_dir = Path(out_dir)
    if (out_dir / "results.csv").exists():
        raise FileExistsError(f"{out_dir / 'results.csv'} exists; give a new --out folder so no result is overwritten")
    paths = {"scores": out_dir / "scores.jsonl",
             "predictions": out_dir / "predictions" / f"{run_slug(outcome.algo, SEED)}.jsonl",
             "results": out_dir / "results.csv"}
    _write_jsonl(paths["scores"], outcome.scores)
    _write_jsonl(paths["predictions"], outcome.predictions)
    add_to_predictions_index(out_dir, {(outcome.algo, SEED): paths["predictions"]})
    write_floor_files(out_dir, outcome.floors)
    ResultsWriter(paths["results"], outcome.rows).flush()
    report = make_report(out_dir, rows=outcome.rows, baseline=outcome.algo,
                         source=f"{paths['results']} (responses scored by rlbench-med score)", scored=True)
    return paths, report
