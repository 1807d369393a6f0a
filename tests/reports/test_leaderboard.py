"""`rlbench-med leaderboard`: algorithms x suites, means with intervals, floors, ranks; every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from rlbench_med.cli import main
from rlbench_med.reports.leaderboard import across_tables, board_table, make_board
from rlbench_med.reports.stats import EvaluationSet, estimate, read_predictions
from rlbench_med.reports.sweeps import load_sweeps
from rlbench_med.runners import sweep
from rlbench_med.suites import compute_metrics
from rlbench_med.suites.floors import FLOOR_ALL, FLOOR_RANDOM, floor_rows, random_draws
from tests.reports.conftest import PLUGIN
from tests.reports.test_stats import CLASSES, make_records

DATASETS = (("cxr", "MIMIC-CXR"), ("ct", "X"))


def write_folder(out: Path, grpo_quality: float = 0.6) -> None:
    """A climb_vision-like output folder: drpo, grpo, a constant answerer, base and the floors."""
    rows = []
    (out / "predictions").mkdir(parents=True)

    def add(algo: str, seed: int, records: list[dict]) -> None:
        (out / "predictions" / f"{algo.replace(':', '_')}-seed{seed}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records))
        rows.extend({"suite": "climb_vision", "algo": algo, "seed": seed, **r} for r in compute_metrics(records))

    for seed in range(3):
        add("drpo", seed, make_records(10 + seed, 0.9, n=30, datasets=DATASETS))
        add("grpo", seed, make_records(20 + seed, grpo_quality, n=30, datasets=DATASETS))
        add("const", seed, [{**r, "predicted": ["x"]} for r in make_records(0, 1.0, n=30, datasets=DATASETS)])
    add("base", 0, make_records(5, 0.5, n=30, datasets=DATASETS))
    every = [{**r, "predicted": list(CLASSES)} for r in make_records(0, 1.0, n=30, datasets=DATASETS)]
    add(FLOOR_ALL, 0, every)
    rows = [r for r in rows if r["algo"] != FLOOR_ALL]
    rows += floor_rows("climb_vision", {FLOOR_ALL: [every], FLOOR_RANDOM: random_draws(every)})
    sweep.ResultsWriter(out / "results.csv", rows).flush()


def overall(folder: Path, algo: str, metric: str = "f1_strict") -> list[float]:
    return [r["value"] for r in sorted(sweep.read_results(folder / "results.csv"), key=lambda r: r["seed"])
            if r["algo"] == algo and r["domain"] == "overall" and r["metric"] == metric]


@pytest.fixture
def sweeps(tmp_path: Path) -> tuple[Path, Path]:
    write_folder(tmp_path / "vision")
    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake", out=tmp_path / "fake",
                                               plugins=(PLUGIN,), seeds=(0, 1), algos=("grpo", "drpo", "rloo")))
    sweep.run_sweep(plan)
    return tmp_path / "vision", tmp_path / "fake"


def test_scores_are_seed_means_with_the_comparisons_intervals(tmp_path: Path, sweeps) -> None:
    vision, fake = sweeps
    board = make_board(load_sweeps([str(vision), str(fake)], "sqlite:///none.db", tmp_path / "s"), tmp_path / "s",
                       n_boot=400)
    assert [(c.suite, c.metric) for c in board.columns] == [("climb_vision", "f1_strict"), ("fake_suite", "f1_strict")]
    for col, folder in zip(board.columns, (vision, fake)):
        runs = {(a, s): read_predictions(folder / "predictions" / f"{a}-seed{s}.jsonl")
                for a in ("drpo", "grpo") for s in range(len(overall(folder, a)))}
        evalset = EvaluationSet.from_runs(runs, n_boot=400)
        for algo in ("drpo", "grpo"):
            values = np.array(overall(folder, algo))
            s = col.scores[algo]
            assert s.mean == pytest.approx(values.mean()) and s.n_seeds == len(values)
            assert col.runs[algo] == pytest.approx(list(values))
            # the interval of a score is the comparisons' (seed spread + shared evaluation noise), clipped to [0, 1]
            boot = np.stack([evalset.replicates((algo, k))[("overall", "f1_strict")] for k in range(len(values))])
            low, high = estimate(values, boot).interval(0.05)
            assert (s.low, s.high) == pytest.approx((max(low, 0.0), min(high, 1.0)), abs=0.02)
            assert 0 <= s.low <= s.mean <= s.high <= 1
    vis = board.columns[0].scores
    assert vis[FLOOR_RANDOM].mean == pytest.approx(overall(vision, FLOOR_RANDOM)[0])  # the mean of the draws
    assert vis["base"].n_seeds == 1 and vis["base"].low <= vis["base"].mean <= vis["base"].high
    # ranks: drpo best in both suites, then grpo (2nd and 2nd), rloo (fake only), const (vision only)
    assert board.algos()[:2] == ["drpo", "grpo"] and board.algos()[-2:] == ["floor:all", "floor:random"]
    table = board_table(board)
    by = {r[0].text: r for r in table.rows}
    # drpo is significantly better than every other trained algorithm of the vision suite: bold
    assert board.columns[0].best == "drpo" and by["drpo"][1].best and not by["grpo"][1].best
    assert by["const"][1].mark and "†" in by["const"][1].text  # floor:random scores higher
    assert by["const"][2].text == "–" and by["rloo"][1].text == "–"
    assert not by["drpo"][1].mark


def test_bold_needs_a_significant_best_and_base_marks_the_algorithms_it_beats(tmp_path: Path) -> None:
    vision = tmp_path / "vision"
    write_folder(vision, grpo_quality=0.9)  # grpo as good as drpo: no significant best
    board = make_board(load_sweeps([str(vision)], "sqlite:///none.db", tmp_path / "s"), tmp_path / "s", n_boot=200)
    column = board.columns[0]
    assert column.best is None
    by = {r[0].text: r for r in board_table(board).rows}
    assert not any(r[1].best for r in by.values())
    assert column.scores["base"].mean > column.scores["const"].mean and by["const"][1].text.endswith("‡")
    assert not by["drpo"][1].text.endswith("‡")


def test_across_suites_iqm_and_probability_of_improvement(tmp_path: Path, sweeps) -> None:
    vision, fake = sweeps
    board = make_board(load_sweeps([str(vision), str(fake)], "sqlite:///none.db", tmp_path / "s"), tmp_path / "s",
                       n_boot=200)
    iqm, poi = across_tables(board, n_boot=500)
    rows = {r[0].text: r for r in iqm.rows}
    runs = overall(vision, "drpo") + overall(fake, "drpo")
    assert dict(rows["drpo"][1].numbers)[""] == pytest.approx(sps.trim_mean(runs, 0.25))
    assert rows["rloo"][3].text == "climb_vision"  # the suites it did not run
    # P(drpo > grpo): on each suite the share of (drpo run, grpo run) pairs drpo wins, averaged over suites
    expected = np.mean([np.mean([x > y for x in overall(f, "drpo") for y in overall(f, "grpo")]) for f in (vision, fake)])
    header = poi.header
    drpo = next(r for r in poi.rows if r[0].text == "drpo")
    assert dict(drpo[header.index("grpo")].numbers)[""] == pytest.approx(expected)


def test_a_floor_scored_on_another_metric_is_not_shown_as_zero(tmp_path: Path) -> None:
    """A box floor has results only on iou: it has no f1_strict cell, so it is not on a f1_strict board."""
    vision = tmp_path / "vision"
    write_folder(vision)
    records = [{**r, "predicted": []} for r in make_records(0, 1.0, n=30, datasets=DATASETS)]
    (vision / "predictions" / "floor_box_none-seed0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = sweep.read_results(vision / "results.csv")
    rows += [{"suite": "climb_vision", "algo": "floor:box_none", "seed": 0, "domain": d, "metric": "iou",
              "value": 0.0, "n": 30} for d in ("cxr", "ct", "overall")]
    sweep.ResultsWriter(vision / "results.csv", rows).flush()
    board = make_board(load_sweeps([str(vision)], "sqlite:///none.db", tmp_path / "s"), tmp_path / "s", n_boot=50)
    assert board.columns[0].metric == "f1_strict"
    assert "floor:box_none" not in board.columns[0].scores and "floor:box_none" not in board.algos()
    assert {"drpo", "base", FLOOR_ALL, FLOOR_RANDOM} <= set(board.columns[0].scores)


def test_cli_leaderboard_fits_80_columns_and_writes_every_format(tmp_path: Path, sweeps, monkeypatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    vision, fake = sweeps
    assert main(["leaderboard", str(vision), str(fake)]) == 0
    out = capsys.readouterr().out
    table_lines = [line for line in out.splitlines() if line[:1] in "┌│├└"]
    assert table_lines and max(len(line) for line in table_lines) <= 80 and "…" not in out
    assert "climb_vision f1_strict (n=60)" in out
    assert main(["leaderboard", str(vision), str(fake), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    head = rows[0]
    col = head.index("climb_vision f1_strict (n=60)")
    assert head[col + 1: col + 4] == ["climb_vision f1_strict (n=60) ci_low", "climb_vision f1_strict (n=60) ci_high",
                                      "climb_vision f1_strict (n=60) seeds"]
    drpo = next(r for r in rows if r[0] == "drpo")
    assert float(drpo[col]) == pytest.approx(np.mean(overall(vision, "drpo"))) and float(drpo[col + 3]) == 3
    assert main(["leaderboard", str(vision), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert "\\begin{tabular}{lr}" in tex and "climb\\_vision f1\\_strict (n=60)" in tex
    assert main(["leaderboard", str(vision), "--format", "md"]) == 0
    assert "| Algorithm | climb_vision f1_strict (n=60) |" in capsys.readouterr().out
    figure = tmp_path / "profiles.png"
    assert main(["leaderboard", str(vision), str(fake), "--format", "md", "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "interquartile mean over suites and seeds" in out and "probability of improvement" in out
    from PIL import Image

    with Image.open(figure) as im:  # the performance profiles, within a 1400-px page
        assert im.size[0] <= 1400


def test_leaderboard_of_the_store_takes_each_experiments_latest_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from rlbench_med.reports.tracking import MLflowSweepTracking

    tracked = f"sqlite:///{tmp_path / 'own.db'}"  # a store of its own: the session's holds other tests' sweeps
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked)
    for out, algos in (("f1", ("drpo",)), ("f2", ("grpo", "rloo"))):
        plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake", out=tmp_path / out,
                                                   plugins=(PLUGIN,), seeds=(0,), algos=algos))
        sweep.run_sweep(plan, MLflowSweepTracking(tracked))
    assert main(["leaderboard", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert [r[0] for r in rows[1:]] == ["grpo", "rloo"]  # the latest sweep of rlbench-med/fake_suite
    assert rows[0][1] == "fake_suite f1_strict (n=90)"
    assert "fake_suite: f2 = MLflow run" in captured.err
