"""Fixtures of the sweep/report tests: the fake plugin and an isolated cache (the MLflow store is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbench_med.registry import load_plugin

PLUGIN = str(Path(__file__).with_name("fake_plugin.py"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    load_plugin(PLUGIN)  # unregistered again by tests/conftest.py after each test


