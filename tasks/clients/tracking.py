"""MLflow: a SQLite file and a local artifact folder, or the tracking server in settings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.entities import Run

from tasks.shared.manifest import MANIFEST, folder_digest
from tasks.shared.model_files import copy_verified
from tasks.shared.settings import Settings

EXPERIMENT = "finetune"
BASE_MODEL_ARTIFACT = "base_model"  # bases built here (scratch) travel with their run


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


def run_base_model(run: Run, settings: Settings) -> Path:
    """The base model a fine-tuning run started from, on this machine: the folder its tags name
    when it is here with the recorded digest, else the copy logged with the run, fetched
    through the tracking server and verified (promotion or compression on another machine)."""
    tags = run.data.tags
    named, digest = Path(tags["base_model_path"]), tags.get("base_model_sha256", "unknown")
    if named.exists() and digest in ("unknown", folder_digest(named)):
        return named
    local = settings.models_dir / "base" / f"run-{run.info.run_id}"
    if local.exists():
        return local
    listed = {
        a.path
        for a in mlflow.MlflowClient(settings.tracking_uri).list_artifacts(
            run.info.run_id, BASE_MODEL_ARTIFACT
        )
    }
    if not listed:
        raise FileNotFoundError(
            f"the base model of run {run.info.run_id} ({named}) is not on this machine and the "
            "run holds no copy of it: put base models on storage every machine sees, or use "
            "a hub id"
        )
    with tempfile.TemporaryDirectory() as tmp:
        fetched = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path=BASE_MODEL_ARTIFACT,
            dst_path=tmp,
            tracking_uri=settings.tracking_uri,
        )
        manifested = (Path(fetched) / MANIFEST).exists()
        copy_verified(Path(fetched), local, settings.allow_pickle, digest if manifested else None)
    return local
