"""Endpoints, paths and secrets: one `Settings`, read from `LLMOPS_*` variables or `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.core.cost import PRICE_SOURCE, Prices

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Where the platform keeps its state and which services it talks to.

    With nothing set, everything is embedded and lives under `home`.
    """

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", env_file=".env", extra="ignore")

    home: Path = Field(REPO_ROOT / ".llmops", description="Root folder of all local state.")
    feature_repo: Path = Field(REPO_ROOT / "feature_repo", description="The Feast repository.")
    milvus_uri: str | None = Field(
        None, description="Milvus server URI; unset means the Milvus Lite file under `home`."
    )
    milvus_token: SecretStr | None = Field(None, description="Milvus token or 'user:password'.")
    ray_address: str | None = Field(
        None, description="Ray cluster address (ray://host:10001 or auto); unset = local Ray."
    )
    ray_storage: str | None = Field(
        None, description="Checkpoint storage shared by Ray workers; unset = `home`/ray."
    )
    model_cache: Path | None = Field(
        None,
        description="This node's cache of registered model files (by digest), which every "
        "replica on the node loads from; unset = `home`/models/cache. Give each node its own "
        "disk (a hostPath on Kubernetes).",
    )
    feast_registry: str | None = Field(
        None,
        description="Feast's registry beyond this machine: a SQL URL (postgresql://...) or an "
        "object-store file (s3://bucket/registry.pb; endpoint from FEAST_S3_ENDPOINT_URL); "
        "unset = a SQLite file under `home`.",
    )
    request_log_url: str | None = Field(
        None,
        description="Object store for the request and feedback logs' parquet parts "
        "(s3://bucket/prefix; endpoint and keys from AWS_*), which every router replica writes "
        "and the monitor and canary read; unset = under `home`. Each writer's write-ahead log "
        "stays in `home`/requests.",
    )
    source_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for ingest sources on an object store, as JSON (e.g. "
        '{"endpoint_url": "http://minio:9000"} for s3://); unset = the store\'s standard '
        "variables (AWS_*, GOOGLE_APPLICATION_CREDENTIALS). Never a flow parameter.",
    )
    source_storage_secret: str | None = Field(
        None,
        description="Or the name of a Prefect Secret block holding those fsspec options as a "
        "JSON object (keys, endpoint); `source_storage_options` set here win over its keys.",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking server; unset = a SQLite file under `home`."
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        description="Where `make mlflow` serves MLflow's UI for the embedded store; reports "
        "link runs there (a tracking server in `mlflow_tracking_uri` links to its own UI).",
    )
    allow_pickle: bool = Field(False, description="Load pickle-format model files (unsafe).")
    serving_api_key: SecretStr | None = Field(
        None, description="Bearer key the serving API requires; unset = no authentication."
    )
    serving_api_key_secret: str | None = Field(
        None, description="Or the name of a Prefect Secret block holding that key."
    )
    serving_admin_key: SecretStr | None = Field(
        None,
        description="Bearer key of the serving app's admin API (the traffic split); unset = "
        "that API is off. A caller's key (`serving_api_key`) never administers.",
    )
    serving_max_prompt_tokens: int = Field(
        2048,
        ge=1,
        description="Longest prompt served (tokens); the model's window caps it too. Recorded "
        "in the release of each version registered, which then serves by its own record.",
    )
    serving_max_tokens: int = Field(
        256,
        ge=1,
        description="Most tokens generated per request; larger asks are capped. Recorded in "
        "each new version's release, like `serving_max_prompt_tokens`.",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="Where alerts go (a canary rollback, drift, a failed nightly): a webhook "
        "taking Slack's JSON; `make ui` or `llmops alerts` installs them as Prefect automations.",
    )
    serving_follow_s: float = Field(
        2.0,
        ge=0,
        description="How often the serving app reads the registry's aliases and follows them in "
        "place (a new champion takes all traffic); 0 = it serves what it was deployed with.",
    )
    serving_bake_s: float = Field(
        3600.0,
        ge=0,
        description="How long a replaced champion stays loaded at weight 0, so that rolling "
        "back to it is a weight change, not a model load.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OpenTelemetry collector (OTLP/HTTP, e.g. http://collector:4318) the serving "
        "app sends each request's spans to; `/v1/traces` is appended unless given. Unset = "
        "the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, or with neither, no tracing.",
    )
    ray_cluster_manifest: Path | None = Field(
        None,
        description="A KubeRay RayCluster manifest (e.g. infra/ray/raycluster.yaml) whose worker "
        "groups the Ray cluster can scale to: GPU fine-tuning counts what its groups can still "
        "add (up to maxReplicas) and budgets memory by their GPU; unset = the cluster config "
        "Ray's autoscaler reports, else only the live nodes.",
    )
    serving_deadline_s: float = Field(
        120.0,
        gt=0,
        description="The most seconds a model replica spends on one answer (queue included); "
        "a request may ask for less (`deadline_s`). Past it the answer ends with 504.",
    )
    serving_max_body_bytes: int = Field(
        1_000_000,
        ge=1_024,
        description="Request bodies over this size are refused with 413 before they are read "
        "in full or parsed.",
    )
    judge_url: str | None = Field(
        None,
        description="An LLM judge's OpenAI-compatible base URL (with or without /v1); unset = "
        "no judge. Only evaluations asked to (`judge: true`) use it; never a gate.",
    )
    judge_model: str | None = Field(None, description="The `model` field sent to the judge.")
    judge_api_key: SecretStr | None = Field(None, description="Bearer key of the judge.")
    judge_timeout_s: float = Field(
        20, gt=0, description="Per judge call; slower is a missing judged metric, with why."
    )
    prices: Prices = Field(
        default_factory=Prices,
        description="Per-hour prices run costs are estimated with (JSON; keys left out keep "
        f"their default): cpu_hour, memory_gib_hour, gpu_hour by type, gpu_type. Defaults: "
        f"{PRICE_SOURCE}.",
    )

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def documents_dir(self) -> Path:
        return self.lake_dir / "documents"

    @property
    def quarantine_dir(self) -> Path:
        return self.lake_dir / "quarantine"

    @property
    def snapshots_dir(self) -> Path:
        return self.lake_dir / "snapshots"

    @property
    def listings_dir(self) -> Path:
        """Per source root: each item's version and the documents it gave (incremental ingest)."""
        return self.lake_dir / "listings"

    @property
    def evalsets_dir(self) -> Path:
        """Evaluation sets (parquet, named by content hash) and quarantined golden-set rows."""
        return self.lake_dir / "evalsets"

    @property
    def chunks_dir(self) -> Path:
        return self.lake_dir / "chunks"

    @property
    def index_manifest(self) -> Path:
        """Which chunks the online store holds, and for which document and source."""
        return self.home / "index" / "chunks.parquet"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def milvus_lite_path(self) -> Path:
        """The embedded vector store's folder (used when `milvus_uri` is unset)."""
        return self.feast_dir / "online_store.db"

    @property
    def requests_dir(self) -> Path:
        """The serving request log (the router writes it; the canary and the monitor read)."""
        return self.home / "requests"

    @property
    def requests_location(self) -> str:
        """Where the request log's parquet parts are: `request_log_url`, else `requests_dir`."""
        return self.request_log_url or str(self.requests_dir)

    @property
    def feedback_location(self) -> str:
        return f"{self.requests_location.rstrip('/')}/feedback"

    @property
    def feedback_dir(self) -> Path:
        """Feedback on answers (rating, correction), by request id, stored with the request log:
        a log of its own in the same durable layout (the router writes it)."""
        return self.requests_dir / "feedback"

    @property
    def golden_path(self) -> Path:
        """The golden set a person approves (JSONL: question, reference, source_ids), grown by
        `llmops golden approve` from corrections given as feedback."""
        return self.lake_dir / "golden" / "golden.jsonl"

    @property
    def corpus_dir(self) -> Path:
        return self.home / "corpus"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or self.models_dir / "cache"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.home / "mlartifacts").as_uri()

    @property
    def checkpoint_storage(self) -> str:
        return self.ray_storage or str(self.home / "ray")


def get_settings() -> Settings:
    """Build the settings from the environment now (never at import, so tests can vary them)."""
    return Settings()
