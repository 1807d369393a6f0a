"""``rlbench-med ui``: MLflow's own tracking server, whose UI opens experiments on their training runs.

MLflow 3's UI keeps one global "workflow type" (GenAI, or model training) in the browser's local
storage (``mlflow.workflowType_v1``) and, until the user switches it, opens every experiment in
its GenAI view ("Traces 0", child runs under "Evaluation runs"); MLflow 3.17's UI derives an
experiment's kind from that setting, not from the experiment's ``mlflow.experimentKind`` tag
(which the sweep sets all the same, for the UIs that read it). This app is MLflow's unchanged
but for its landing page: ``index.html`` is served with :data:`DEFAULT_WORKFLOW`, a script that
sets the workflow type to model training when the browser has no choice stored yet, so a user's
own switch is kept. It is the ``mlflow.app`` entry point ``rlbench-med`` (pyproject.toml), run
as ``mlflow server --app-name rlbench-med``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Where MLflow's UI keeps the workflow type, and the value that opens experiments on their runs.
WORKFLOW_KEY = "mlflow.workflowType_v1"
TRAINING = "machine_learning"
DEFAULT_WORKFLOW = (f"<script>try{{if(!localStorage.getItem('{WORKFLOW_KEY}'))"
                    f"localStorage.setItem('{WORKFLOW_KEY}','\"{TRAINING}\"')}}catch(e){{}}</script>")
APP_NAME = "rlbench-med"


def landing_page(index_html: str) -> str:
    """MLflow's ``index.html`` with :data:`DEFAULT_WORKFLOW` run first (at the top of ``<head>``)."""
    return index_html.replace("<head>", "<head>" + DEFAULT_WORKFLOW, 1)


def create_app() -> Any:
    """MLflow's server app (its ASGI app where MLflow has one, else its Flask app) with the landing
    page of :func:`landing_page`."""
    from flask import Response, request
    from mlflow.server import app as flask_app

    index = Path(flask_app.static_folder or "") / "index.html"

    @flask_app.before_request
    def _landing() -> Response | None:
        # `rlbench-med ui` serves at the root (it passes no --static-prefix)
        if request.path == "/" and index.is_file():
            return Response(landing_page(index.read_text()), mimetype="text/html")
        return None

    try:
        from mlflow.server.fastapi_app import app
    except ImportError:  # MLflow 2: the Flask app is the server
        return flask_app
    return app
