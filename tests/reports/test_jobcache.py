"""The job cache: a repeated sweep reuses its jobs (results, predictions, MLflow curves) and says so;
anything a job depends on, the code's content included, keys it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rlbench_med.reports.tracking import REUSED_TAG, MLflowSweepTracking, child_runs
from rlbench_med.runners import sweep
from rlbench_med.runners.sweep import jobcache
from tests.reports.conftest import PLUGIN
from tests.reports.test_sweep import fake_synth  # noqa: F401  (fixture)


class Spy:
    """Progress that records which jobs trained and which were reused."""

    def __init__(self) -> None:
        self.trained: list[tuple[str, int]] = []
        self.reused: list[tuple[str, int, str]] = []

    def note(self, message): pass
    def start(self, n): pass
    def job_started(self, job, steps): self.trained.append((job.algo, job.seed))
    def step(self, s, metrics): pass
    def job_finished(self, job, ok, error=""): pass
    def job_reused(self, job, origin): self.reused.append((job.algo, job.seed, origin))
    def stop(self): pass


def request(tmp_path: Path, out: str, **kw) -> sweep.SweepRequest:
    base = dict(suite="fake_suite", runner="fake_cached", out=tmp_path / out, plugins=(PLUGIN,), seeds=(0, 1),
                algos=("drpo", "grpo"))
    base.update(kw)
    return sweep.SweepRequest(**base)


def run(tmp_path: Path, out: str, uri: str | None = None, **kw):
    plan = sweep.build_plan(request(tmp_path, out, **kw))
    spy = Spy()
    tracking = MLflowSweepTracking(uri) if uri else None
    outcome = sweep.run_sweep(plan, tracking, spy)
    return plan, spy, outcome, tracking


def key(row: dict) -> tuple:
    return (row["algo"], row["seed"], row["domain"], row["metric"])


def test_a_repeated_sweep_reuses_every_job_its_predictions_and_curves(tmp_path: Path, tracked: str) -> None:
    first, spy1, out1, track1 = run(tmp_path, "a", tracked)
    assert len(spy1.trained) == 4 and not spy1.reused
    text = sweep.build_plan(request(tmp_path, "b")).render()  # the plan printed before anything runs
    second, spy2, out2, track2 = run(tmp_path, "b", tracked)
    # the plan says so, the runner is not called, the progress says where each job was trained
    assert "= 4 jobs (4 reused from the job cache)" in text
    assert f"drpo seed 1 -> estimator drpo (reused: trained in {first.out_dir} on " in text
    assert spy2.trained == [] and sorted(r[:2] for r in spy2.reused) == [("drpo", 0), ("drpo", 1), ("grpo", 0), ("grpo", 1)]
    assert all(str(first.out_dir) in origin for *_, origin in spy2.reused)
    # the same results rows and predictions, in the new folder
    rows1 = sorted(sweep.read_results(out1.results_csv), key=key)
    rows2 = sorted(sweep.read_results(out2.results_csv), key=key)
    assert rows1 == rows2 and len(rows1) > 0
    for name in ("drpo-seed0.jsonl", "grpo-seed1.jsonl"):
        assert (second.out_dir / "predictions" / name).read_bytes() == (first.out_dir / "predictions" / name).read_bytes()
    # MLflow: each reused child run has the first run's per-step history and final metrics, and says where it came from
    client = MlflowClient(tracked)
    runs1 = {r.info.run_name: r for r in child_runs(tracked, client.get_run(track1.parent_id))}
    runs2 = {r.info.run_name: r for r in child_runs(tracked, client.get_run(track2.parent_id))}
    assert sorted(runs2) == sorted(runs1)
    for name, run2 in runs2.items():
        run1 = runs1[name]
        assert run2.info.status == "FINISHED" and str(first.out_dir) in run2.data.tags[REUSED_TAG]
        assert REUSED_TAG not in run1.data.tags
        for metric in ("train/reward_mean", "train/alpha/reward_mean", "eval/overall/f1"):
            h1 = [(m.step, m.value) for m in client.get_metric_history(run1.info.run_id, metric)]
            h2 = [(m.step, m.value) for m in client.get_metric_history(run2.info.run_id, metric)]
            assert h2 == h1 and h1, metric


def test_no_reuse_trains_every_job_and_replaces_the_entries(tmp_path: Path) -> None:
    run(tmp_path, "a")
    plan, spy, _, _ = run(tmp_path, "b", reuse=False)
    assert len(spy.trained) == 4 and not spy.reused and not plan.reused
    assert "--no-reuse: every job trains" in plan.render()
    origins = [json.loads((p / "entry.json").read_text())["origin"] for p in jobcache.jobs_dir().iterdir()
               if (p / "entry.json").exists()]
    assert len(origins) == 4 and all(str(plan.out_dir) in o for o in origins)
    _, spy, _, _ = run(tmp_path, "c")
    assert not spy.trained and all(str(plan.out_dir) in origin for *_, origin in spy.reused)


def test_another_config_or_seed_trains_again(tmp_path: Path) -> None:
    run(tmp_path, "a")
    _, spy, _, _ = run(tmp_path, "b", overrides={"lr": "0.2"})
    assert len(spy.trained) == 4 and not spy.reused
    _, spy, _, _ = run(tmp_path, "c", seeds=(1, 2))
    assert spy.trained == [("drpo", 2), ("grpo", 2)] and sorted(r[:2] for r in spy.reused) == [("drpo", 1), ("grpo", 1)]


def test_a_runner_without_identity_is_never_reused(tmp_path: Path) -> None:
    run(tmp_path, "a", runner="fake")
    plan, spy, _, _ = run(tmp_path, "b", runner="fake")
    assert len(spy.trained) == 4 and not plan.reused
    assert "not used: the fake runner's jobs are never reused" in plan.render()
    assert not jobcache.jobs_dir().exists() or not any(p.name != "locks" for p in jobcache.jobs_dir().iterdir())


def test_a_damaged_entry_is_named_and_its_job_trains_again(tmp_path: Path) -> None:
    first, *_ = run(tmp_path, "a")
    entries = {json.loads((p / "entry.json").read_text())["rows"][0]["algo"] + str(
        json.loads((p / "entry.json").read_text())["rows"][0]["seed"]): p
        for p in jobcache.jobs_dir().iterdir() if (p / "entry.json").exists()}
    (entries["grpo1"] / "predictions" / "grpo-seed1.jsonl").unlink()
    (entries["drpo0"] / "entry.json").write_text("{not json")
    plan, spy, outcome, _ = run(tmp_path, "b")
    notes = [line for line in plan.render().splitlines() if "is damaged" in line]
    assert len(notes) == 2 and any("predictions/grpo-seed1.jsonl is missing" in n for n in notes)
    assert sorted(spy.trained) == [("drpo", 0), ("grpo", 1)] and len(spy.reused) == 2
    assert outcome.ok
    # trained again, the entries are whole again
    _, spy, _, _ = run(tmp_path, "c")
    assert not spy.trained


def test_jobs_of_a_resumed_sweep_are_not_stored(tmp_path: Path) -> None:
    run(tmp_path, "a", algos=("drpo",))
    before = {p.name for p in jobcache.jobs_dir().iterdir()}
    plan, spy, _, _ = run(tmp_path, "a", algos=("drpo", "grpo"), resume=True)
    assert sorted(spy.trained) == [("grpo", 0), ("grpo", 1)]
    assert "jobs of a --resume sweep are not stored" in plan.render()
    assert {p.name for p in jobcache.jobs_dir().iterdir()} == before


def test_the_key_covers_the_data(tmp_path: Path, fake_synth) -> None:  # noqa: F811
    plan = sweep.build_plan(request(tmp_path, "a", suite="climb_vision", seeds=(0,), algos=("grpo",)))
    sweep.ensure_data(plan)
    job = plan.jobs[0]
    k1 = jobcache.job_key(plan, job)
    assert k1 is not None and k1.parts["data"]
    with open(plan.data_dir / "test.jsonl", "a") as fh:
        fh.write('{"problem": "x", "answer": "y"}\n')
    k2 = jobcache.job_key(plan, job)
    assert k2.parts["data"] != k1.parts["data"] and k2.digest != k1.digest
    assert k2.parts["identity"] == {"fake": "v1"} and k2.parts["seed"] == 0 and k2.parts["estimator"] == "grpo"
    assert str(Path(PLUGIN).resolve()) in k2.parts["code"]["files"]


def _tree(root: Path) -> Path:
    (root / "pkg" / "reports").mkdir(parents=True)
    (root / "pkg" / "algo.py").write_text("def f():\n    return 1\n")
    (root / "pkg" / "reports" / "render.py").write_text("X = 1\n")
    return root / "pkg"


def test_the_code_version_is_the_content_so_an_uncommitted_edit_changes_it(tmp_path: Path) -> None:
    pkg = _tree(tmp_path)
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is needed to show that the commit id would not change")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run([git, *args], cwd=tmp_path, check=True)
    head = subprocess.run([git, "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout
    before = jobcache.tree_digest(str(pkg), ("reports",))
    (pkg / "algo.py").write_text("def f():\n    return 2\n")  # an edit, not committed
    assert subprocess.run([git, "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout == head
    jobcache.tree_digest.cache_clear()
    assert jobcache.tree_digest(str(pkg), ("reports",)) != before


def test_the_code_version_leaves_out_what_only_reads_results_and_byte_code(tmp_path: Path) -> None:
    pkg = _tree(tmp_path)
    before = jobcache.tree_digest(str(pkg), ("reports",))
    (pkg / "reports" / "render.py").write_text("X = 2\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "algo.cpython-311.pyc").write_bytes(b"\0")
    jobcache.tree_digest.cache_clear()
    assert jobcache.tree_digest(str(pkg), ("reports",)) == before
    (pkg / "new_module.py").write_text("")
    jobcache.tree_digest.cache_clear()
    assert jobcache.tree_digest(str(pkg), ("reports",)) != before


def test_a_plugin_file_is_part_of_the_code_version(tmp_path: Path) -> None:
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("A = 1\n")
    v1 = jobcache.code_version([str(plugin)])
    plugin.write_text("A = 2\n")
    v2 = jobcache.code_version([str(plugin)])
    assert v1["files"] != v2["files"] and v1["package"] == v2["package"]
    assert set(v1["libraries"]) == set(jobcache.LIBRARIES)


def _entries() -> dict[str, Path]:
    """The job cache's entries by ``<algo><seed>``."""
    out = {}
    for path in jobcache.jobs_dir().iterdir():
        if (path / "entry.json").exists():
            row = json.loads((path / "entry.json").read_text())["rows"][0]
            out[f"{row['algo']}{row['seed']}"] = path
    return out


def test_an_entry_edited_after_it_was_written_is_named_and_its_job_trains_again(tmp_path: Path) -> None:
    first, _, out1, _ = run(tmp_path, "a")
    entries = _entries()
    doc = json.loads((entries["drpo0"] / "entry.json").read_text())
    for row in doc["rows"]:
        row["value"] = 0.999  # still valid JSON, every column there: fabricated results
    (entries["drpo0"] / "entry.json").write_text(json.dumps(doc))
    predictions = entries["grpo1"] / "predictions" / "grpo-seed1.jsonl"
    predictions.write_text(predictions.read_text().replace('"predicted": ["x"]', '"predicted": ["y"]'))
    plan, spy, outcome, _ = run(tmp_path, "b")
    notes = [line for line in plan.render().splitlines() if "is damaged" in line]
    assert len(notes) == 2
    assert any("(entry.json does not match its checksum (it was changed after the job wrote it)); drpo seed 0 "
               "trains again" in n for n in notes)
    assert any("(predictions/grpo-seed1.jsonl does not match its checksum" in n for n in notes)
    assert sorted(spy.trained) == [("drpo", 0), ("grpo", 1)]
    assert sorted(sweep.read_results(outcome.results_csv), key=key) == sorted(sweep.read_results(out1.results_csv),
                                                                              key=key)


@pytest.mark.parametrize("library", ["scikit-learn", "pillow", "opencv-python-headless", "wfdb"])
def test_the_key_covers_every_library_a_result_depends_on(library: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    plan = sweep.build_plan(request(tmp_path, "a", seeds=(0,), algos=("grpo",)))
    before = jobcache.job_key(plan, plan.jobs[0]).digest
    real = jobcache.metadata.version
    monkeypatch.setattr(jobcache.metadata, "version", lambda name: "0.0-other" if name == library else real(name))
    assert jobcache.job_key(plan, plan.jobs[0]).digest != before
