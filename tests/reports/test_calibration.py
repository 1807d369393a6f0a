"""Calibration: references against the controls on the validation split, and the line every report shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlbench_med.cli import main
from rlbench_med.reports.calibration import CONTROLS, Calibration, CalibrationError, calibrate
from rlbench_med.runners import sweep
from rlbench_med.suites.metrics import compute_metrics
from tests.reports.conftest import PLUGIN
from tests.reports.test_sweep import fake_synth  # noqa: F401 (fixture)


def _sweep(tmp_path: Path, algos: tuple[str, ...], seeds: tuple[int, ...] = (0, 1, 2, 3)) -> Path:
    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake", out=tmp_path / "cal",
                                               plugins=(PLUGIN,), seeds=seeds, algos=algos))
    sweep.run_sweep(plan)
    return plan.out_dir


def _validation_score(folder: Path, algo: str, seed: int) -> float:
    slug = algo.replace(":", "_")
    records = [json.loads(x) for x in (folder / "predictions" / "validation" / f"{slug}-seed{seed}.jsonl").open()]
    return next(r["value"] for r in compute_metrics(records) if r["domain"] == "overall" and r["metric"] == "f1_strict")


def test_references_above_zero_and_negate_below_can_rank(tmp_path: Path) -> None:
    # the fake policies' qualities (fake_plugin.QUALITY): drpo 0.85, grpo 0.6, zero 0.3, negate 0.05
    folder = _sweep(tmp_path, ("grpo", "drpo", *CONTROLS))
    found = calibrate(folder, "f1_strict", ("grpo", "drpo"), n_boot=400)
    tests = {(q.algo, q.baseline): q for q in found.tests}
    assert set(tests) == {("grpo", "control:zero"), ("drpo", "control:zero"), ("control:zero", "control:negate")}
    assert found.can_rank and all(q.significant for q in tests.values())
    assert found.verdict.startswith("this profile can rank estimators whose effects on f1_strict exceed ")
    # the differences are the validation split's, computed from the prediction files independently
    for (a, b), q in tests.items():
        expected = np.mean([_validation_score(folder, a, s) - _validation_score(folder, b, s) for s in range(4)])
        assert q.diff == pytest.approx(expected, abs=1e-9) and q.low > 0
    # the sensitivity: the MDE of the references' own comparison, an exploratory interval
    between = next(q for q in found.questions if (q.algo, q.baseline) == ("grpo", "drpo"))
    assert between.family == "exploratory" and found.detectable == pytest.approx(between.mde)
    assert f"exceed {found.detectable:.3f}" in found.verdict
    assert found.scores["grpo"][0] == pytest.approx(np.mean([_validation_score(folder, "grpo", s) for s in range(4)]))
    assert Calibration.from_json(json.loads(json.dumps(found.to_json()))) == found


def test_a_reference_no_better_than_zero_cannot_rank(tmp_path: Path) -> None:
    # fake_const predicts as well as control:zero (quality 0.3): no signal to find
    folder = _sweep(tmp_path, ("fake_const", "drpo", *CONTROLS))
    found = calibrate(folder, "f1_strict", ("fake_const", "drpo"), n_boot=400)
    assert not found.can_rank
    assert found.verdict.startswith("this profile cannot rank estimators on f1_strict with 4 seeds (fake_const − "
                                    "control:zero: ")
    assert "drpo − control:zero" not in found.verdict  # only the failed tests are named


def test_a_folder_without_the_controls_is_refused(tmp_path: Path) -> None:
    folder = _sweep(tmp_path, ("grpo", "rloo"), seeds=(0,))
    with pytest.raises(CalibrationError, match="no results of control:zero, control:shuffle, control:negate"):
        calibrate(folder, "f1_strict")


def _argv(out: str, *extra: str) -> list[str]:
    return ["--suite", "climb_vision", "--runner", "fake_cached", "--plugin", PLUGIN, "--seeds", "0-3",
            "--out", out, *extra]


def test_calibrate_stores_its_verdict_and_reports_of_the_same_settings_show_it(
    tmp_path: Path, fake_synth: list[tuple], capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:
    assert main(["calibrate", *_argv("c"), "--reference", "grpo,drpo"]) == 0  # far above control:zero
    out = capsys.readouterr().out
    assert "This profile can rank estimators whose effects on f1_strict exceed" in out
    doc = json.loads((tmp_path / "c" / "calibration.json").read_text())
    assert doc["can_rank"] and doc["profile"] == "quick" and (tmp_path / "c" / "calibration.md").is_file()
    key = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["calibration_key"]
    assert json.loads((tmp_path / "cache" / "calibration" / f"{key}.json").read_text()) == doc
    # a run of the same suite, data, config and code shows it in one line; another config says none exists
    assert main(["run", *_argv("same"), "--algos", "drpo,grpo"]) == 0
    report = (tmp_path / "same" / "report.md").read_text()
    line = Calibration.from_json(doc).line()
    assert line in report and line in capsys.readouterr().out
    assert main(["run", *_argv("other"), "--algos", "drpo,grpo", "--set", "lr=0.2"]) == 0
    assert "Calibration: none for this suite's data, config and code" in (tmp_path / "other" / "report.md").read_text()
    # `report --results` finds it through the folder's config.yaml
    assert main(["report", "--results", str(tmp_path / "same"), "--out", str(tmp_path / "again")]) == 0
    assert line in (tmp_path / "again" / "report.md").read_text()


def test_calibrate_refuses_a_control_as_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", *_argv("c"), "--reference", "grpo,control:zero"]) == 2
    assert "the controls are trained anyway" in capsys.readouterr().err


def test_run_scores_leave_out_a_label_without_the_metric() -> None:
    from rlbench_med.reports.calibration import run_scores

    class Points:  # two grpo seeds with iou, a label floor scored without boxes
        values = {("grpo", 0): {("overall", "iou"): 0.2}, ("grpo", 1): {("overall", "iou"): 0.4},
                  ("floor:majority", 0): {("overall", "f1"): 0.3}}

        def __contains__(self, key: tuple[str, int]) -> bool:
            return key in self.values

        def point(self, key: tuple[str, int]) -> dict:
            return self.values[key]

    scores = run_scores(Points(), {"grpo": [0, 1, 2], "floor:majority": [0]}, "iou")
    assert list(scores) == ["grpo"]
    assert scores["grpo"] == pytest.approx([0.3, float(np.std([0.2, 0.4], ddof=1)), 2.0])


def test_input_ablations_of_a_sweep_are_left_out(tmp_path: Path) -> None:
    # mimic_fusion evaluates its runs on fewer inputs too (grpo@text): those answer the test split only
    import csv

    folder = _sweep(tmp_path, ("grpo", "drpo", *CONTROLS))
    with (folder / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (folder / "results.csv").open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writerows({**r, "algo": r["algo"] + "@text"} for r in rows if r["algo"] == "grpo")
    found = calibrate(folder, "f1_strict", ("grpo", "drpo"), n_boot=200)
    assert found.can_rank and "grpo@text" not in found.scores


def test_calibration_lists_the_classes_a_reference_or_control_gave_up_on_validation(tmp_path: Path) -> None:
    from collections import Counter

    from rlbench_med.runners.sweep import ResultsWriter, read_results

    folder = _sweep(tmp_path, ("grpo", "drpo", *CONTROLS))
    validation = folder / "predictions" / "validation"
    # a base that answers every validation record right: recall 1 for every class
    truth = [{**r, "predicted": r["labels"]} for r in map(json.loads, (validation / "control_zero-seed0.jsonl").open())]
    (validation / "base-seed0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth))
    rows = read_results(folder / "results.csv")
    rows += [{"suite": "fake_suite", "algo": "base", "seed": 0, **r} for r in compute_metrics(truth)]
    ResultsWriter(folder / "results.csv", rows).flush()
    found = calibrate(folder, "f1_strict", ("grpo", "drpo"), n_boot=100)

    support = Counter((r["domain"], r["labels"][0]) for r in truth)
    expected: dict[tuple[str, str, str], list[int]] = {}
    for algo in ("grpo", "drpo", *CONTROLS):  # a loop over the files: recall at most 0.5 x base's 1.0
        for seed in range(4):
            records = [json.loads(x) for x in (validation / f"{algo.replace(':', '_')}-seed{seed}.jsonl").open()]
            hits = Counter((r["domain"], r["labels"][0]) for r in records if r["predicted"] == r["labels"])
            for (domain, label), n in support.items():
                if n >= 20 and hits[(domain, label)] / n <= 0.5:
                    expected.setdefault((algo, domain, label), []).append(seed)
    assert any(algo == "control:negate" for algo, _, _ in expected)  # quality 0.05: recall about 0.37
    assert len(found.given_up) == len(expected)
    for (algo, domain, label), seeds in expected.items():
        [line] = [x for x in found.given_up if x.startswith(f'`{algo}`: {domain} "{label}" ')]
        assert line.endswith(f"; {len(seeds)} of 4 seeds") and all(f"(seed {s})" in line for s in seeds)
    assert "### Classes given up" in found.markdown() and found.given_up[0] in found.markdown()
