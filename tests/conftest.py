"""Fixtures shared by every test: registries restored after each test, one MLflow store."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

from rlbench_med.algorithms import ESTIMATORS
from rlbench_med.runners.base import RUNNERS
from rlbench_med.suites import SUITES
from rlbench_med.suites.rewards import REWARD_FUNCTIONS


@pytest.fixture(autouse=True)
def _restore_registries() -> Iterator[None]:
    """Names a test or a plugin registers must not leak into other tests."""
    registries = (ESTIMATORS, SUITES, RUNNERS, REWARD_FUNCTIONS)
    before = [set(reg.names()) for reg in registries]
    plugins_before = {m for m in sys.modules if m.startswith("rlbench_med_plugin_")}
    yield
    for reg, names in zip(registries, before):
        for name in set(reg.names()) - names:
            reg.unregister(name)
    for module in {m for m in sys.modules if m.startswith("rlbench_med_plugin_")} - plugins_before:
        del sys.modules[module]


@pytest.fixture(scope="session", autouse=True)
def _ray_sessions_in_a_folder_of_the_test_run() -> Iterator[None]:
    """Ray keeps its sessions under ``$RAY_TMPDIR/ray`` (default ``/tmp/ray``): the tests' go into a folder of
    their own, removed when the session ends. Short, in /tmp: Ray's socket paths must fit in 107 characters."""
    folder = tempfile.mkdtemp(prefix="rlbray-")
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    yield
    if previous is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = previous
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the session (creating the schema takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracked(mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLFLOW_TRACKING_URI at the session's store for one test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return mlflow_uri


_SESSION: list[pytest.Session] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End a session that ran Ray in this process without the interpreter's teardown.

    ``ray.shutdown()`` leaves Ray's C++ threads (its core worker's io thread, gRPC's pollers and
    timers) running; they have crashed the teardown of this process with a SIGSEGV in libstdc++
    after every test had passed and the summary was printed (seen once in five full runs, exit
    139). By this hook pytest has reported everything and written its files, so the process exits
    with pytest's own status; nothing of the tests' verdict is changed.
    """
    if "ray._raylet" in sys.modules and _SESSION:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(_SESSION[-1].exitstatus))
