"""MLflow: a SQLite file and a local artifact folder, or the tracking server in settings."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, Run, RunTag

from tasks.shared.manifest import MANIFEST, folder_digest, verify_manifest
from tasks.shared.model_files import copy_verified
from tasks.shared.settings import Settings

EXPERIMENT = "finetune"
# MLflow 3.17's UI opens experiments in its GenAI view (empty for training runs) unless asked
RUNS_VIEW = "workflowType=machine_learning"
BASE_MODEL_ARTIFACT = "base_model"  # bases built here (scratch) travel with their run


def connect(settings: Settings) -> mlflow.MlflowClient:
    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri)


def ui_base(settings: Settings) -> str:
    """The MLflow UI that shows this platform's runs: its tracking server, or `make mlflow`."""
    uri = settings.mlflow_tracking_uri or ""
    return (uri if uri.startswith(("http://", "https://")) else settings.mlflow_ui_url).rstrip("/")


def run_url(settings: Settings, run_id: str) -> str:
    """A run's page in the MLflow UI (its evaluation traces are a tab there)."""
    experiment = connect(settings).get_run(run_id).info.experiment_id
    return f"{ui_base(settings)}/#/experiments/{experiment}/runs/{run_id}?{RUNS_VIEW}"


def use_experiment(settings: Settings, name: str) -> str:
    """The experiment's id, created with its artifacts under `home` on first use."""
    connect(settings)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # A tracking server keeps artifacts where it is configured to; embedded, under `home`.
    location = None if settings.mlflow_tracking_uri else settings.artifact_location
    return mlflow.create_experiment(name, artifact_location=location)


@dataclass(frozen=True)
class TrackedRun:
    """One MLflow run that a stage logs to: the stages call these, never `mlflow` itself."""

    client: mlflow.MlflowClient
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log_steps([(step, metrics)])

    def log_steps(self, steps: list[tuple[int, Mapping[str, float]]]) -> None:
        """Metrics of several steps in one write."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for step, row in steps for k, v in row.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        self.client.log_table(self.run_id, data, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)


@contextmanager
def start_run(
    settings: Settings, run_name: str, experiment: str = EXPERIMENT, nested: bool = False
) -> Iterator[TrackedRun]:
    """A run of `experiment`, finished (or failed) when the block ends; `nested` makes it a
    child of the run open around it."""
    experiment_id = use_experiment(settings, experiment)
    client = mlflow.MlflowClient(settings.tracking_uri)
    with mlflow.start_run(run_name=run_name, experiment_id=experiment_id, nested=nested) as run:
        yield TrackedRun(client, run.info.run_id)


def run_on(tracking_uri: str, run_id: str) -> TrackedRun:
    """A run reached from a Ray Train worker, which is given the URI rather than the settings."""
    return TrackedRun(mlflow.MlflowClient(tracking_uri), run_id)


def tracked(settings: Settings, run_id: str) -> TrackedRun:
    """An existing run, to log more to it (a report's figure after the run ended)."""
    return TrackedRun(connect(settings), run_id)


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
        a.path for a in connect(settings).list_artifacts(run.info.run_id, BASE_MODEL_ARTIFACT)
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


def genai_evaluate(settings: Settings, data: Any, scorers: list[Any]) -> Any:
    """`mlflow.genai.evaluate` over precomputed answers, in the active run. On the embedded
    SQLite store it runs with one worker: parallel workers writing traces to one SQLite file
    wait on its lock (20 questions took 33 s with the default pool, 3 s with one worker)."""
    import os

    import mlflow.genai

    key = "MLFLOW_GENAI_EVAL_MAX_WORKERS"
    before = os.environ.get(key)
    if settings.tracking_uri.startswith("sqlite:"):
        os.environ[key] = "1"
    try:
        return mlflow.genai.evaluate(data=data, scorers=scorers)
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def log_dataset(frame: Any, source: str, name: str, context: str) -> None:
    """A dataset (an evaluation set) as an input of the active run, with its digest."""
    dataset = mlflow.data.from_pandas(frame, source=source, name=name)
    mlflow.log_input(dataset, context=context)


def finetuned_model(settings: Settings, run_id: str) -> Path:
    """A fine-tuning run's model on this machine, verified: the folder it was trained into, or
    its logged copy fetched (streamed and hashed) when it was trained elsewhere."""
    folder = settings.models_dir / "finetuned" / run_id
    if not folder.exists():
        with tempfile.TemporaryDirectory() as tmp:
            fetched = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="model", dst_path=tmp
            )
            copy_verified(Path(fetched), folder, settings.allow_pickle)
    verify_manifest(folder, allow_pickle=settings.allow_pickle)
    return folder
