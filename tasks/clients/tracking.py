"""MLflow: a SQLite file and a local artifact folder, or the tracking server in settings."""

from __future__ import annotations

import mlflow

from tasks.settings import Settings

EXPERIMENT = "finetune"


def connect(settings: Settings) -> mlflow.MlflowClient:
    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri)


def use_experiment(settings: Settings, name: str) -> str:
    """The experiment's id, created with its artifacts under `home` on first use."""
    connect(settings)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # A tracking server keeps artifacts where it is configured to; embedded, under `home`.
    location = None if settings.mlflow_tracking_uri else settings.artifact_location
    return mlflow.create_experiment(name, artifact_location=location)


def start_run(
    settings: Settings, run_name: str, experiment: str = EXPERIMENT, nested: bool = False
) -> mlflow.ActiveRun:
    experiment_id = use_experiment(settings, experiment)
    return mlflow.start_run(run_name=run_name, experiment_id=experiment_id, nested=nested)


def latest_run_with(client: mlflow.MlflowClient, experiment: str, tag: str) -> str | None:
    """The newest finished run of `experiment` that carries `tag` (a stage's own runs do; their
    nested per-candidate children do not)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        "attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    return next((r.info.run_id for r in runs if tag in r.data.tags), None)
