"""``scripts/openrlhf/gpu_smoke.py``: says what it could not run and fails; prints only checks that passed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "openrlhf" / "gpu_smoke.py"


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_what_it_could_not_run_and_exits_1(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the script runs the real check instead")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("could not run the OpenRLHF GPU check; this machine lacks: ")
    assert "a CUDA GPU visible to PyTorch" in lines[0]
    assert [line for line in lines if line.startswith("verified")] == ["verified: nothing"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["checks"] == [] and "a CUDA GPU visible to PyTorch" in report["could_not_run"]


def test_a_verified_line_needs_what_its_check_reads(script, tmp_path):
    run = tmp_path / "run"
    assert not any(ok for _, ok in script.training_checks(run, 1))
    assert [ok for _, ok in script.training_checks(run, 0)] == [True, False, False, False, False, False]

    job = run / "openrlhf" / f"{script.ALGO}-seed0"
    (job / "ckpt" / "_actor" / "global_step1").mkdir(parents=True)
    (job / "ckpt" / "_actor" / "global_step2").mkdir()
    first = {"train/length_reward": 0.01, "openrlhf/actor_grad_norm": 0.0}  # a zero gradient is not an update
    (job / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "metrics": first}) + "\n" for s in (1, 2, 2)))
    (run / "results.csv").write_text(f"suite,algo,seed,domain,metric,value,n\nclimb_vision,{script.ALGO},0,cxr,acc,0.5,4\n")
    (run / "report.html").write_text("<html></html>")
    assert [ok for _, ok in script.training_checks(run, 0)] == [True, True, True, False, True, True]

    (job / "launch.log").write_text("before\n" + "checkpoint_states: {'global_step': 1}\n")
    assert [ok for _, ok in script.resume_checks(run, 0, len("before\n"))] == [False, True]  # no step 2 rerun yet
    with (job / "metrics.jsonl").open("a") as fh:
        fh.write("".join(json.dumps({"step": s, "metrics": {}}) + "\n" for s in (2, 2)))
    assert [ok for _, ok in script.resume_checks(run, 0, len("before\n"))] == [True, True]
    assert [ok for _, ok in script.resume_checks(run, 0, 1000)] == [True, False]  # the log line predates the resume
