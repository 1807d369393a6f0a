"""The sweep: config precedence, job expansion, results.csv, failures, resume (fake runner)."""

from __future__ import annotations

import csv
import re
import os
import signal
import tempfile
import time
import traceback
from pathlib import Path

import pytest
import yaml

from rlbench_med.runners import sweep
from rlbench_med.runners.base import RESULT_COLUMNS
from rlbench_med.typed_config import ConfigError
from tests.reports.conftest import PLUGIN


def request(tmp_path: Path, **kw) -> sweep.SweepRequest:
    base = dict(suite="fake_suite", runner="fake", out=tmp_path / "out", plugins=(PLUGIN,))
    base.update(kw)
    return sweep.SweepRequest(**base)


def test_config_precedence_profile_then_file_then_set(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 7\nlr: 0.5\ntag: from_file\n")
    plan = sweep.build_plan(request(tmp_path, profile="full", config_file=cfg_file, overrides={"lr": "0.25"}))
    # eval_every from the profile, steps/tag from the file (over the profile's 6), lr from --set
    assert (plan.config.eval_every, plan.config.steps, plan.config.tag, plan.config.lr) == (3, 7, "from_file", 0.25)
    assert plan.config_sources == ["fake defaults", "suite profile", f"--config {cfg_file}", "--set"]
    only_profile = sweep.build_plan(request(tmp_path, profile="full"))
    assert (only_profile.config.steps, only_profile.config.lr) == (6, 0.1)


def test_unknown_set_key_suggests_the_closest_and_names_the_accepted_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'stepz'. Did you mean 'steps'.*Accepted fields: .*steps"):
        sweep.build_plan(request(tmp_path, overrides={"stepz": "3"}))
    # a near miss of a sweep setting is suggested too, though it is routed to the runner
    with pytest.raises(ConfigError, match="unknown key 'primary_metrc'. Did you mean 'primary_metric'"):
        sweep.build_plan(request(tmp_path, overrides={"primary_metrc": "exact"}))


def test_jobs_expand_algos_variants_and_seeds(tmp_path: Path) -> None:
    plan = sweep.build_plan(request(tmp_path, suite="fake_variants", algos=("drpo", "grpo:eps=0.001"), seeds=(0, 5)))
    labels = [(j.algo, j.estimator, j.seed, j.config.lr) for j in plan.jobs]
    assert labels == [
        ("drpo[small]", "drpo", 0, 0.01), ("drpo[small]", "drpo", 5, 0.01),
        ("drpo[big]", "drpo", 0, 1.0), ("drpo[big]", "drpo", 5, 1.0),
        ("grpo:eps=0.001[small]", "grpo:eps=0.001", 0, 0.01), ("grpo:eps=0.001[small]", "grpo:eps=0.001", 5, 0.01),
        ("grpo:eps=0.001[big]", "grpo:eps=0.001", 0, 1.0), ("grpo:eps=0.001[big]", "grpo:eps=0.001", 5, 1.0),
    ]


def test_default_seeds_come_from_the_profile(tmp_path: Path) -> None:
    assert sweep.build_plan(request(tmp_path, profile="full")).seeds == [0, 1, 2]


def test_parse_algos_keeps_spec_options_together() -> None:
    assert sweep.parse_algos("drpo:k_max=3,kl_damping=false,grpo") == ("drpo:k_max=3,kl_damping=false", "grpo")
    assert sweep.parse_seeds("0-2,7") == (0, 1, 2, 7)
    with pytest.raises(ConfigError, match="--seeds"):
        sweep.parse_seeds("a")
    with pytest.raises(ConfigError, match="twice"):
        sweep.parse_algos("grpo,grpo")


def test_plan_render_lists_everything_and_runner_lines(tmp_path: Path) -> None:
    text = sweep.build_plan(request(tmp_path, algos=("drpo", "grpo"), seeds=(0, 1))).render()
    for expected in ("suite      fake_suite", "drpo, grpo x seeds 0,1 = 4 jobs", "runner     fake", "executor   local",
                     f"output     {tmp_path / 'out'}", "tracking", "fake-train --algo grpo --seed 1 --steps 3"):
        assert expected in text


def test_results_csv_has_exact_columns_and_config_is_saved(tmp_path: Path) -> None:
    plan = sweep.build_plan(request(tmp_path, algos=("drpo", "grpo"), seeds=(0,)))
    outcome = sweep.run_sweep(plan)
    assert outcome.ok and outcome.status == "FINISHED"
    with open(outcome.results_csv) as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == RESULT_COLUMNS == ("suite", "algo", "seed", "domain", "metric", "value", "n")
    # 2 algos x 1 seed x (2 domains + overall) x (acc, f1, exact, f1_strict, labels, acc_release)
    assert len(rows) - 1 == 2 * 3 * 6
    saved = yaml.safe_load((plan.out_dir / "config.yaml").read_text())
    assert saved["config"]["steps"] == 3 and saved["algos"] == ["drpo", "grpo"]


def test_a_failed_job_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    plan = sweep.build_plan(request(tmp_path, algos=("grpo", "drpo", "rloo"), seeds=(0,),
                                    overrides={"fail_estimator": "drpo"}))
    outcome = sweep.run_sweep(plan)
    assert outcome.status == "FAILED"
    assert [(f.job.algo, f.error) for f in outcome.failures] == [("drpo", "RuntimeError: fake failure of drpo-seed0")]
    algos = {r["algo"] for r in sweep.read_results(outcome.results_csv)}
    assert algos == {"grpo", "rloo"}


def test_ctrl_c_keeps_finished_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = sweep.build_plan(request(tmp_path, algos=("grpo", "drpo"), seeds=(0,)))
    real_run = plan.runner.run

    def run(job, tracker, resume):
        if job.estimator == "drpo":
            raise KeyboardInterrupt
        return real_run(job, tracker, resume)

    plan.runner = plan.runner.__class__(**{**plan.runner.__dict__, "run": run})
    outcome = sweep.run_sweep(plan)
    assert outcome.interrupted and outcome.status == "KILLED"
    assert {r["algo"] for r in sweep.read_results(outcome.results_csv)} == {"grpo"}


def test_resume_skips_finished_jobs_and_refuses_silent_overwrite(tmp_path: Path) -> None:
    first = sweep.run_sweep(sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0,))))
    assert first.ok
    with pytest.raises(sweep.SweepError, match="already holds a run"):
        sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0,)))
    plan = sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0, 1), resume=True))
    assert [(j.algo, j.seed) for j in plan.pending] == [("grpo", 1)]
    outcome = sweep.run_sweep(plan)
    rows = sweep.read_results(outcome.results_csv)
    assert sorted({(r["algo"], r["seed"]) for r in rows}) == [("grpo", 0), ("grpo", 1)]
    assert len(rows) == 2 * 18
    with pytest.raises(sweep.SweepError, match="config differs"):
        sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0, 1), resume=True, overrides={"lr": "0.3"}))


def test_results_writer_is_atomic_and_checks_columns(tmp_path: Path) -> None:
    from rlbench_med.runners.base import ResultsError

    writer = sweep.ResultsWriter(tmp_path / "r.csv")
    row = dict(suite="s", algo="a", seed=0, domain="d", metric="f1", value=0.5, n=3)
    writer.add([row])
    assert sweep.read_results(tmp_path / "r.csv") == [{**row, "value": 0.5}]
    assert not (tmp_path / "r.csv.tmp").exists()
    with pytest.raises(ResultsError, match="expected the 7 columns suite,algo,seed,domain,metric,value,n"):
        writer.add([{**row, "extra": 1}])


@pytest.fixture
def fake_synth(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """SynthCLIMB replaced by empty split files (its calls recorded) and loading by an empty data set."""
    from rlbench_med.suites import ClinicalData, synth

    calls: list[tuple] = []

    def fake_generate(suite, out, *, seed, profile, imbalance, data_overrides):
        calls.append((suite, seed, profile, imbalance, data_overrides))
        for split in ("train", "validation", "test"):
            Path(out, f"{split}.jsonl").write_text("")
        return {}

    monkeypatch.setattr(synth, "generate", fake_generate)
    monkeypatch.setattr("rlbench_med.suites.load_data", lambda root: ClinicalData(Path("."), [], [], ()))
    return calls


def test_results_csv_lists_jobs_in_plan_order_whatever_order_they_end_in(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    existing = [{"suite": "s", "algo": "old", "seed": 0, "domain": "d", "metric": "f1", "value": 0.1, "n": 3}]
    writer = sweep.ResultsWriter(path, existing)

    def rows(algo: str) -> list[dict]:
        return [{"suite": "s", "algo": algo, "seed": 0, "domain": d, "metric": "f1", "value": 0.5, "n": 3}
                for d in ("d", "overall")]

    writer.add(rows("floor:all"))  # the floors: no place in the plan, first after what was there
    writer.add(rows("third"), rank=2)
    writer.add(rows("first"), rank=0)
    writer.add(rows("second"), rank=1)
    assert [r["algo"] for r in sweep.read_results(path)] == [
        "old", "floor:all", "floor:all", "first", "first", "second", "second", "third", "third"]


def test_generated_data_is_cached_and_reused(tmp_path: Path, fake_synth: list[tuple]) -> None:
    plan = sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "o",
                                               plugins=(PLUGIN,)))
    assert plan.data_dir.parent == tmp_path / "cache" / "data"
    assert re.fullmatch(r"climb_vision-quick-seed0-[0-9a-f]{8}", plan.data_dir.name)
    assert "will be generated" in plan.data_note
    sweep.ensure_data(plan)
    sweep.ensure_data(plan)
    assert [c[:3] for c in fake_synth] == [("climb_vision", 0, "quick")]
    assert sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "p",
                                               plugins=(PLUGIN,))).data_note.endswith("(cached)")


def test_given_data_is_validated_never_generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.suites import synth

    def no_generate(*args, **kwargs):
        raise AssertionError("--data must not be generated")

    validated = []
    monkeypatch.setattr(synth, "generate", no_generate)
    monkeypatch.setattr("rlbench_med.suites.load_data", validated.append)
    data = tmp_path / "SynthCLIMB"
    plan = sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "o", data=data,
                                               plugins=(PLUGIN,)))
    assert not plan.generates_data
    assert sweep.ensure_data(plan) == data.resolve()
    assert [v.folder for v in validated] == [data.resolve()] and validated[0].suite == "climb_vision"
    assert all(job.data_dir.is_file() and job.data_dir.name.endswith(".source.json") for job in plan.jobs)


def test_data_settings_key_the_cache_and_reach_the_generator(tmp_path: Path, fake_synth: list[tuple]) -> None:
    plan = sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "o", plugins=(PLUGIN,),
                                               overrides={"data.imbalance": "0", "data.seed": "3",
                                                          "data.min_domain_train": "346"}))
    assert re.fullmatch(r"climb_vision-quick-seed3-imb0-min_domain_train346-[0-9a-f]{8}", plan.data_dir.name)
    assert "seed 3 imbalance 0 min_domain_train=346" in plan.data_note
    sweep.ensure_data(plan)
    assert [c[1:] for c in fake_synth] == [(3, "quick", 0.0, {"min_domain_train": 346})]
    saved = plan.data_settings.as_dict()
    assert saved == {"imbalance": 0.0, "seed": 3, "min_domain_train": 346}


@pytest.mark.parametrize(
    ("overrides", "data", "message"),
    [
        ({"data.imbalance": "1.5"}, None, r"data.imbalance: must be a number in \[0, 1\]"),
        ({"data.imbalance": "nan"}, None, r"data.imbalance: expected a finite number"),
        ({"data.sed": "3"}, None, "unknown key 'sed'. Did you mean 'seed'.*Accepted fields: imbalance, seed.*min_domain_train"),
        ({"data.min_domain_train": "-2"}, None, "data.min_domain_train: must be positive"),
        ({"data.seed": "2"}, "given", "do not apply to --data"),
        ({"primary_metric": "labels"}, None, "not a metric that scores answers"),
        ({"primary_metric": "f2"}, None, "not a metric that scores answers"),
    ],
)
def test_bad_sweep_settings_fail_at_plan_time(tmp_path: Path, overrides, data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "o", plugins=(PLUGIN,),
                                            overrides=overrides, data=tmp_path / "d" if data else None))


def test_primary_metric_is_the_suites_unless_set(tmp_path: Path) -> None:
    plan = sweep.build_plan(sweep.SweepRequest(suite="grounding", runner="fake", out=tmp_path / "o", plugins=(PLUGIN,)))
    assert plan.primary_metric == "iou"
    plan = sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "p", plugins=(PLUGIN,),
                                               overrides={"primary_metric": "exact"}))
    assert plan.primary_metric == "exact" and "leads with exact" in plan.render()


def test_seeds_beyond_int64_or_negative_are_refused() -> None:
    with pytest.raises(ConfigError, match="--seeds: 99999999999999999999 does not fit in a 64-bit integer"):
        sweep.parse_seeds("99999999999999999999")
    with pytest.raises(ConfigError, match="--seeds: '-1' is not a non-negative integer"):
        sweep.parse_seeds("0,-1")


def test_out_that_is_a_file_or_under_a_file_is_refused_at_plan_time(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(sweep.SweepError, match=r"--out .*afile is a file, not a folder"):
        sweep.build_plan(request(tmp_path, out=tmp_path / "afile"))
    with pytest.raises(sweep.SweepError, match=r"--out .*afile/o/p: .*afile is a file, so no folder can be made under it"):
        sweep.build_plan(request(tmp_path, out=tmp_path / "afile" / "o" / "p"))


def _unprivileged(check) -> None:
    """Run ``check()`` as a user without root rights (root may write anywhere); fail if it fails there."""
    if os.geteuid() != 0:
        check()
        return
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run the check, report by exit code
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            check()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0, "the check failed in the unprivileged process (see stderr)"


def test_out_in_a_read_only_folder_is_refused_at_plan_time(tmp_path: Path) -> None:
    sweep.build_plan(request(tmp_path))  # the plugin is loaded and the plan itself is fine
    with tempfile.TemporaryDirectory() as shared:  # a folder every user can look into
        os.chmod(shared, 0o755)
        read_only = Path(shared) / "ro"
        read_only.mkdir(mode=0o555)

        def check() -> None:
            with pytest.raises(sweep.SweepError, match=f"--out {read_only / 'out'}: {read_only} is not writable; "
                                                       "give a folder you can write to"):
                sweep.build_plan(request(tmp_path, out=read_only / "out"))

        _unprivileged(check)
        read_only.chmod(0o755)


def test_a_second_sweep_on_the_same_out_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    from rlbench_med.locks import file_lock

    plan = sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0,)))
    with file_lock(plan.out_dir / sweep.LOCK_NAME):  # what a live sweep holds
        with pytest.raises(sweep.SweepError, match=f"another rlbench-med run \\(process {os.getpid()}\\) is writing to"):
            sweep.run_sweep(plan)
    assert sweep.run_sweep(plan).ok  # released (also by a killed process): the folder is free again


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message): self.lines.append(message)
    def start(self, n): pass
    def job_started(self, job, steps): pass
    def step(self, s, metrics): pass
    def job_finished(self, job, ok, error=""): pass
    def stop(self): pass


def test_the_data_note_says_what_happens_to_the_data(tmp_path: Path, fake_synth: list[tuple]) -> None:
    data = tmp_path / "mydata"
    notes = Notes()
    sweep.run_sweep(sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "a",
                                                        data=data, plugins=(PLUGIN,), seeds=(0,))), progress=notes)
    assert notes.lines[0] == f"data: validating {data} (--data) ..."
    generated = sweep.data_cache_path("climb_vision", "quick")
    for out, expected in (("b", f"data: generating SynthCLIMB into {generated} ..."),
                          ("c", f"data: checking the cached SynthCLIMB in {generated} ...")):
        notes = Notes()
        sweep.run_sweep(sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / out,
                                                            plugins=(PLUGIN,), seeds=(0,))), progress=notes)
        assert notes.lines[0] == expected


def test_a_generator_killed_midway_leaves_no_temporary_folder(tmp_path: Path, fake_synth: list[tuple]) -> None:
    plan = sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "o",
                                               plugins=(PLUGIN,)))
    # What a SIGKILL'd generator leaves: its temporary sibling folder, half written (no finally ran).
    orphan = plan.data_dir.with_name(plan.data_dir.name + ".k3x9q2ab")
    orphan.mkdir(parents=True)
    (orphan / "train.jsonl").write_text("{half")
    other = plan.data_dir.with_name(plan.data_dir.name + "1.abcdefgh")  # another data set's: not ours to delete
    other.mkdir()
    sweep.ensure_data(plan)
    assert sorted(p.name for p in plan.data_dir.parent.iterdir()) == [
        plan.data_dir.name, plan.data_dir.name + ".lock", plan.data_dir.name + "1.abcdefgh", "sources"]


def test_sigterm_and_sigint_end_a_job_alike_and_say_which(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        plan = sweep.build_plan(request(tmp_path, algos=("grpo", "drpo"), seeds=(0,), out=tmp_path / sig.name))
        real_run = plan.runner.run

        def run(job, tracker, resume, sig=sig):
            if job.estimator == "drpo":
                os.kill(os.getpid(), sig)
                time.sleep(5)  # the signal arrives before this ends
            return real_run(job, tracker, resume)

        plan.runner = plan.runner.__class__(**{**plan.runner.__dict__, "run": run})
        outcome = sweep.run_sweep(plan)
        assert (outcome.status, outcome.signum, outcome.report_interrupted) == ("KILLED", sig, False)
        assert {r["algo"] for r in sweep.read_results(outcome.results_csv)} == {"grpo"}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_signal_while_the_report_is_built_ends_the_sweep_killed(tmp_path: Path) -> None:
    plan = sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0,)))
    built: list[int] = []

    def report(outcome):
        assert outcome.status == "FINISHED"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        built.append(1)
        return []

    outcome = sweep.run_sweep(plan, report=report)
    assert (outcome.status, outcome.signum, outcome.report_interrupted, built) == ("KILLED", signal.SIGTERM, True, [])
    assert {r["algo"] for r in sweep.read_results(outcome.results_csv)} == {"grpo"}  # results.csv is complete


def test_a_signal_the_process_was_started_to_ignore_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup or in a script's background job
    try:
        with sweep.interrupt_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_data_cache_is_keyed_by_every_generator_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.runners.sweep.settings import DataSettings
    from rlbench_med.suites import get_suite

    default = sweep.data_cache_path("climb_vision", "quick")
    assert sweep.data_cache_path("climb_vision", "quick", DataSettings(seed=1)) != default
    assert sweep.data_cache_path("climb_vision", "quick", DataSettings(imbalance=0.3)).name.count(".") == 0
    # A newer version whose profile sizes differ must not reuse the data generated with the old sizes.
    spec = get_suite("climb_vision")
    changed = {**spec.profiles["quick"], "data": {**spec.profiles["quick"]["data"], "min_domain_train": 25}}
    monkeypatch.setitem(spec.profiles, "quick", changed)
    assert sweep.data_cache_path("climb_vision", "quick") != default


def _with_run(plan, run):
    plan.runner = plan.runner.__class__(**{**plan.runner.__dict__, "run": run})
    return plan


def test_a_job_whose_results_are_not_finite_fails_and_writes_no_row(tmp_path: Path) -> None:
    plan = sweep.build_plan(request(tmp_path, algos=("grpo", "drpo"), seeds=(0,)))
    real_run = plan.runner.run

    def run(job, tracker, resume):
        result = real_run(job, tracker, resume)
        if job.estimator == "drpo":
            result.rows[0]["value"] = float("nan")
        return result

    outcome = sweep.run_sweep(_with_run(plan, run))
    assert [(f.job.algo, f.error) for f in outcome.failures] == [
        ("drpo", "ResultsError: the results of drpo seed 0: value nan of drpo seed 0 alpha acc is not a finite number")]
    assert {r["algo"] for r in sweep.read_results(outcome.results_csv)} == {"grpo"}


def test_failed_csv_names_each_failed_job_until_a_resume_finishes_it(tmp_path: Path) -> None:
    plan = sweep.build_plan(request(tmp_path, algos=("grpo", "drpo"), seeds=(0, 1)))
    real_run = plan.runner.run

    def flaky(job, tracker, resume):
        if job.estimator == "drpo" and job.seed == 1:
            raise RuntimeError("out of luck")
        return real_run(job, tracker, resume)

    outcome = sweep.run_sweep(_with_run(plan, flaky))
    failed = tmp_path / "out" / "failed.csv"
    assert outcome.status == "FAILED"
    assert failed.read_text() == "suite,algo,seed,error\nfake_suite,drpo,1,RuntimeError: out of luck\n"
    with open(outcome.results_csv) as fh:  # results.csv keeps its columns: the marker is a file of its own
        assert next(csv.reader(fh)) == list(RESULT_COLUMNS)
    resumed = sweep.run_sweep(sweep.build_plan(request(tmp_path, algos=("grpo", "drpo"), seeds=(0, 1), resume=True)))
    assert resumed.ok and not failed.exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(suite="fake_variants"), "the sweep is of suite fake_suite, this run of fake_variants"),
        (dict(algos=("grpo",)), "it ran --algos drpo,grpo and this run leaves out drpo \\(a resume may add algos, not "
                                "drop any\\)"),
        (dict(seeds=(1,)), "it ran --seeds 0 and this run leaves out 0"),
        (dict(overrides={"lr": "0.3"}), "the resolved config differs \\(lr 0.1 then, 0.3 now\\)"),
    ],
)
def test_resume_refuses_another_suite_fewer_jobs_or_another_config_naming_what_differs(
    changes: dict, message: str, tmp_path: Path
) -> None:
    assert sweep.run_sweep(sweep.build_plan(request(tmp_path, algos=("drpo", "grpo"), seeds=(0,)))).ok
    with pytest.raises(sweep.SweepError, match=f"^--resume: this run differs from the sweep in {tmp_path / 'out'} "
                                               f"\\(.*config.yaml\\): .*{message}"):
        sweep.build_plan(request(tmp_path, **{"algos": ("drpo", "grpo"), "seeds": (0,), "resume": True, **changes}))
    grown = sweep.build_plan(request(tmp_path, algos=("drpo", "grpo", "rloo"), seeds=(0, 1), resume=True))
    assert len(grown.pending) == 4  # a resume may grow the sweep


def test_resume_refuses_other_data(tmp_path: Path, fake_synth: list[tuple]) -> None:
    from tests.runners.local.tiny_data import write_tiny_data

    data = write_tiny_data(tmp_path / "data", n_train=6, n_test=3)
    kw = dict(suite="climb_vision", runner="fake", out=tmp_path / "o", data=data, plugins=(PLUGIN,), seeds=(0,),
              algos=("grpo",))
    assert sweep.run_sweep(sweep.build_plan(sweep.SweepRequest(**kw))).status in ("FINISHED", "FAILED")
    sweep.build_plan(sweep.SweepRequest(**kw, resume=True))  # the same data: fine
    (data / "test.jsonl").write_text((data / "test.jsonl").read_text().replace("test-0", "test-zero"))
    with pytest.raises(sweep.SweepError, match=f"its data \\({data}\\) differ from this run's"):
        sweep.build_plan(sweep.SweepRequest(**kw, resume=True))


def test_resume_refuses_a_results_csv_of_another_suite(tmp_path: Path) -> None:
    assert sweep.run_sweep(sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0,)))).ok
    (tmp_path / "out" / "config.yaml").unlink()
    results = tmp_path / "out" / "results.csv"
    results.write_text(results.read_text().replace("fake_suite,", "climb_ecg,"))
    with pytest.raises(sweep.SweepError, match=f"--resume: {results} holds results of suite climb_ecg, not fake_suite"):
        sweep.build_plan(request(tmp_path, algos=("grpo",), seeds=(0,), resume=True))


def test_labels_that_would_share_a_file_are_refused_at_plan_time(tmp_path: Path) -> None:
    from rlbench_med.algorithms import ESTIMATORS, Estimator, register_estimator

    for name in ("pa+b", "pa_b", "floor_all"):  # plugin estimators (any name the registry takes)
        register_estimator(name)(type(f"P{len(ESTIMATORS)}", (Estimator,), {"description": name}))
    with pytest.raises(sweep.SweepError, match="--algos: 'pa\\+b' and 'pa_b' would share the file name pa_b "
                                               "\\(predictions/pa_b-seed<seed>.jsonl, checkpoints/pa_b-seed<seed>/\\)"):
        sweep.build_plan(request(tmp_path, algos=("pa+b", "pa_b"), seeds=(0,)))
    with pytest.raises(sweep.SweepError, match="'floor_all' and 'floor:all' would share the file name floor_all"):
        sweep.build_plan(sweep.SweepRequest(suite="climb_vision", runner="fake", out=tmp_path / "o",
                                            plugins=(PLUGIN,), algos=("floor_all",), seeds=(0,)))


def test_seed_ranges_are_bounded_before_they_are_expanded() -> None:
    from rlbench_med.runners.sweep.request import MAX_SEEDS

    assert len(sweep.parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    with pytest.raises(ConfigError, match=f"--seeds '0-1000000' asks for 1000001 seeds; a sweep takes at most {MAX_SEEDS}"):
        sweep.parse_seeds("0-1000000")
    with pytest.raises(ConfigError, match="asks for 1002 seeds"):
        sweep.parse_seeds("0-500,1000-1500")
    with pytest.raises(ConfigError, match="range '5-2' ends before it starts"):
        sweep.parse_seeds("5-2")


def test_the_cache_must_be_a_folder_this_process_can_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "afile"))
    with pytest.raises(sweep.SweepError, match=f"^cache {tmp_path / 'afile'} \\(RLBENCH_MED_CACHE, default "
                                               f"~/.cache/rlbench-med\\): {tmp_path / 'afile'} is a file, not a folder; "
                                               "set RLBENCH_MED_CACHE to a folder you can write to"):
        sweep.build_plan(request(tmp_path))
    with tempfile.TemporaryDirectory() as shared:  # a folder every user can look into
        os.chmod(shared, 0o755)
        read_only = Path(shared) / "ro"
        read_only.mkdir(mode=0o555)
        out = Path(shared) / "out"
        out.mkdir()
        out.chmod(0o777)  # (mkdir's mode is cut by the umask)
        monkeypatch.setenv("RLBENCH_MED_CACHE", str(read_only / "cache"))

        def check() -> None:
            with pytest.raises(sweep.SweepError, match=f"^cache {read_only / 'cache'} .*: {read_only} is not writable"):
                sweep.build_plan(request(tmp_path, out=out / "o"))

        _unprivileged(check)
        read_only.chmod(0o755)


def test_an_out_name_longer_than_the_file_system_allows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(sweep.SweepError, match=f"--out {tmp_path / ('x' * 300)}: its part x{{24}}... is 300 bytes long; "
                                               "this file system allows at most 255 per name; give another --out"):
        sweep.build_plan(request(tmp_path, out=tmp_path / ("x" * 300)))
