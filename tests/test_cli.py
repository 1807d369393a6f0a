"""The rlbench-med command: help, listing, exit codes, plugins, dry-run, data validation, reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rlbench_med.algorithms import list_estimators
from rlbench_med.cli import main
from rlbench_med.runners.sweep import read_results

PLUGIN = str(Path(__file__).parent / "reports" / "fake_plugin.py")
FAKE = ["--suite", "fake_suite", "--runner", "fake", "--plugin", PLUGIN]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    # main() sets these process-wide; monkeypatch puts them back after the test
    for name in ("NUMBA_CACHE_DIR", "MLFLOW_DISABLE_TELEMETRY", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["run", "list", "report", "ui", "data", "completion", "--version"]),
        (["run"], ["--suite", "--algos", "--seeds", "--profile", "--runner", "--executor", "--ray-address", "--data",
                   "--out", "--set", "--config", "--plugin", "--resume", "--dry-run", "--baseline", "--no-reuse"]),
        (["list"], ["algos", "suites", "rewards", "settings"]),
        (["data"], ["synth", "validate", "probe"]),
        (["report"], ["--experiment", "--out", "--results", "--baseline", "--format", "latex"]),
        (["compare"], ["SOURCE", "NAME=SOURCE", "--baseline", "--out", "--format", "paired by"]),
        (["leaderboard"], ["SOURCE", "--format", "latest sweep of every rlbench-med experiment"]),
        (["ui"], ["--port", "5000"]),
        (["data", "synth"], ["--suite", "--out", "--seed", "--profile"]),
        (["data", "validate"], ["file:line: field: message"]),
        (["tune"], ["--suite", "--algos", "--budget", "--space", "--search-seed", "--seeds", "--out", "--resume",
                    "--dry-run", "validation split", "tuned/<algo>.yaml"]),
    ],
)
def test_help_of_every_command(argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out


def test_run_help_names_the_suites_profiles_and_runners(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--suite {ablation_clusters,ablation_rewards,climb_ecg,climb_vision,grounding,mimic_fusion,runtime}" in out
    assert "--profile {full,quick}" in out and "--runner {local,openrlhf}" in out
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "--reward {paper,release}" in " ".join(capsys.readouterr().out.split())


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from rlbench_med import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"rlbench-med {__version__}"


def test_list_settings_prints_every_setting_with_type_default_allowed_values_and_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from rlbench_med.runners.config import LocalConfig

    assert main(["list", "settings", "--suite", "climb_vision"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("      ")]
    assert names[: len(dataclasses.fields(LocalConfig))] == [f.name for f in dataclasses.fields(LocalConfig)]
    assert {"data.imbalance", "data.seed", "data.min_domain_train", "primary_metric"} <= set(names)
    assert "  kl_mode  str, default 'loss'; one of loss, reward\n" in out
    assert "  kl_coef  float, default 0.01; climb_vision quick: 0.1\n" in out  # the profile's value beside the default
    assert "      RL steps (policy updates) per job" in out
    assert main(["list", "settings", "--runner", "openrlhf"]) == 0
    assert "  vllm_num_engines  int" in capsys.readouterr().out


def test_completion_prints_shell_code_and_completes_registry_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import argcomplete

    from rlbench_med.cli import _add_completers, build_parser

    out = subprocess.run([sys.executable, "-m", "rlbench_med.cli", "completion", "bash"], capture_output=True,
                         text=True, check=True).stdout
    assert "complete" in out and "rlbench-med" in out
    parser = build_parser()
    _add_completers(parser)
    line = "rlbench-med run --suite climb_v"
    for name, value in {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)), "_ARGCOMPLETE_IFS": "\n",
                        "COMP_TYPE": "9"}.items():
        monkeypatch.setenv(name, value)
    stream = io.StringIO()
    argcomplete.autocomplete(parser, output_stream=stream, exit_method=lambda code=0: None)
    assert stream.getvalue().split() == ["climb_vision"]


def test_list_algos_shows_every_estimator_and_sft(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "algos"]) == 0
    out = capsys.readouterr().out
    estimators, controls = out.split("\ncontrols (yardsticks for `rlbench-med calibrate`; never defaults):\n")
    lines = [line for line in estimators.splitlines() + controls.splitlines() if line]
    names = [line.split()[0] for line in lines]
    assert set(list_estimators()) <= set(names) and "sft" in names
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # every name has a description
    assert sorted(line.split()[0] for line in controls.splitlines()) == [
        "control:negate", "control:shuffle", "control:zero"]


def test_list_suites(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    for suite in ("climb_vision", "climb_ecg", "grounding", "mimic_fusion", "ablation_clusters", "ablation_rewards", "runtime"):
        assert suite in out


def test_plugin_flag_registers_an_estimator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "algos", "--plugin", PLUGIN]) == 0
    assert "fake_const" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--suite", "climb_visoin"], "unknown suite 'climb_visoin'. Did you mean 'climb_vision'"),
        (["run", "--suite", "climb_vision", "--algos", "grpoo"], "unknown estimator 'grpoo'. Did you mean 'grpo'"),
        (["run", "--suite", "climb_vision", "--set", "stepz=3"], "--set: unknown key 'stepz'. Did you mean 'steps'"),
        (["run", "--suite", "climb_vision", "--set", "steps=many"], "expected an integer, got 'many'"),
        (["run", "--suite", "climb_vision", "--profile", "huge"], "--profile 'huge' is not a profile"),
        (["run", "--suite", "climb_vision", "--config", "missing.yaml"], "--config missing.yaml: cannot read"),
        (["run", "--suite", "climb_vision", "--plugin", "no_such_plugin_mod"], "plugin module 'no_such_plugin_mod'"),
        (["run", *FAKE, "--set", "lr=nan"], "--set.lr: expected a finite number, got 'nan'"),
        (["run", "--suite", "climb_vision", "--set", "clip_high=nan"], "--set.clip_high: expected a finite number"),
        (["run", "--suite", "climb_vision", "--set", "kl_coef=nan"], "--set.kl_coef: expected a finite number"),
        (["run", "--suite", "climb_vision", "--set", "grad_clip=nan"], "--set.grad_clip: expected a finite number"),
        (["run", "--suite", "climb_vision", "--set", "temperature=inf"], "--set.temperature: expected a finite number"),
        (["run", "--suite", "climb_vision", "--set", "base_seed=18446744073709551616"], "does not fit in a 64-bit"),
        (["run", "--suite", "climb_vision", "--seeds", "99999999999999999999"], "--seeds: 99999999999999999999 does not fit"),
        (["run", *FAKE, "--out", "afile"], "is a file, not a folder"),
        (["run", *FAKE, "--out", "afile/o"], "afile is a file, so no folder can be made under it"),
        (["report", "--results", "nowhere"], "nowhere/results.csv"),
        (["report", "--results", "empty"], "empty/results.csv has no rows (no job of that run finished); nothing to report"),
        (["report", "--results", "o", "--experiment", "rlbench-med/x"], "not both"),
        (["run", *FAKE, "--algos", ""], "--algos: give at least one algorithm"),  # not silently the default
        (["run", *FAKE, "--seeds", ""], "--seeds: give at least one seed"),
        (["run", *FAKE, "--seeds", "0-1000000", "--dry-run"], "--seeds '0-1000000' asks for 1000001 seeds; a sweep "
                                                              "takes at most"),
        (["run", *FAKE, "--algos", "drpo", "--baseline", "grpoo"],
         "--baseline 'grpoo' is not an algorithm of this sweep. Did you mean 'drpo'? Choose one of drpo (or"),
        (["run", *FAKE, "--algos", "drpo,grpo", "--baseline", "grpoo"],
         "--baseline 'grpoo' is not an algorithm of this sweep. Did you mean 'grpo'"),
        (["run", "--set", "steps=3"], "--suite is required; e.g. --suite climb_vision"),
        (["run", "--suite", "climb_visio"], "unknown suite 'climb_visio'. Did you mean 'climb_vision'"),
        (["run", "--suite", "climb_vision", "--set", "primary_metric=f1_strct"], "Did you mean 'f1_strict'"),
        (["run", "--suite", "climb_vision", "--set", "reward=paperr"], "Did you mean 'paper'"),
        (["run", *FAKE, "--config", "twice.yaml"], "--config twice.yaml: not valid YAML (line 3: key 'steps' given "
                                                   "twice, first on line 1)"),
        (["run", *FAKE, "--config", "binary.yaml"], "--config binary.yaml: not UTF-8 text (a binary file?)"),
        (["run", *FAKE, "--out", "x" * 300], "is 300 bytes long; this file system allows at most 255 per name"),
        (["run", *FAKE, "--plugin", "exiting.py"], "plugin file 'exiting.py' failed to import: it called sys.exit(0)"),
        (["list", "algos", "--plugin", "exiting.py"], "it called sys.exit(0) while being imported"),
    ],
)
def test_bad_requests_exit_2_with_one_line(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "twice.yaml").write_text("steps: 2\nlr: 0.1\nsteps: 3\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\xff\xfebinary")
    (tmp_path / "exiting.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.csv").write_text("suite,algo,seed,domain,metric,value,n\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlbench-med: error: ")
    assert message in err
    assert "Traceback" not in err


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0,1", "--set", "steps=2", "--out", "o", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "drpo, grpo x seeds 0,1 = 4 jobs" in out and "steps=2" in out
    assert "fake-train --algo grpo --seed 1 --steps 2" in out  # the runner's launch lines
    assert "tracking" in out and "experiment rlbench-med/fake_suite" in out
    assert not (tmp_path / "o").exists()


def test_dry_run_of_the_runtime_suite_uses_the_timing_runner(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite", "runtime", "--algos", "grpo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "runner     timing" in out and "batch sizes [256, 1024]" in out


def test_run_writes_results_report_and_prints_the_table(tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0,1", "--out", "o"]) == 0
    out = capsys.readouterr().out
    for name in ("results.csv", "report.md", "report.html", "config.yaml", "predictions/drpo-seed1.jsonl",
                 "figures/difference_vs_baseline.png"):
        assert (tmp_path / "o" / name).exists(), name
    assert "fake_suite: f1_strict" in out and "drpo − grpo, overall f1_strict" in out and "overall" in out
    assert f"report: {tmp_path / 'o' / 'report.html'}" in out
    # the report rebuilt from MLflow alone has the same table
    assert main(["report", "--experiment", "rlbench-med/fake_suite", "--out", "from_mlflow"]) == 0
    rebuilt = capsys.readouterr().out
    table = lambda text: [l for l in text.splitlines() if l.startswith(("│", "┃"))]  # noqa: E731,E741
    assert table(rebuilt) == table(out)
    assert main(["report", "--results", "o", "--out", "again"]) == 0
    assert (tmp_path / "again" / "report.html").exists()
    capsys.readouterr()
    # bare `report` (ARCHITECTURE: --experiment is optional) uses the latest sweep of the store and says which
    parent = MlflowClient(tracked).search_runs(
        [MlflowClient(tracked).get_experiment_by_name("rlbench-med/fake_suite").experiment_id],
        filter_string="tags.`rlbench.role` = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert main(["report"]) == 0
    captured = capsys.readouterr()
    assert f"using experiment rlbench-med/fake_suite, the latest sweep, run {parent.info.run_id} (o)" in captured.err
    assert table(captured.out) == table(out)
    assert (tmp_path / "reports" / "rlbench-med_fake_suite-report" / "report.html").exists()


def test_bare_report_on_an_empty_store_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlbench-med: error: no rlbench-med sweep in ") and "--experiment NAME" in err
    assert main(["report", "--run-id", "0123456789abcdef"]) == 2
    assert "no run '0123456789abcdef'" in capsys.readouterr().err


def test_failed_job_exits_1_and_keeps_the_others(tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0", "--set", "fail_estimator=drpo", "--out", "o"]) == 1
    assert "job drpo seed 0 failed: RuntimeError: fake failure of drpo-seed0" in capsys.readouterr().err
    assert {r["algo"] for r in read_results(tmp_path / "o" / "results.csv")} == {"grpo"}


def test_data_validate_prints_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text('{"problem": "p", "answer": "Pneumonia", "dataset": "MIMIC-CXR"}\n{"answer": 3}\nnot json\n')
    (data / "test.jsonl").write_text('{"problem": "p", "answer": "Pneumonia", "dataset": "NoSuchSet"}\n')
    assert main(["data", "validate", str(data)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{data / 'train.jsonl'}:2: problem:") or line.startswith("train.jsonl:2: problem:")
               for line in out), out
    assert any(":3: " in line for line in out) and any("test.jsonl:1: dataset:" in line for line in out)
    for line in out:
        assert line.count(": ") >= 2 and "Traceback" not in line
    assert main(["data", "validate", str(tmp_path / "absent")]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_exit_with_their_code_and_mark_runs_killed(sig: int, code: int, tmp_path: Path,
                                                                      tracked: str) -> None:
    marker = tmp_path / "started"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracked, "RLBENCH_MED_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlbench_med.cli", "run", *FAKE, "--algos", "grpo", "--seeds", "0", "--out", "o",
         "--set", "sleep_s=60", "--set", f"marker={marker}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err
    client = MlflowClient(tracked)
    exp = client.get_experiment_by_name("rlbench-med/fake_suite")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`rlbench.out_dir` = '{tmp_path / 'o'}'")
    assert [r.info.status for r in runs] == ["KILLED"]
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{runs[0].info.run_id}'")
    assert [r.info.status for r in children] == ["KILLED"]
    assert (tmp_path / "o" / "results.csv").read_text().startswith("suite,algo,seed,domain,metric,value,n")


@pytest.mark.parametrize(
    "uri, message",
    [("foo://bar", "tracking store foo://bar: MLflow has no store for the scheme 'foo'"),
     ("http://127.0.0.1:9", "tracking server http://127.0.0.1:9 does not answer")],
)
def test_an_unusable_tracking_store_is_refused_before_anything_is_written(
    uri: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for extra in (["--dry-run"], []):
        assert main(["run", *FAKE, "--algos", "grpo", "--seeds", "0", "--out", "o", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"rlbench-med: error: {message}"), err
    assert not (tmp_path / "o").exists()


def test_a_redirected_run_logs_progress_lines(tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0", "--set", "steps=4", "--out", "o",
                 "--log-every", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith(("job ", "drpo seed", "grpo seed", "data:", "runner "))]
    assert progress[0] == "runner fake: preparing what the jobs share ..."
    assert progress[1].startswith("runner fake: ready (")
    assert progress[2] == "job 1/2 drpo seed 0: started (4 steps)"
    assert progress[3].startswith("drpo seed 0: step 2/4  reward 0.500  ETA ")
    assert progress[4].startswith("drpo seed 0: step 4/4  reward 1.000  ETA 0s")
    assert progress[5].startswith("job 1/2 drpo seed 0: finished (")
    assert progress[6] == "job 2/2 grpo seed 0: started (4 steps)"


def test_a_signal_during_the_report_exits_143_and_ends_the_parent_killed(
    tmp_path: Path, tracked: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def killed_report(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr("rlbench_med.reports.report.make_report", killed_report)
    assert main(["run", *FAKE, "--algos", "grpo", "--seeds", "0", "--out", "o"]) == 143
    err = capsys.readouterr().err
    assert ("rlbench-med: interrupted while building the report; results.csv is complete: rebuild the report with "
            f"`rlbench-med report --results {tmp_path / 'o'}`") in err
    client = MlflowClient(tracked)
    exp = client.get_experiment_by_name("rlbench-med/fake_suite")
    parent = [r for r in client.search_runs([exp.experiment_id], filter_string="tags.`rlbench.role` = 'sweep'")
              if r.data.tags["rlbench.out_dir"] == str(tmp_path / "o")]
    assert [r.info.status for r in parent] == ["KILLED"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_report_of_a_sweep_without_finished_jobs_says_which_failed_and_why(tmp_path: Path, tracked: str,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "grpo", "--seeds", "0", "--set", "fail_estimator=grpo", "--out", "o"]) == 1
    capsys.readouterr()
    assert main(["report", "--experiment", "rlbench-med/fake_suite", "--out", "rep"]) == 0  # from MLflow alone
    assert "job grpo seed 0 failed: RuntimeError: fake failure of grpo-seed0" in capsys.readouterr().err
    assert "- `grpo` seed 0: RuntimeError: fake failure of grpo-seed0" in (tmp_path / "rep" / "report.md").read_text()


def test_telemetry_is_off_and_numba_caches_under_the_cache_unless_set(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["list", "suites"]) == 0
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / "numba")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user turns it on
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert main(["list", "suites"]) == 0
    assert (os.environ["MLFLOW_DISABLE_TELEMETRY"], os.environ["NUMBA_CACHE_DIR"]) == ("false", str(tmp_path / "mine"))


@pytest.mark.slow
def test_kill_9_mid_job_then_resume_leaves_nothing_running_and_reports_every_job(tmp_path: Path, tracked: str) -> None:
    marker = tmp_path / "started"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracked, "RLBENCH_MED_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "rlbench_med.cli", "run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0",
            "--out", "o", "--set", "sleep_s=3", "--set", f"marker={marker}"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (marker.exists() and marker.read_text() == "grpo-seed0") and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client = MlflowClient(tracked)
    exp = client.get_experiment_by_name("rlbench-med/fake_suite")

    def runs() -> dict[str, str]:
        found = client.search_runs([exp.experiment_id], filter_string=f"tags.`rlbench.out_dir` = '{tmp_path / 'o'}'")
        assert len(found) == 1
        children = client.search_runs([exp.experiment_id],
                                      filter_string=f"tags.`mlflow.parentRunId` = '{found[0].info.run_id}'")
        return {"sweep": found[0].info.status, **{c.info.run_name: c.info.status for c in children}}

    assert runs() == {"sweep": "RUNNING", "drpo-seed0": "FINISHED", "grpo-seed0": "RUNNING"}
    resumed = subprocess.run([*argv, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert runs() == {"sweep": "FINISHED", "drpo-seed0": "FINISHED", "grpo-seed0": "FINISHED"}
    assert main(["report", "--experiment", "rlbench-med/fake_suite", "--out", "rep"]) == 0
    assert {r["algo"] for r in read_results(tmp_path / "rep" / "results.csv")} == {"drpo", "grpo"}


def test_a_piped_report_fits_80_columns_and_cuts_nothing(tmp_path: Path, tracked: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`rlbench-med report ... | cat`: the tables are split to fit an 80-column log, every value whole."""
    monkeypatch.delenv("COLUMNS", raising=False)
    algos = "drpo,grpo,rloo,fake_const,drpo:k_max=3,grpo:std_norm=false"
    assert main(["run", *FAKE, "--algos", algos, "--seeds", "0,1", "--out", "o"]) == 0
    capsys.readouterr()
    assert main(["report", "--results", "o"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line[:1] in "┌│├└"]
    assert table and max(len(line) for line in table) <= 80 and "…" not in out
    rows = read_results(tmp_path / "o" / "results.csv")
    for algo in ["drpo", "grpo", "rloo", "fake_const", "drpo:k_max=3", "grpo:std_norm=false"]:
        values = [r["value"] for r in rows if (r["algo"], r["domain"], r["metric"]) == (algo, "overall", "f1_strict")]
        mean, std = sum(values) / 2, abs(values[0] - values[1]) / 2 ** 0.5  # sample std of two values
        assert f"{mean:.3f}±{std:.3f}" in out, algo


def test_report_format_latex_and_csv_print_only_the_tables(tmp_path: Path, tracked: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0,1", "--out", "o"]) == 0
    capsys.readouterr()
    assert main(["report", "--results", "o", "--format", "latex"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("\\begin{table}[t]") and captured.out.count("\\end{table}") == 2
    assert "drpo $-$ grpo" in captured.out and captured.err == "report: o/report.html\n"
    assert main(["report", "--results", "o", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Domain,n,drpo,drpo std,drpo seeds,grpo,grpo std,grpo seeds"
    assert [line.split(",")[0] for line in lines[1:]] == ["alpha", "beta", "overall"]


def test_the_parent_run_carries_summary_metrics_and_a_table(tmp_path: Path, tracked: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0,1", "--out", "o"]) == 0
    client = MlflowClient(tracked)
    exp = client.get_experiment_by_name("rlbench-med/fake_suite")
    parent = next(r for r in client.search_runs([exp.experiment_id], filter_string="tags.`rlbench.role` = 'sweep'")
                  if r.data.tags["rlbench.out_dir"] == str(tmp_path / "o"))
    rows = read_results(tmp_path / "o" / "results.csv")
    for algo in ("drpo", "grpo"):
        values = [r["value"] for r in rows if (r["algo"], r["domain"], r["metric"]) == (algo, "overall", "f1_strict")]
        assert parent.data.metrics[f"summary/{algo}/f1_strict"] == pytest.approx(sum(values) / len(values))
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, "summary_table.json", str(tmp_path))).read_text())
    assert table["columns"] == ["Domain", "n", "drpo", "grpo"] and [r[0] for r in table["data"]] == ["alpha", "beta", "overall"]


def test_a_second_sweep_given_to_report_is_refused_not_silently_replacing_the_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", "--run-id", "a", "--run-id", "b"])
    assert exc.value.code == 2
    assert "--run-id given twice: report takes one sweep; `rlbench-med compare" in capsys.readouterr().err


def test_dry_run_exits_2_when_it_finds_a_data_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.runners.local.tiny_data import write_tiny_data

    data = write_tiny_data(tmp_path / "d", n_train=6, n_test=3)
    assert main(["run", "--suite", "climb_vision", "--data", str(data), "--dry-run"]) == 0
    with open(data / "train.jsonl", "a") as fh:
        fh.write('{"problem": "p"}\n')  # no answer, no dataset, so no domain: 3 problems
    capsys.readouterr()
    assert main(["run", "--suite", "climb_vision", "--data", str(data), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "rlbench-med run plan" in captured.out  # the plan is still printed
    assert captured.err == (f"rlbench-med: error: 3 problem(s) in data {data}, found without opening its media; a run "
                            f"would refuse it: run `rlbench-med data validate {data}` to see them\n")


def test_a_run_whose_only_job_fails_reports_why(tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "drpo", "--seeds", "0", "--set", "fail_estimator=drpo", "--out", "o"]) == 1
    captured = capsys.readouterr()
    reason = "RuntimeError: fake failure of drpo-seed0"
    assert f"job 1/1 drpo seed 0: failed (0s): {reason}" in captured.out  # the progress line (a log here)
    assert f"job drpo seed 0 failed: {reason}" in captured.err
    assert (tmp_path / "o" / "failed.csv").read_text() == f"suite,algo,seed,error\nfake_suite,drpo,0,{reason}\n"
    assert f"- `drpo` seed 0: {reason}" in (tmp_path / "o" / "report.md").read_text()
    client = MlflowClient(tracked)
    run = client.search_runs([client.get_experiment_by_name("rlbench-med/fake_suite").experiment_id],
                             filter_string="tags.`rlbench.algo` = 'drpo'", order_by=["attributes.start_time DESC"])[0]
    assert (run.info.status, run.data.tags["rlbench.error"]) == ("FAILED", reason)
    assert main(["report", "--results", "o", "--out", "again"]) == 0  # a folder whose only job failed
    assert f"job drpo seed 0 failed: {reason}" in capsys.readouterr().err


def test_report_compare_and_leaderboard_on_a_truncated_store_fail_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert main(["run", *FAKE, "--algos", "drpo", "--seeds", "0", "--out", "o"]) == 0
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 8)
    for argv in (["report"], ["leaderboard"], ["compare", "o", "o"]):  # new processes: none has the store open
        done = subprocess.run([sys.executable, "-m", "rlbench_med.cli", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (argv, done.stderr)
        assert done.stderr.startswith(f"rlbench-med: error: tracking store sqlite:///{db} cannot be read (") and \
            done.stderr.endswith("; restore it from a backup or set MLFLOW_TRACKING_URI to another store\n"), argv


def test_a_full_disk_while_the_report_is_written_names_the_path_and_what_was_kept(
    tmp_path: Path, tracked: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from rlbench_med.reports import report

    def full(path, comparisons):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() says on a full disk: no file name

    monkeypatch.setattr(report, "write_comparisons", full)
    assert main(["run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0", "--out", "o"]) == 1
    out = tmp_path / "o"
    assert capsys.readouterr().err == (
        f"rlbench-med: error: cannot write {out} (the report: report.md, report.html, comparisons.csv, figures/): No "
        "space left on device (the disk is full, or a quota or file-size limit is reached); kept: "
        f"{out / 'results.csv'} with 2 of 2 job(s) and their predictions; once there is room, build the report with "
        f"`rlbench-med report --results {out}`\n")
    assert {r["algo"] for r in read_results(out / "results.csv")} == {"drpo", "grpo"}
    client = MlflowClient(tracked)
    parent = client.search_runs([client.get_experiment_by_name("rlbench-med/fake_suite").experiment_id],
                                filter_string=f"tags.`rlbench.out_dir` = '{out}'")[0]
    assert parent.info.status == "FAILED" and parent.data.tags["rlbench.error"].startswith("the report failed: OSError")


def test_a_real_file_size_limit_ends_the_run_with_one_line(tmp_path: Path) -> None:
    """``ulimit -f``: MLflow keeps a file store (small files) here, so the report's page is what hits the limit."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(tmp_path / "store"), "MLFLOW_ALLOW_FILE_STORE": "true",
           "RLBENCH_MED_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-c", "import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (60 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "from rlbench_med.cli import main\nsys.exit(main(sys.argv[1:]))",
            "run", *FAKE, "--algos", "drpo,grpo", "--seeds", "0,1", "--out", "o"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rlbench-med: error: cannot write {tmp_path / 'o'}") and "File too large" in last
    assert last.endswith(f"kept: {tmp_path / 'o' / 'results.csv'} with 4 of 4 job(s) and their predictions; once there "
                         f"is room, build the report with `rlbench-med report --results {tmp_path / 'o'}`")
    assert "Traceback" not in done.stderr
    assert len(read_results(tmp_path / "o" / "results.csv")) == 4 * 18


def test_bare_report_and_leaderboard_skip_a_newer_sweep_without_finished_jobs(tmp_path: Path, tracked: str,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *FAKE, "--algos", "grpo", "--seeds", "0", "--set", "steps=2", "--out", "good"]) == 0
    assert main(["run", *FAKE, "--algos", "grpo", "--seeds", "0", "--set", "fail_estimator=grpo", "--out", "bad"]) == 1
    client = MlflowClient(tracked)
    experiment = client.get_experiment_by_name("rlbench-med/fake_suite").experiment_id
    good, bad = (client.search_runs([experiment], filter_string=f"tags.`rlbench.out_dir` = '{tmp_path / name}'")[0]
                 for name in ("good", "bad"))
    capsys.readouterr()
    assert main(["report", "--out", "rep"]) == 0
    err = capsys.readouterr().err
    assert f"rlbench-med: skipped sweep run {bad.info.run_id} ({bad.info.run_name}, rlbench-med/fake_suite, FAILED): " \
           "no job finished" in err
    assert f"run {good.info.run_id}" in err and (tmp_path / "rep" / "report.html").exists()
    assert main(["leaderboard"]) == 0
    err = capsys.readouterr().err
    assert f"skipped sweep run {bad.info.run_id}" in err and f"fake_suite: good = MLflow run {good.info.run_id}" in err


def test_resume_on_a_damaged_results_csv_stops_in_one_line_naming_its_line(
    tmp_path: Path, tracked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *FAKE, "--algos", "grpo", "--seeds", "0", "--out", "o"]) == 0
    results = tmp_path / "o" / "results.csv"
    lines = results.read_text().splitlines()
    results.write_text("\n".join([*lines, "fake_suite,grpo,zero,overall,f1,0.5,3"]) + "\n")  # a cut-off seed
    before = results.read_text()
    capsys.readouterr()
    assert main(["run", *FAKE, "--algos", "grpo,drpo", "--seeds", "0", "--out", "o", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlbench-med: error: ") and err.count("\n") == 1
    assert f"{results}:{len(lines) + 1}" in err and "seed" in err
    assert results.read_text() == before  # nothing was run or rewritten
