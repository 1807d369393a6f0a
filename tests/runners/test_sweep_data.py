"""What the sweep does with ``--data``: the plan's data lines, explicit files, the suite's record
selection handed to every job, and drpo_release grouping by dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbench_med.cli import main
from rlbench_med.runners import sweep
from rlbench_med.suites.data import DataSource, load_data
from rlbench_med.typed_config import ConfigError
from tests.suites.release_folder import write_release_folder


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release_folder(tmp_path_factory.mktemp("release") / "climb")


def _plan(tmp_path: Path, data: str | Path, **kw) -> sweep.Plan:
    return sweep.build_plan(sweep.SweepRequest(suite="climb_vision", data=data, out=tmp_path / "out", **kw))


def test_plan_says_what_the_suite_uses_and_sets_aside(tmp_path: Path, release_dir: Path) -> None:
    plan = _plan(tmp_path, release_dir)
    lines = plan.render().splitlines()
    data = lines[lines.index(next(line for line in lines if line.startswith("  data "))):][:5]
    assert data[0] == f"  data       {release_dir} (--data; validated before the first job)"
    assert data[1].strip() == (
        "climb_vision uses 10 train / 0 validation / 7 test records (train/validation/test per domain: cxr 3/0/1, "
        "mammography 1/0/1, dermoscopy 2/0/1, ct 1/0/1, fundus 1/0/1, ultrasound 1/0/1, endoscopic 1/0/1); "
        "validation carved from train: 10% of each task's records")
    assert data[2].strip().startswith("set aside: ecg 1/0/1 (not domains of climb_vision; used by climb_ecg)")
    assert data[3].strip().startswith("set aside: ihm48 1/0/0, los 1/0/0 (not domains of climb_vision; used by mimic_fusion)")
    assert "1 warning(s) (1 classes from answers)" in data[4]


def test_every_job_reads_the_suite_selection(tmp_path: Path, release_dir: Path) -> None:
    plan = _plan(tmp_path, release_dir, algos=("grpo",))
    assert sweep.ensure_data(plan) == release_dir
    source_file = plan.jobs[0].data_dir
    assert source_file.name.startswith("climb_vision-") and source_file.is_file()
    data = load_data(source_file)
    assert "ecg" not in data.domains and data.set_aside["ecg"] == {"train": 1, "validation": 0, "test": 1}


def test_explicit_files_are_a_data_source(tmp_path: Path, release_dir: Path) -> None:
    spec = f"train={release_dir / 'train.jsonl'},test={release_dir / 'test.jsonl'}"
    plan = _plan(tmp_path, spec)
    source = plan.data_source
    assert (source.train, source.test, source.folder, source.suite) == (
        release_dir / "train.jsonl", release_dir / "test.jsonl", None, "climb_vision")
    assert source.suite_domains == DataSource.parse(release_dir).for_suite("climb_vision").suite_domains
    assert plan.data_note.startswith(f"{spec} (--data;")
    with pytest.raises(ConfigError, match="give test=PATH too"):
        _plan(tmp_path, f"train={release_dir / 'train.jsonl'}")


def test_malformed_data_flag_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--suite", "climb_vision", "--data", "train=a.jsonl,dev=b.jsonl", "--dry-run",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlbench-med: error: --data 'train=a.jsonl,dev=b.jsonl'") and "\n" not in err


def test_drpo_release_groups_by_dataset_unless_set(tmp_path: Path, release_dir: Path) -> None:
    plan = _plan(tmp_path, release_dir, algos=("drpo_release", "grpo", "drpo_release:history_window=5"))
    assert [(j.algo, j.config.group_by) for j in plan.jobs if j.algo != "base" and j.seed == 0] == [
        ("drpo_release", "dataset"), ("grpo", "domain"), ("drpo_release:history_window=5", "dataset")
    ]
    assert plan.config.group_by == "domain"
    assert sum("drpo_release groups by dataset (group_by=dataset)" in line for line in plan.render().splitlines()) == 1
    explicit = _plan(tmp_path, release_dir, algos=("drpo_release",), overrides={"group_by": "domain"})
    assert explicit.jobs[-1].config.group_by == "domain" and not explicit.notes
