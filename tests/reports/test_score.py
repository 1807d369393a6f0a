"""``rlbench-med score``: the battery's totals through the CLI, id / index matching and bad lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlbench_med.cli import main
from rlbench_med.reports.score import score_responses
from tests.suites import release_battery as battery


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _battery_folder(root: Path, cases: list[battery.Case]) -> Path:
    """``root`` with the battery's media, its classes and one test record per case."""
    battery.write_media(root)
    (root / "classes.json").write_text(battery.classes_json())
    _write_jsonl(root / "test.jsonl", [battery.record(c) for c in cases])
    if not (root / "train.jsonl").exists():
        _write_jsonl(root / "train.jsonl", [battery.record(cases[0])])
    return root


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_reproduces_the_battery_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    assert main(["data", "synth", "--suite", "climb_vision", "--out", str(data)]) == 0
    _battery_folder(data, battery.CASES)  # the generated folder, its test split replaced by the battery
    responses = _write_jsonl(tmp_path / "responses.jsonl", [{"id": c.name, "response": c.response} for c in battery.CASES])
    out = tmp_path / "scored"
    assert main(["score", "--data", str(data), "--responses", str(responses), "--reward", "release",
                 "--out", str(out)]) == 0
    assert f"scored {len(battery.CASES)} of {len(battery.CASES)} test records with reward=release" in capsys.readouterr().out

    scores = {s["uid"]: s for s in _read_jsonl(out / "scores.jsonl")}
    assert set(scores) == {c.name for c in battery.CASES}
    for case in battery.CASES:
        got = scores[case.name]
        expected = {"accuracy": case.f1, "iou": case.iou, "format": case.format, "length": case.length,
                    "total": case.total}
        assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-9), case.name

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the responses beside the floors on the same records (box floors where boxes are scored)
    assert {r["algo"] for r in rows} == {"responses", "floor:all", "floor:majority", "floor:random",
                                         "floor:box_image", "floor:box_mean", "floor:box_none"}
    assert {r["suite"] for r in rows} == {"climb_vision"}
    rows = [r for r in rows if r["algo"] == "responses"]
    metrics = {(r["domain"], r["metric"]): int(r["n"]) for r in rows}
    assert {m for d, m in metrics if d == "overall"} >= {"acc", "f1", "iou", "acc_release"}
    assert metrics[("cxr", "acc_release")] == len(battery.CASES)
    predictions = _read_jsonl(out / "predictions" / "responses-seed0.jsonl")
    assert [p["response"] for p in predictions] == [c.response for c in battery.CASES]
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    # responses of a model trained elsewhere: no training seeds, nothing "trained", no learning verdict
    report = (out / "report.md").read_text()
    for wrong in ("training seed", "Trained:", "Did each algorithm learn", "no base in this report"):
        assert wrong not in report, wrong
    assert "Scored responses: responses" in report and "Do the scored responses beat the floors?" in report


def test_ids_and_indexes_match_the_same_records(tmp_path: Path) -> None:
    cases = battery.CASES[:6]
    data = _battery_folder(tmp_path / "data", cases)
    by_id = _write_jsonl(tmp_path / "by_id.jsonl", [{"id": c.name, "response": c.response} for c in reversed(cases)])
    by_index = _write_jsonl(tmp_path / "by_index.jsonl",
                            [{"index": i, "response": c.response} for i, c in enumerate(cases)])
    a = score_responses(data, by_id, reward="release")
    b = score_responses(data, by_index, reward="release")
    assert a.scores == b.scores
    assert [s["total"] for s in a.scores] == pytest.approx([c.total for c in cases])
    assert a.algo == "by_id" and a.suite == "data"


def test_bad_lines_are_reported_as_file_line_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = battery.CASES[:3]
    data = _battery_folder(tmp_path / "data", cases)
    lines = [
        "{not json",
        "[1, 2]",
        json.dumps({"id": "nope", "response": "x"}),
        json.dumps({"index": 99, "response": "x"}),
        json.dumps({"index": 0}),
        json.dumps({"response": "x"}),
        json.dumps({"id": cases[0].name, "index": 1, "response": "x"}),
        "",
        json.dumps({"index": 0, "response": "a"}),
        json.dumps({"id": cases[0].name, "response": "b"}),
    ]
    responses = tmp_path / "bad.jsonl"
    responses.write_text("\n".join(lines) + "\n")
    assert main(["score", "--data", str(data), "--responses", str(responses), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    f = str(responses)
    expected = [
        f"{f}:1: json: not valid JSON",
        f"{f}:2: record: expected a JSON object",
        f"{f}:3: id: no test record has id 'nope'",
        f"{f}:4: index: 99 is not a record position 0..2",
        f"{f}:5: response: missing",
        f"{f}:6: id: missing",
        f"{f}:7: index: names test record 1 but id names test record 0",
        f"{f}:10: id: test record index 0 (id {cases[0].name!r}) already has a response on line 9",
        f"{f}:0: records: 2 of 3 test records have no response (first: index 1 (id {cases[1].name!r}))",
    ]
    assert len(err) == len(expected) + 1
    for line, start in zip(err, expected):
        assert line.startswith(start), (line, start)
    assert err[-1] == f"rlbench-med: error: {len(expected)} problem(s) in {f}"
    assert not (tmp_path / "o").exists()


def test_a_missing_response_names_the_records_index_and_line_each_as_what_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = battery.CASES[:3]
    data = _battery_folder(tmp_path / "data", cases)
    test = data / "test.jsonl"
    records = [json.loads(line) for line in test.read_text().splitlines()]
    test.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "id"}) + "\n" for r in records))
    responses = _write_jsonl(tmp_path / "r.jsonl", [{"index": 0, "response": cases[0].response}])
    assert main(["score", "--data", str(data), "--responses", str(responses), "--out", str(tmp_path / "o")]) == 2
    assert ("2 of 3 test records have no response (first: index 1 (line 2 of the test file, which gives no id))"
            in capsys.readouterr().err)


def test_allow_missing_scores_the_answered_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = battery.CASES[:4]
    data = _battery_folder(tmp_path / "data", cases)
    responses = _write_jsonl(tmp_path / "r.jsonl", [{"index": 2, "response": cases[2].response}])
    out = tmp_path / "o"
    args = ["score", "--data", str(data), "--responses", str(responses), "--out", str(out)]
    assert main(args) == 2 and "3 of 4 test records have no response" in capsys.readouterr().err
    assert main([*args, "--allow-missing", "--algo", "model-x"]) == 0
    assert "scored 1 of 4 test records with reward=paper" in capsys.readouterr().out
    assert [s["uid"] for s in _read_jsonl(out / "scores.jsonl")] == [cases[2].name]
    assert (out / "predictions" / "model-x-seed0.jsonl").is_file()
    # An existing results.csv is never overwritten.
    assert main([*args, "--allow-missing"]) == 2
    assert "give a new --out folder" in capsys.readouterr().err


def test_release_frame_boxes_are_converted_for_the_paper_reward_and_the_iou_metric(tmp_path: Path) -> None:
    # small_mask: 64 x 64 image, mask rows 2..4 x cols 5..7. A release-frame box [20, 8, 32, 20] is
    # [5, 2, 8, 5] in original pixels: this project's IoU (pixel centres inside [x1, x2)) covers cols
    # 5..7 x rows 2..4 = the mask -> 1.
    case = battery.Case("frame_conversion", "small_mask", battery.fenced(battery.jbox("[20, 8, 32, 20]")),
                        0, 0, 0, 0, 0)
    data = _battery_folder(tmp_path / "data", [case])
    responses = _write_jsonl(tmp_path / "r.jsonl", [{"index": 0, "response": "\\boxed{Edema}\n" + case.response}])
    release_frame = score_responses(data, responses, box_frame="release")
    assert release_frame.predictions[0]["iou"] == pytest.approx(1.0)
    assert release_frame.scores[0]["iou"] == pytest.approx(1.0)  # the paper reward's IoU (best box)
    original = score_responses(data, responses, box_frame="original")
    assert original.predictions[0]["iou"] == 0.0  # [20, 8, 32, 20] on a 64 x 64 mask misses it


def test_bad_reward_settings_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for extra, message in (
        (["--reward", "grader"], "--reward: 'grader' is not a reward function"),
        (["--reward-weights", "release"], "use reward=release"),
        (["--box-frame", "pixels"], "--box-frame: 'pixels' is not one of original, release"),
    ):
        assert main(["score", "--data", str(tmp_path), "--responses", str(tmp_path / "r.jsonl"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
