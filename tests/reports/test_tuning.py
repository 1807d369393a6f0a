"""``rlbench-med tune`` and ``run --tuned`` with the fake runner: the trials, their validation scores, the
choice, the tuned files, the report of both comparisons, and the sweep's guarantees on a tune."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score

from rlbench_med.cli import main
from rlbench_med.reports import stats as stats_module
from rlbench_med.reports.tracking import child_runs, sweep_of_folder
from rlbench_med.reports.tuning import AlgoTuning, TrialScore
from rlbench_med.runners import sweep
from rlbench_med.runners.base import RUNNERS, Job
from rlbench_med.runners.sweep import jobcache
from rlbench_med.runners.sweep.tuning import read_record, tune_plan
from tests.reports.conftest import PLUGIN

FAKE = ["--suite", "fake_suite", "--runner", "fake_cached", "--plugin", PLUGIN]
TUNE = ["tune", *FAKE, "--algos", "drpo,grpo", "--budget", "4", "--space", "lr=0.001:0.1"]


def _fake_module():
    return RUNNERS.get("fake_cached").run.__globals__


def _macro_f1(path: Path) -> float:
    """Overall f1_strict of a single-label predictions file, independently: scikit-learn's macro F1 over the
    classes present in each dataset's truth, averaged over the datasets of a domain, then over domains."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_domain: dict[str, list[float]] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        recs = [r for r in records if r["dataset"] == dataset]
        truth, pred = [r["labels"][0] for r in recs], [r["predicted"][0] for r in recs]
        by_domain.setdefault(recs[0]["domain"], []).append(
            f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0))
    return float(np.mean([np.mean(v) for v in by_domain.values()]))


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every split the fake runner answers and every predictions file the report's statistics read."""
    seen: dict[str, list] = {"splits": [], "read": []}
    fake = _fake_module()
    records = fake["_records"]

    def spy_records(job: Job, split: str = "test"):
        seen["splits"].append(split)
        return records(job, split)

    read = stats_module.read_predictions

    def spy_read(path: Path):
        seen["read"].append(Path(path))
        return read(path)

    monkeypatch.setitem(fake, "_records", spy_records)
    monkeypatch.setattr(stats_module, "read_predictions", spy_read)
    monkeypatch.setattr("rlbench_med.reports.tuning.read_predictions", spy_read)
    return seen


def test_a_tune_scores_every_trial_on_validation_and_never_touches_the_test_split(
        tmp_path: Path, tracked: str, spied: dict[str, list]) -> None:
    assert main([*TUNE, "--out", str(tmp_path / "t")]) == 0
    out = tmp_path / "t"
    assert set(spied["splits"]) == {"validation"}  # no trial answered a test record
    assert spied["read"] and all(p.parent == out / "predictions" / "validation" for p in spied["read"])
    assert not (out / "results.csv").exists() and not (out / "predictions" / "index.json").exists()
    assert not list((out / "predictions").glob("*.jsonl"))  # no test predictions were written
    record = read_record(out)
    assert record.seeds == [1000, 1001] and record.budget == 4 and len(record.trials) == 4
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4 and rows[0]["lr"] == "0.1"  # trial 0 is the shared setting (lr 0.1)
    for row in rows:  # each score is the mean over the seeds of the validation predictions' f1_strict
        label = f"{row['algo']}_trial{row['trial']}_"
        expected = np.mean([_macro_f1(out / "predictions" / "validation" / f"{label}-seed{s}.jsonl")
                            for s in (1000, 1001)])
        assert float(row["score"]) == pytest.approx(expected, abs=1e-12)
    for algo in ("drpo", "grpo"):
        mine = [r for r in rows if r["algo"] == algo]
        best = max(mine, key=lambda r: (float(r["score"]), -int(r["trial"])))
        assert [r["chosen"] for r in mine] == [str(r is best) for r in mine]
        chosen = record.chosen[algo]
        assert chosen["trial"] == int(best["trial"])
        scores = [float(r["score"]) for r in mine]
        assert chosen["range"] == pytest.approx(max(scores) - min(scores))
        assert chosen["sd"] == pytest.approx(statistics.stdev(scores))
    text = (out / "report.md").read_text()
    for expected in ("## Protocol", "Ray Tune's random search", "seed(s) 1000,1001", "## Sensitivity",
                     "No test record was answered while tuning", f"run --tuned {out}"):
        assert expected in text


def test_a_tune_is_tracked_as_one_parent_with_a_child_per_trial_and_seed(tmp_path: Path, tracked: str) -> None:
    assert main([*TUNE, "--budget", "2", "--out", str(tmp_path / "t")]) == 0
    client = MlflowClient(tracked)
    parents = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()],
                                             filter_string="tags.`rlbench.role` = 'tune'")
               if r.data.tags.get("rlbench.out_dir") == str(tmp_path / "t")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {"tune/drpo/score", "tune/grpo/range"} <= set(parents[0].data.metrics)
    children = child_runs(tracked, parents[0])
    assert sorted((c.data.tags["rlbench.algo"], c.data.tags["rlbench.seed"]) for c in children) == [
        (f"{a}[trial{t}]", str(s)) for a in ("drpo", "grpo") for t in (0, 1) for s in (1000, 1001)]
    for child in children:
        assert any(k.startswith("val/") for k in child.data.metrics)
        assert not any(k.startswith("eval") for k in child.data.metrics)  # no test-split key
    # report, compare and leaderboard read sweeps, never a tune
    assert sweep_of_folder(tracked, tmp_path / "t") is None


def test_run_tuned_trains_each_algorithm_at_its_setting_beside_the_shared_one(
        tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUNE, "--out", str(tmp_path / "t")]) == 0
    record = read_record(tmp_path / "t")
    # the tuned file is a --config run accepts: the trial's setting
    grpo = record.chosen["grpo"]
    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake_cached", plugins=(PLUGIN,),
                                               algos=("grpo",), out=tmp_path / "x",
                                               config_file=tmp_path / "t" / grpo["file"]))
    assert plan.config.lr == grpo["setting"].get("lr", 0.1)
    capsys.readouterr()
    assert main(["run", *FAKE, "--tuned", str(tmp_path / "t"), "--out", str(tmp_path / "r")]) == 0
    rows = sweep.read_results(tmp_path / "r" / "results.csv")
    assert sorted({(r["algo"], r["seed"]) for r in rows}) == [
        (label, s) for label in ("drpo", "drpo (tuned)", "grpo", "grpo (tuned)") for s in (0, 1)]
    comparisons = list(csv.DictReader(open(tmp_path / "r" / "comparisons.csv")))
    overall = {(c["algo"], c["baseline"]): float(c["diff"]) for c in comparisons
               if c["domain"] == "overall" and c["metric"] == "f1_strict"}
    means = {a: np.mean([r["value"] for r in rows if r["algo"] == a and r["domain"] == "overall"
                         and r["metric"] == "f1_strict"]) for a in ("drpo", "drpo (tuned)", "grpo", "grpo (tuned)")}
    for pair in (("drpo (tuned)", "grpo (tuned)"), ("drpo", "grpo"), ("grpo (tuned)", "grpo"), ("drpo (tuned)", "drpo")):
        assert overall[pair] == pytest.approx(means[pair[0]] - means[pair[1]])
    text = (tmp_path / "r" / "report.md").read_text()
    section = text[text.index("## Tuned against the shared setting"):text.index("### Comparisons on")]
    assert f"| drpo − grpo | {overall[('drpo (tuned)', 'grpo (tuned)')]:+.3f}" in section
    assert "Every algorithm had the same budget: 4 trial(s)" in section and "`grpo`: 4 trial(s) scored" in section


def test_run_tuned_refuses_a_setting_other_than_the_tunes(tmp_path: Path, tracked: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUNE, "--budget", "2", "--set", "steps=2", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert main(["run", *FAKE, "--tuned", str(tmp_path / "t"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not the setting the tune chose for: the shared config differs (steps 2 in the tune, 3 here)" in err
    assert main(["run", *FAKE, "--tuned", str(tmp_path / "t"), "--set", "steps=2", "--profile", "full",
                 "--out", str(tmp_path / "r")]) == 2
    assert "profile quick in the tune, full here" in capsys.readouterr().err
    assert main(["run", *FAKE, "--tuned", str(tmp_path / "t"), "--set", "steps=2", "--algos", "rloo",
                 "--out", str(tmp_path / "r")]) == 2
    assert "rloo has no tuned setting (tuned: drpo, grpo)" in capsys.readouterr().err
    # the tuning seeds trained again are said in the plan
    assert main(["run", *FAKE, "--tuned", str(tmp_path / "t"), "--set", "steps=2", "--seeds", "1000",
                 "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "seed(s) 1000 also trained the tune's trials" in capsys.readouterr().out


def test_an_algorithm_whose_trials_all_failed_gets_no_tuned_setting(tmp_path: Path, tracked: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUNE, "--budget", "2", "--set", "fail_estimator=drpo", "--out", str(tmp_path / "t")]) == 1
    out = tmp_path / "t"
    record = read_record(out)
    assert list(record.chosen) == ["grpo"] and record.scores["drpo"] == {"drpo[trial0]": None, "drpo[trial1]": None}
    assert (out / "tuned" / "grpo.yaml").exists() and not (out / "tuned" / "drpo.yaml").exists()
    failed = list(csv.DictReader(open(out / "failed.csv")))
    assert sorted((r["algo"], r["seed"]) for r in failed) == [
        (f"drpo[trial{t}]", str(s)) for t in (0, 1) for s in (1000, 1001)]
    assert "## Failed trials" in (out / "report.md").read_text()
    assert "drpo: no trial scored" in capsys.readouterr().out


def test_an_interrupted_tune_resumes_with_its_finished_trials_and_the_same_trials(tmp_path: Path) -> None:
    request = sweep.SweepRequest(suite="fake_suite", runner="fake_cached", plugins=(PLUGIN,), algos=("grpo",),
                                 out=tmp_path / "t", seeds=(1000,))
    tune = tune_plan(request, budget=3, space="lr", search_seed=0)
    plan = tune.plan
    real = plan.runner.run

    def run(job, tracker, resume):
        if job.algo == "grpo[trial2]":
            raise KeyboardInterrupt
        return real(job, tracker, resume)

    plan.runner = plan.runner.__class__(**{**plan.runner.__dict__, "run": run})
    outcome = sweep.run_sweep(plan)
    assert outcome.interrupted and not (tmp_path / "t" / "tune.json").exists()
    again = tune_plan(sweep.SweepRequest(**{**request.__dict__, "resume": True}), budget=3, space="lr", search_seed=0)
    assert [(j.algo, j.seed) for j in again.plan.pending] == [("grpo[trial2]", 1000)]
    with pytest.raises(sweep.SweepError, match="the variants settings differ"):
        tune_plan(sweep.SweepRequest(**{**request.__dict__, "resume": True}), budget=3, space="lr", search_seed=1)


def test_a_trial_job_is_keyed_apart_from_the_same_job_scoring_the_test_split(tmp_path: Path) -> None:
    plan = sweep.build_plan(sweep.SweepRequest(suite="fake_suite", runner="fake_cached", plugins=(PLUGIN,),
                                               algos=("grpo",), seeds=(0,), out=tmp_path / "o"))
    job = plan.jobs[0]
    trial = Job(**{**job.__dict__, "score_test": False})
    assert jobcache.job_key(plan, job).digest != jobcache.job_key(plan, trial).digest


@pytest.mark.parametrize(("argv", "message"), [
    ([*TUNE, "--space", "steps"], "--space 'steps': steps is not tunable"),
    (["tune", "--suite", "fake_variants", "--runner", "fake_cached", "--plugin", PLUGIN, "--budget", "2",
      "--space", "lr"], "suite fake_variants runs every algorithm in variants"),
    (["tune", *FAKE[:2], "--runner", "fake_plain", "--plugin", PLUGIN, "--budget", "2", "--space", "lr"],
     "runner fake_plain cannot leave the test split out of a job"),
])
def test_a_bad_tune_request_exits_2_in_one_line(argv: list[str], message: str, tmp_path: Path, tracked: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    plain = RUNNERS.get("fake")
    RUNNERS.register("fake_plain", dataclasses.replace(plain, name="fake_plain", validation_only=False,
                                                       tunable=frozenset({"lr"})))
    assert main([*argv, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "t").exists()


def test_a_dry_run_lists_the_trials_and_writes_nothing(tmp_path: Path, tracked: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TUNE, "--dry-run", "--out", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "rlbench-med tune: 2 algorithm(s) x 4 trial(s) x 2 seed(s)" in out and "trial0: the shared setting" in out
    assert "rlbench-med tune plan" in out and "grpo[trial3] seed 1001 -> estimator grpo" in out
    assert not (tmp_path / "t").exists()


def test_the_best_trial_wins_and_a_tie_goes_to_the_shared_setting() -> None:
    trials = [TrialScore(0, "g[trial0]", {}, 0.5), TrialScore(1, "g[trial1]", {}, 0.7),
              TrialScore(2, "g[trial2]", {}, None), TrialScore(3, "g[trial3]", {}, 0.7)]
    tuning = AlgoTuning("g", trials)
    assert tuning.best.trial == 1 and tuning.worst.trial == 0 and [t.trial for t in tuning.scored] == [0, 1, 3]
    assert tuning.range == pytest.approx(0.2) and tuning.sd == pytest.approx(statistics.stdev([0.5, 0.7, 0.7]))
    tie = AlgoTuning("g", [TrialScore(0, "a", {}, 0.7), TrialScore(1, "b", {}, 0.7)])
    assert tie.best.trial == 0
    assert AlgoTuning("g", [TrialScore(0, "a", {}, None)]).best is None


def test_a_tuned_run_is_compared_with_its_shared_run_whichever_finished_first() -> None:
    from rlbench_med.reports.report import comparison_pairs
    from rlbench_med.reports.results import build_table

    def rows(algo: str) -> list[dict]:
        return [{"suite": "s", "algo": algo, "seed": 0, "domain": "overall", "metric": "f1_strict", "value": 0.5, "n": 9}]

    table = build_table([*rows("grpo (tuned)"), *rows("drpo (tuned)"), *rows("drpo"), *rows("grpo")])
    pairs = {(a, b) for a, b, _ in comparison_pairs(table, "grpo")}
    assert pairs == {("drpo (tuned)", "grpo (tuned)"), ("drpo", "grpo"), ("grpo (tuned)", "grpo"),
                     ("drpo (tuned)", "drpo")}


@pytest.mark.slow
def test_a_tune_on_the_ray_executor_scores_and_chooses_as_the_local_one(tmp_path: Path) -> None:
    import ray  # a required dependency: missing is a failure, not a skip

    from rlbench_med.reports.tuning import finish_tune

    def tuned(executor: str) -> dict:
        request = sweep.SweepRequest(suite="fake_suite", runner="fake", executor=executor, ray_num_cpus=2,
                                     algos=("drpo", "grpo"), out=tmp_path / executor, plugins=(PLUGIN,))
        tune = tune_plan(request, budget=3, space="lr", search_seed=0)
        outcome = sweep.run_sweep(tune.plan, report=lambda _: finish_tune(tune.plan.out_dir, tune.record)[1])
        assert outcome.ok and len(outcome.results) == 2 * 3 * 2
        return {"scores": tune.record.scores, "chosen": tune.record.chosen}

    try:
        local, remote = tuned("local"), tuned("ray")
    finally:
        ray.shutdown()
    assert remote == local and set(local["chosen"]) == {"drpo", "grpo"}


def test_compare_keeps_a_tuned_runs_label_apart_from_the_shared_one(tmp_path: Path, tracked: str) -> None:
    assert main([*TUNE, "--budget", "2", "--out", str(tmp_path / "t")]) == 0
    assert main(["run", *FAKE, "--tuned", str(tmp_path / "t"), "--out", str(tmp_path / "a")]) == 0
    assert main(["run", *FAKE, "--set", "tag=other", "--out", str(tmp_path / "b")]) == 0
    assert main(["compare", "a=" + str(tmp_path / "a"), "b=" + str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 0
    rows = sweep.read_results(tmp_path / "c" / "results.csv")
    assert {r["algo"] for r in rows if not r["algo"].startswith(("floor", "base"))} == {
        "drpo (a)", "drpo (tuned, a)", "grpo (a)", "grpo (tuned, a)", "drpo (b)", "grpo (b)"}
