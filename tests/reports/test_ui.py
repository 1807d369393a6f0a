"""`rlbench-med ui`'s app: MLflow's server, its landing page opening experiments on their training runs."""

from __future__ import annotations

from importlib.metadata import entry_points

from rlbench_med.reports.ui import APP_NAME, DEFAULT_WORKFLOW, TRAINING, WORKFLOW_KEY, create_app, landing_page


def test_the_app_is_registered_for_mlflow_server() -> None:
    apps = {e.name: e.value for e in entry_points(group="mlflow.app")}
    assert apps.get(APP_NAME) == "rlbench_med.reports.ui:create_app"


def test_the_landing_page_sets_the_training_workflow_only_when_none_is_chosen() -> None:
    page = landing_page("<!doctype html><html><head><meta charset='utf-8'></head><body></body></html>")
    assert page.index(DEFAULT_WORKFLOW) < page.index("<meta")  # before MLflow's own scripts
    assert f"if(!localStorage.getItem('{WORKFLOW_KEY}'))" in DEFAULT_WORKFLOW
    assert f"localStorage.setItem('{WORKFLOW_KEY}','\"{TRAINING}\"')" in DEFAULT_WORKFLOW


def test_the_server_serves_mlflows_index_with_the_script_and_everything_else_unchanged() -> None:
    from pathlib import Path

    from mlflow.server import app as flask_app

    create_app()
    client = flask_app.test_client()
    index = client.get("/")
    original = (Path(flask_app.static_folder) / "index.html").read_text()
    assert index.status_code == 200 and DEFAULT_WORKFLOW not in original
    assert index.get_data(as_text=True) == original.replace("<head>", "<head>" + DEFAULT_WORKFLOW, 1)
    assert DEFAULT_WORKFLOW not in client.get("/health").get_data(as_text=True)


def test_rlbench_med_ui_starts_without_hints_for_flags_it_lacks_or_deprecation_warnings(tmp_path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "RLBENCH_MED_CACHE": str(tmp_path / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "rlbench_med.cli", "ui", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not answer"
                time.sleep(1)
        assert DEFAULT_WORKFLOW in page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert "--host 0.0.0.0" not in output and "Deprecat" not in output and "Registry store URI" not in output
    assert f"127.0.0.1:{port}" in output
