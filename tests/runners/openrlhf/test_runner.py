"""``run`` around a stand-in launch: export, run spec, metrics streaming, predictions -> results rows.

``run`` driving the real launch on the CPU is ``test_real_run.py`` (minutes); here, for the runner's
own cases in seconds (a failing launch, a resume without a checkpoint, the export), ``launch_command``
is replaced by a small script that behaves like the trainer towards the runner (appends metrics
lines, writes the predictions file of the exported test prompts). Also the plan-time refusals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rlbench_med.runners.base import Job, MemoryTracker
from rlbench_med.runners.openrlhf import OpenRLHFConfig, runner
from rlbench_med.runners.openrlhf.data import read_prompts
from rlbench_med.runners.openrlhf.flags import LaunchPaths
from rlbench_med.runners.openrlhf.launch import split_argv
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.runners.openrlhf.trainer import append_metrics, prediction_record, status_metrics
from rlbench_med.suites.metrics import compute_metrics
from rlbench_med.typed_config import ConfigError

FAKE_TRAINER = r'''
import json, sys
if sys.argv[2] != "0":
    sys.exit(int(sys.argv[2]))
from pathlib import Path
from rlbench_med.runners.openrlhf.data import read_prompts
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.runners.openrlhf.trainer import append_metrics, prediction_record

spec = RunSpec.read(sys.argv[1])
for step in (1, 2):
    append_metrics(Path(spec.metrics_path), step, {"train/reward_mean": 0.1 * step, "time/advantage_s": 0.01})
records = []
for i, item in enumerate(read_prompts(Path(spec.eval_prompts))):
    answer = ", ".join(item.label.answer) if i % 2 == 0 else item.label.classes[-1]
    records.append(prediction_record(item.label, "\\boxed{" + answer + "}"))
Path(spec.predictions_path).parent.mkdir(parents=True, exist_ok=True)
Path(spec.predictions_path).write_text("".join(json.dumps(r) + "\n" for r in records))
'''


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlbench_med.suites.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate("climb_vision", root, seed=0, profile="quick",
             data_overrides={"min_domain_train": 2, "min_dataset_train": 1, "min_dataset_test": 1, "image_size": 16})
    return root


def make_job(data_dir: Path, out: Path, **config: object) -> Job:
    cfg = OpenRLHFConfig(model="/models/vlm", vlm=True, **config)  # type: ignore[arg-type]
    return Job(suite="climb_vision", algo="drpo", estimator="drpo", seed=1, config=cfg, data_dir=data_dir, out_dir=out)


@pytest.fixture
def fake_launch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    exit_code = {"value": 0}
    monkeypatch.setattr(runner, "_require_runtime", lambda: None)
    monkeypatch.setattr(runner, "local_gpus", lambda: 8)  # the default plan's 8 GPUs, colocated
    monkeypatch.setattr(runner, "launch_command",
                        lambda ctx: [sys.executable, str(script), str(ctx.paths.spec), str(exit_code["value"])])
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    return exit_code


def test_run_exports_launches_streams_metrics_and_scores_predictions(data_dir, tmp_path, fake_launch):
    job = make_job(data_dir, tmp_path / "out", eval_max_samples=20)
    tracker = MemoryTracker()
    result = runner.run(job, tracker, resume=False)

    paths = LaunchPaths.for_job(job)
    spec = RunSpec.read(paths.spec)
    assert spec.estimator == "drpo" and spec.n_samples_per_prompt == 8
    assert spec.domain_names == ("cxr", "mammography", "dermoscopy", "ct", "fundus", "ultrasound", "mri", "pathology")
    assert len(read_prompts(paths.eval_prompts)) == 20
    assert tracker.history("train/reward_mean") == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
    assert tracker.params["estimator"] == "drpo" and tracker.params["openrlhf.model"] == "/models/vlm"
    assert "rlbench_med" in tracker.params["launch_command"] or "fake_trainer" in tracker.params["launch_command"]

    records = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    expected = compute_metrics(records)
    assert [(r["domain"], r["metric"], r["value"], r["n"]) for r in result.rows] == [
        (r["domain"], r["metric"], float(r["value"]), int(r["n"])) for r in expected
    ]
    assert {r["suite"] for r in result.rows} == {"climb_vision"} and {r["seed"] for r in result.rows} == {1}
    assert result.predictions == {"drpo": paths.predictions}
    assert result.timings == {"advantage_s": pytest.approx(0.02), "steps": 2.0}
    assert paths.predictions in tracker.artifacts


def test_resume_without_a_checkpoint_starts_fresh_metrics(data_dir, tmp_path, fake_launch):
    job = make_job(data_dir, tmp_path / "out", eval_max_samples=4)
    paths = LaunchPaths.for_job(job)
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    append_metrics(paths.metrics, 7, {"train/reward_mean": 0.9, "time/advantage_s": 5.0})  # a killed earlier run
    tracker = MemoryTracker()
    result = runner.run(job, tracker, resume=True)  # --resume, but no ckpt/_actor to resume from
    assert tracker.history("train/reward_mean") == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
    assert result.timings == {"advantage_s": pytest.approx(0.02), "steps": 2.0}


def test_resume_from_a_checkpoint_keeps_the_killed_runs_metrics_lines(data_dir, tmp_path, fake_launch):
    job = make_job(data_dir, tmp_path / "out", eval_max_samples=4)
    paths = LaunchPaths.for_job(job)
    (paths.ckpt / "_actor" / "global_step1").mkdir(parents=True)
    (paths.ckpt / "_actor" / "latest").write_text("global_step1")  # killed after its step-1 save
    append_metrics(paths.metrics, 1, {"train/reward_mean": 0.5, "time/advantage_s": 1.0})
    tracker = MemoryTracker()
    runner.run(job, tracker, resume=True)
    steps = [json.loads(line)["step"] for line in paths.metrics.read_text().splitlines()]
    assert steps == [1, 1, 2]  # the killed run's line, then what the resumed launch appended
    assert tracker.history("train/reward_mean")[0] == (1, pytest.approx(0.5))


def test_failed_launch_names_the_log(data_dir, tmp_path, fake_launch):
    fake_launch["value"] = 3
    with pytest.raises(RuntimeError, match=r"exited with 3; see .*launch\.log"):
        runner.run(make_job(data_dir, tmp_path / "out"), MemoryTracker(), resume=False)


def test_run_needs_a_model_and_the_gpu_packages(data_dir, tmp_path, monkeypatch):
    job = make_job(data_dir, tmp_path / "out")
    no_model = Job(**{**job.__dict__, "config": OpenRLHFConfig(vlm=True)})
    with pytest.raises(ConfigError, match="--set model="):
        runner.run(no_model, MemoryTracker(), resume=False)
    monkeypatch.setattr(runner, "RUNTIME_PACKAGES", ("rlbench_med_no_such_package",))
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[openrlhf\]"'):
        runner.run(job, MemoryTracker(), resume=False)


def test_too_many_images_per_prompt_is_reported(data_dir, tmp_path):
    job = make_job(data_dir, tmp_path / "out", max_images_per_prompt=0)
    with pytest.raises(ConfigError, match="max_images_per_prompt=1"):
        runner.export_job_data(job, LaunchPaths.for_job(job), vlm=True)


def test_every_exported_label_carries_the_reward_settings(data_dir, tmp_path):
    settings = {"reward": "paper", "reward_weights": "0.2,0.6,0.1,0.1", "iou_reduce": "mean", "accuracy_reward": "exact"}
    job = make_job(data_dir, tmp_path / "out", **settings)
    paths = LaunchPaths.for_job(job)
    runner.export_job_data(job, paths, vlm=True)
    for path in (paths.train_prompts, paths.eval_prompts):
        labels = [item.label for item in read_prompts(path)]
        assert labels and {(lab.reward, lab.reward_weights, lab.iou_reduce, lab.accuracy_reward) for lab in labels} == {
            tuple(settings.values())}


def test_video_records_of_a_release_folder_are_exported_as_frames(tmp_path):
    from tests.suites.release_folder import write_release_folder

    release = write_release_folder(tmp_path / "release")
    job = make_job(release, tmp_path / "out", time_series="drop")
    paths = LaunchPaths.for_job(job)
    with pytest.raises(ConfigError, match=r"has 2 images \(video frames included\); --set max_images_per_prompt=2"):
        runner.export_job_data(job, paths, vlm=True)
    job = make_job(release, tmp_path / "out", time_series="drop", max_images_per_prompt=3, video_frames=3)
    exported = runner.export_job_data(job, paths, vlm=True)
    assert exported["train"]["video_frames"] == exported["test"]["video_frames"] == 3
    ct = [item for item in read_prompts(paths.train_prompts) if item.label.dataset == "KiTS23"]
    assert len(ct) == 1 and len(ct[0].images) == 3 and all(Path(p).is_file() for p in ct[0].images)


def test_dataset_grouping_lists_every_dataset(data_dir, tmp_path):
    job = make_job(data_dir, tmp_path / "out", group_by="dataset")
    names = runner.export_job_data(job, LaunchPaths.for_job(job), vlm=False)["domain_names"]
    labels = [p.label for p in read_prompts(LaunchPaths.for_job(job).train_prompts)]
    assert set(names) >= {label.dataset for label in labels} and list(names) == sorted(names)


def test_trainer_helpers(tmp_path, samples):
    from rlbench_med.runners.openrlhf.data import PromptLabel

    label = PromptLabel.from_sample(samples[1])  # has a mask
    boxes = '```json\n[{"label": "x", "bbox_2d": [10, 8, 30, 20]}]\n```'
    record = prediction_record(label, "\\boxed{" + label.answer[0] + "}\n" + boxes)
    assert record["predicted"] == list(label.answer) and record["iou"] == pytest.approx(1.0)
    assert "iou" not in prediction_record(PromptLabel.from_sample(samples[0]), "\\boxed{A}")
    status = {"reward/accuracy": 0.5, "policy_loss": 1.0, "timing/ppo_train": 2.0, "flag": True, "text": "x"}
    assert status_metrics(status) == {
        "train/accuracy_reward": 0.5, "openrlhf/policy_loss": 1.0, "time/ppo_train_s": 2.0}
    path = tmp_path / "m.jsonl"
    append_metrics(path, 4, {"a": 1.0})
    assert json.loads(path.read_text()) == {"step": 4, "metrics": {"a": 1.0}}
    assert split_argv(["--x", "1", "--rlbench.spec", "s.json", "--y"]) == ("s.json", ["--x", "1", "--y"])
    assert split_argv(["--rlbench.spec=t.json"]) == ("t.json", [])
    with pytest.raises(SystemExit, match="missing --rlbench.spec"):
        split_argv(["--x"])


def test_a_machine_without_the_gpus_is_refused_before_anything_is_launched(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_require_runtime", lambda: None)
    monkeypatch.setattr(runner, "local_gpus", lambda: 7)
    job = make_job(data_dir, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"the plan needs 8 GPU\(s\) \(actor, reference and vLLM engines colocated "
                                          r"on 8\) but the Ray cluster the launch would start on .* has 7;.*device=cpu"):
        runner.run(job, MemoryTracker(), resume=False)
    assert not LaunchPaths.for_job(job).log.exists()
    separate = make_job(data_dir, tmp_path / "out2", colocate=False, gpus_per_node=4, vllm_num_engines=3)
    with pytest.raises(ConfigError, match=r"needs 11 GPU\(s\) \(4 actor \+ 4 reference \+ 3 vLLM\)"):
        runner.preflight(separate)
    monkeypatch.setattr(runner, "local_gpus", lambda: 0)
    runner.preflight(make_job(data_dir, tmp_path / "out3", device="cpu", colocate=False, gpus_per_node=1,
                              vllm_num_engines=1))  # logical GPUs: nothing to count


def test_resume_needs_a_complete_checkpoint_else_starts_from_scratch_saying_so(data_dir, tmp_path, capsys):
    job = make_job(data_dir, tmp_path / "out")
    actor = LaunchPaths.for_job(job).ckpt / "_actor"
    assert not runner.resumable(job) and capsys.readouterr().err == ""  # nothing saved yet: a fresh start
    (actor / "global_step1").mkdir(parents=True)  # stopped during its first save: DeepSpeed wrote no 'latest'
    assert not runner.resumable(job)
    err = capsys.readouterr().err
    assert f"drpo seed 1: {actor} holds no complete checkpoint" in err and "training from scratch" in err
    (actor / "latest").write_text("global_step1")
    assert runner.resumable(job)


def test_restore_states_starts_fresh_without_a_checkpoint_and_restores_the_estimator(capsys):
    from rlbench_med.algorithms import make_estimator
    from rlbench_med.runners.openrlhf.trainer import ESTIMATOR_STATE_KEY, FRESH_STATES, restore_states

    estimator = make_estimator("drpo_release")
    assert restore_states({}, estimator, "/runs/ckpt") == FRESH_STATES  # OpenRLHF loaded nothing: no KeyError
    assert "no complete checkpoint in /runs/ckpt/_actor" in capsys.readouterr().out
    saved = {"step": 3}  # what the estimator's state_dict() wrote at step 3
    states = {"episode": 0, "global_step": 3, "total_consumed_prompts": 6, "data_loader_state_dict": {},
              ESTIMATOR_STATE_KEY: saved}
    seen = []
    estimator.load_state_dict = seen.append
    assert restore_states(states, estimator, "/runs/ckpt") is states and seen == [saved]
    del states[ESTIMATOR_STATE_KEY]
    with pytest.raises(RuntimeError, match=r"/runs/ckpt has no estimator state \(rlbench_estimator_state\)"):
        restore_states(states, estimator, "/runs/ckpt")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ([], "model: the openrlhf runner trains a Hugging Face model; --set model=/path/to/model"),
        (["--set", "model=/models/m"], "the openrlhf runner needs rlbench_med_no_such_package on this machine"),
        (["--set", "model=/models/m", "--set", "gpus_per_node=2", "--set", "vllm_num_engines=2"],
         "the plan needs 2 GPU(s) (actor, reference and vLLM engines colocated on 2) but the Ray cluster"),
    ],
)
def test_a_run_that_cannot_start_exits_2_before_anything_is_written(sets, message, tmp_path, monkeypatch, capsys):
    from rlbench_med.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(runner, "local_gpus", lambda: 0)
    if "model=/models/m" in sets and "gpus_per_node=2" not in sets:
        monkeypatch.setattr(runner, "RUNTIME_PACKAGES", ("rlbench_med_no_such_package",))
    else:
        monkeypatch.setattr(runner, "_require_runtime", lambda: None)
    code = main(["run", "--suite", "climb_vision", "--algos", "grpo", "--runner", "openrlhf", "--set", "vlm=true",
                 *sets, "--out", str(tmp_path / "out")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no MLflow store, no data generated
