"""The experiment file: read whole by `run --config`, overridden by the flags, written back by every run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from rlbench_med.cli import main
from rlbench_med.runners import sweep
from rlbench_med.runners.sweep.experiment import EXPERIMENT_FILE, merge_request, read_experiment
from rlbench_med.runners.sweep.jobcache import job_key
from rlbench_med.typed_config import ConfigError
from tests.reports.conftest import PLUGIN

FULL = """\
suite: fake_suite
profile: full
algos: [drpo, grpo]
seeds: "0-1"
runner: fake_cached
plugins: [PLUGIN]
settings:
  lr: 0.5
  tag: from_file
algo_settings:
  drpo: {lr: 0.25}
report:
  primary_metric: exact
  baseline: drpo
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("PLUGIN", os.path.relpath(PLUGIN, tmp_path)))  # relative to the file's folder
    return path


def test_an_experiment_file_states_the_whole_sweep(tmp_path: Path) -> None:
    exp = read_experiment(write(tmp_path, FULL))
    assert (exp.suite, exp.profile, exp.algos, exp.seeds, exp.runner) == ("fake_suite", "full", ("drpo", "grpo"), (0, 1),
                                                                          "fake_cached")
    assert exp.plugins == (str(Path(PLUGIN).resolve()),)
    assert exp.settings == {"lr": 0.5, "tag": "from_file", "primary_metric": "exact"}
    assert exp.baseline == "drpo" and exp.algo_settings == {"drpo": {"lr": 0.25}}
    plan = sweep.build_plan(merge_request(exp, out=tmp_path / "out"))
    # profile (steps 6, eval_every 3) < file settings < algo_settings
    assert {(j.algo, j.seed): (j.config.steps, j.config.eval_every, j.config.lr, j.config.tag) for j in plan.jobs} == {
        ("drpo", 0): (6, 3, 0.25, "from_file"), ("drpo", 1): (6, 3, 0.25, "from_file"),
        ("grpo", 0): (6, 3, 0.5, "from_file"), ("grpo", 1): (6, 3, 0.5, "from_file"),
    }
    assert (plan.primary_metric, plan.baseline) == ("exact", "drpo")
    assert "drpo: lr=0.25 (algo_settings)" in plan.render()


def test_flags_override_the_file_and_set_overrides_its_settings(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.replace("plugins: [PLUGIN]\n", ""))
    request = merge_request(read_experiment(path), seeds=(3,), profile="quick", overrides={"lr": "0.125"},
                            plugins=(PLUGIN,), out=tmp_path / "out")
    plan = sweep.build_plan(request)
    assert plan.seeds == [3] and plan.profile == "quick"
    grpo = next(j for j in plan.jobs if j.algo == "grpo")
    assert (grpo.config.steps, grpo.config.lr, grpo.config.tag) == (3, 0.125, "from_file")
    assert plan.config_sources == ["fake_cached defaults", "suite profile", f"--config {path}", "--set"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("suite: fake_suite\nalgoz: [drpo]\n", r"exp.yaml:2: algoz: unknown key. Did you mean 'algos'"),
        ("suite: fake_suite\nsettings:\n  data.seed: 3\n", r"exp.yaml:3: settings.data.seed: belongs under data:"),
        ("suite: fake_suite\nreport:\n  baseline: grpo\n  primary: exact\n",
         r"exp.yaml:4: report.primary: unknown key. Did you mean 'primary_metric'"),
        ("suite: fake_suite\nseeds: [0, x]\n", r"exp.yaml:2: seeds: expected a list of integers"),
        ("suite: fake_suite\nexecutor: rey\n", r"exp.yaml:2: executor: 'rey' is not one of local, ray. Did you mean 'ray'"),
        ("suite: fake_suite\nsettings: [1]\n", r"exp.yaml:2: settings: expected a mapping"),
        ("suite: fake_suite\nsuite: other\n", r"key 'suite' given twice, first on line 1"),
    ],
)
def test_a_bad_experiment_file_is_refused_naming_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_experiment(write(tmp_path, text))


def test_unknown_settings_and_algo_settings_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "suite: fake_suite\nrunner: fake\nsettings:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=f"--config {path}: unknown key 'stepz'. Did you mean 'steps'"):
        sweep.build_plan(merge_request(read_experiment(path), plugins=(PLUGIN,), out=tmp_path / "o"))
    path = write(tmp_path, "suite: fake_suite\nrunner: fake\nalgo_settings:\n  drpo: {lrr: 3}\n")
    with pytest.raises(ConfigError, match="algo_settings.drpo: unknown key 'lrr'. Did you mean 'lr'"):
        sweep.build_plan(merge_request(read_experiment(path), plugins=(PLUGIN,), out=tmp_path / "o"))
    # an algorithm --algos leaves out is named in the plan, not silently dropped
    path = write(tmp_path, "suite: fake_suite\nrunner: fake\nalgo_settings:\n  rloo: {lr: 3}\n")
    plan = sweep.build_plan(merge_request(read_experiment(path), algos=("drpo",), plugins=(PLUGIN,), out=tmp_path / "o"))
    assert "algo_settings.rloo not used: rloo is not an algorithm of this sweep" in plan.render()


def test_the_suite_comes_from_the_file_or_the_flag() -> None:
    with pytest.raises(ConfigError, match="--suite is required"):
        merge_request(None, overrides={})


def test_the_flat_form_and_a_runs_config_yaml_are_read_as_settings(tmp_path: Path) -> None:
    assert read_experiment(write(tmp_path, "steps: 7\nlr: 0.5\n")).settings == {"steps": 7, "lr": 0.5}
    saved = write(tmp_path, "suite: fake_suite\nalgos: [drpo]\nconfig:\n  steps: 5\n", "config.yaml")
    assert read_experiment(saved).settings == {"steps": 5}


def test_every_run_writes_an_experiment_file_that_reruns_the_same_jobs(tmp_path: Path, tracked: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--suite", "fake_suite", "--runner", "fake_cached", "--plugin", PLUGIN, "--algos", "drpo,grpo",
            "--seeds", "0,1", "--set", "tag=t1", "--set", "primary_metric=exact", "--baseline", "drpo"]
    assert main([*argv, "--out", "first"]) == 0
    written = tmp_path / "first" / EXPERIMENT_FILE
    doc = yaml.safe_load(written.read_text())
    assert doc["settings"] == {"tag": "t1"} and doc["report"] == {"primary_metric": "exact", "baseline": "drpo"}
    assert doc["algos"] == ["drpo", "grpo"] and doc["seeds"] == [0, 1] and doc["runner"] == "fake_cached"
    assert doc["plugins"] == [str(Path(PLUGIN).resolve())]

    first = sweep.build_plan(merge_request(None, suite="fake_suite", runner="fake_cached", plugins=(PLUGIN,),
                                           algos=("drpo", "grpo"), seeds=(0, 1), overrides={"tag": "t1"},
                                           out=tmp_path / "a"))
    again = sweep.build_plan(merge_request(read_experiment(written), out=tmp_path / "b"))
    keys = {(j.algo, j.seed): job_key(first, j).digest for j in first.jobs}
    assert keys == {(j.algo, j.seed): job_key(again, j).digest for j in again.jobs}
    assert (again.primary_metric, again.baseline) == ("exact", "drpo")

    capsys.readouterr()
    assert main(["run", "--config", str(written), "--out", "second"]) == 0
    out = capsys.readouterr().out
    assert "4 job(s) done, 4 reused from the job cache" in out
    assert (tmp_path / "second" / "results.csv").read_text() == (tmp_path / "first" / "results.csv").read_text()
