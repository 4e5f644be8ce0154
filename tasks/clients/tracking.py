"""MLflow: a SQLite file and a local artifact folder, or the tracking server in settings."""

from __future__ import annotations

import mlflow

from tasks.settings import Settings

EXPERIMENT = "finetune"


def start_run(settings: Settings, run_name: str) -> mlflow.ActiveRun:
    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=settings.artifact_location)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow.start_run(run_name=run_name)
