"""`llmops mlflow`: the MLflow UI on the platform's own tracking store, opening on its runs.

MLflow 3.17's UI shows every experiment in its GenAI view unless told otherwise (a toggle kept
in the browser, default `genai`), where an experiment opens on an empty traces overview; the
experiment's `mlflow.experimentKind` tag does not change that while the toggle exists. The URL's
`workflowType=machine_learning` does: the page opens on the experiment's runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from tasks.clients.tracking import EXPERIMENT, RUNS_VIEW
from tasks.shared.settings import Settings

REMOTE_SCHEMES = ("http", "https", "databricks")


def is_remote(tracking_uri: str) -> bool:
    """A tracking server (which has its own UI), rather than a store `mlflow ui` can open."""
    return urlparse(tracking_uri).scheme in REMOTE_SCHEMES


def experiment_url(base_url: str, experiment_id: str | None) -> str:
    """The experiment's page in the runs view (the UI's home page when there is none yet)."""
    base = base_url.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/?{RUNS_VIEW}"
    return f"{base}/#/experiments/{experiment_id}/runs?{RUNS_VIEW}"


def ui_command(settings: Settings, host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow ui` on the settings' store. Embedded, artifacts live in the folder under `home`
    that the platform's experiments name (file URIs the server reads directly); the same folder
    is where experiments created from the UI put theirs."""
    found = Path(sys.executable).parent / "mlflow"
    binary = str(found) if found.exists() else shutil.which("mlflow") or "mlflow"
    command = [binary, "ui", "--backend-store-uri", settings.tracking_uri]
    if not settings.mlflow_tracking_uri:
        artifacts = settings.artifact_location
        command += ["--default-artifact-root", artifacts, "--artifacts-destination", artifacts]
    return [*command, "--host", host, "--port", str(port), "--workers", str(workers)]


def finetune_experiment(settings: Settings) -> str | None:
    """The id of the experiment the fine-tuning runs go to (None before the first run)."""
    import mlflow

    found = mlflow.MlflowClient(settings.tracking_uri).get_experiment_by_name(EXPERIMENT)
    return found.experiment_id if found else None


def open_ui(settings: Settings, host: str, port: int) -> None:
    """Print where the fine-tuning runs are, then become `mlflow ui` (embedded store) or stop
    there (a tracking server in settings serves its own UI)."""
    if not settings.mlflow_tracking_uri:
        settings.home.mkdir(parents=True, exist_ok=True)
    uri = settings.tracking_uri
    experiment = finetune_experiment(settings)
    if is_remote(uri):
        print("the tracking server in settings (LLMOPS_MLFLOW_TRACKING_URI) serves its own UI:")
        print(f"  fine-tuning runs: {experiment_url(uri, experiment)}")
        return
    shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"MLflow UI on {uri}")
    print(f"  fine-tuning runs: {experiment_url(f'http://{shown}:{port}', experiment)}")
    if experiment is None:
        print(f"  (no `{EXPERIMENT}` experiment yet: run the nightly or finetune_model first)")
    sys.stdout.flush()
    command = ui_command(settings, host, port)
    os.execv(command[0], command)
