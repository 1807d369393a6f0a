"""``benchmarks/openrlhf_gpu_check.py`` (run by hand on a GPU machine) also runs end to end on the CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "openrlhf_gpu_check.py"


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("openrlhf_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "report.json"
    assert module.main(["--device", "cpu", "--steps", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reward"]["ok"] and report["reward"]["max_abs_diff_vs_local_reward"] < 1e-6
    assert all(entry["ok"] for entry in report["hook"].values()), report["hook"]
    step = report["step"]["steps"][0]
    assert report["step"]["ok"] and step["params_changed"] == step["params_total"] and step["loss_finite"]
    assert step["advantage_abs_mean"] > 0 and report["not_run"]
