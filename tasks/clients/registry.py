"""MLflow model registry: versions with lineage tags, aliases whose every change is recorded,
and verified local copies of registered versions.

Each alias change is an MLflow run in the experiment `model-aliases` (params: alias, version,
previous version, action; tags: model, reason, actor, time; metrics: the scores behind it), so
the history lives wherever the tracking server is, next to the registry it describes.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field

from tasks.shared.manifest import MANIFEST, manifest_digest, sha256_file, verify_manifest
from tasks.shared.node_cache import NodeCache
from tasks.shared.settings import Settings

ALIAS_EXPERIMENT = "model-aliases"
DIGEST_TAG = "manifest_digest"
NONE = "none"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class AliasChange(BaseModel):
    """One change of one alias: which version got it, from whom, why, by whom, when."""

    model: str
    alias: str
    version: str = Field(description=f"The new holder, or {NONE!r} when the alias was removed.")
    previous: str = Field(description=f"The holder before, or {NONE!r}.")
    action: str = Field(description="register, promote, rollback or clear.")
    reason: str
    actor: str
    at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)
    run_id: str = ""


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not settings.mlflow_tracking_uri:
            settings.home.mkdir(parents=True, exist_ok=True)
        uri = settings.tracking_uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def current_user(self) -> str | None:
        """The user the tracking server authenticated this client as (MLflow's basic-auth app,
        credentials from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), or None where
        nothing authenticates (a local store, a server without authentication)."""
        uri = self.settings.tracking_uri
        if not uri.startswith(("http://", "https://")):
            return None
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        creds = get_default_host_creds(uri)
        if not creds.username:
            return None
        response = http_request(creds, "/api/2.0/mlflow/users/current", "GET")
        if response.status_code == 401:
            raise PermissionError(f"{uri} refused the credentials of {creds.username!r}")
        if response.status_code != 200:  # 404: the server has no authentication
            return None
        return str(response.json()["user"]["username"])

    # Versions

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version of a registered model ({} when it is not registered yet)."""
        try:
            model = self.client.get_registered_model(_checked(name))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: str(version) for alias, version in model.aliases.items()}

    def register(self, name: str, run_id: str, tags: dict[str, str]) -> str:
        """A new version whose files are the `model` artifact of `run_id`."""
        try:
            self.client.create_registered_model(
                _checked(name), description="Fine-tuned, compressed causal LM (llmops platform)."
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self.client.create_model_version(
            name, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags
        )
        return str(version.version)

    def find_version(self, name: str, run_id: str, digest: str) -> str | None:
        """The version already registered from this run with these exact files, if any (a
        release made of another version's files is not one)."""
        found = self.client.search_model_versions(f"name='{_checked(name)}' and run_id='{run_id}'")
        matching = [
            int(v.version)
            for v in found
            if v.tags.get(DIGEST_TAG) == digest and "released_from" not in v.tags
        ]
        return str(min(matching)) if matching else None

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(name, version).tags)

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def run_manifest_digest(self, run_id: str, artifact_path: str = "model") -> str:
        """Digest of the manifest logged with a run's model (what a version would point to)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, f"{artifact_path}/{MANIFEST}", tmp)
            return sha256_file(Path(local))

    def download_verified(self, name: str, version: str) -> Path:
        """A local copy of a version, from this node's cache (keyed by the digest recorded at
        registration; filled once, in parallel, resumably), whose files match the manifest;
        checked again on every call (a tampered copy is refused)."""
        digest = self.version_tags(name, version).get(DIGEST_TAG)
        if not digest:
            raise ValueError(
                f"{name} v{version} has no {DIGEST_TAG} tag: it was not registered with a "
                "manifest by this platform, refusing to load it"
            )
        cache = NodeCache(self.settings.model_cache_dir)
        uri = self.client.get_model_version_download_uri(name, version)

        def fetch(path: str, target: Path) -> None:
            with tempfile.TemporaryDirectory(dir=cache.root, prefix=".fetch-") as tmp:
                fetched = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{uri}/{path}",
                    dst_path=tmp,
                    tracking_uri=self.settings.tracking_uri,
                )
                Path(fetched).replace(target)

        folder, _ = cache.get(digest, fetch, self.settings.allow_pickle)
        if manifest_digest(folder) != digest:
            raise ValueError(
                f"{folder}: its manifest is not the one registered for {name} v{version}; "
                "delete the folder to fetch it again"
            )
        verify_manifest(folder, self.settings.allow_pickle)
        return folder

    # Aliases and their history

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str | None,
        *,
        action: str,
        reason: str,
        actor: str,
        metrics: dict[str, float] | None = None,
    ) -> AliasChange:
        """Point `alias` at `version` (None removes it) and record the change. Against a server
        with authentication, the recorded actor is the user it authenticated (the given `actor`,
        a typed name or a flow run, follows in brackets), and a user without the permission to
        move the alias gets a PermissionError, with nothing changed."""
        user = self.current_user()  # first: wrong credentials fail here, clearly
        previous = self.aliases(name).get(alias, NONE)
        if user is not None:
            actor = user if actor in ("", user) else f"{user} (via {actor})"
        try:
            if version is None:
                if previous != NONE:
                    self.client.delete_registered_model_alias(name, alias)
            else:
                self.client.set_registered_model_alias(name, alias, version)
        except MlflowException as exc:
            if exc.error_code != "PERMISSION_DENIED":
                raise
            raise PermissionError(
                f"{user} may not move {name}@{alias}: the registry refused it (MLflow needs "
                "EDIT or MANAGE on the model for that user)"
            ) from None
        change = AliasChange(
            model=name,
            alias=alias,
            version=version or NONE,
            previous=previous,
            action=action,
            reason=reason,
            actor=actor,
            at=datetime.now(UTC),
            metrics={k: v for k, v in (metrics or {}).items() if math.isfinite(v)},
        )
        return change.model_copy(update={"run_id": self._record(change)})

    def history(self, name: str) -> list[AliasChange]:
        """Every recorded alias change of the model, oldest first."""
        experiment = self.client.get_experiment_by_name(ALIAS_EXPERIMENT)
        if experiment is None:
            return []
        changes, token = [], None
        while True:
            page = self.client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.model = '{_checked(name)}'",
                max_results=1000,
                page_token=token,
            )
            changes += [_change_from_run(run) for run in page]
            token = page.token
            if not token:
                break
        return sorted(changes, key=lambda c: c.at)

    def _record(self, change: AliasChange) -> str:
        ms = int(change.at.timestamp() * 1000)
        run = self.client.create_run(
            self._alias_experiment(),
            start_time=ms,
            run_name=f"{change.model}@{change.alias}: {change.previous} -> {change.version}",
            tags={
                "model": change.model,
                "reason": change.reason,
                "actor": change.actor,
                "changed_at": change.at.isoformat(),  # microseconds: orders changes in one ms
            },
        )
        fields = ("alias", "version", "previous", "action")
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, ms, 0) for k, v in change.metrics.items()],
            params=[Param(k, getattr(change, k)) for k in fields],
        )
        self.client.set_terminated(run.info.run_id, end_time=int(time.time() * 1000))
        return run.info.run_id

    def _alias_experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(ALIAS_EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = None if self.settings.mlflow_tracking_uri else self.settings.artifact_location
        return self.client.create_experiment(ALIAS_EXPERIMENT, artifact_location=location)


def _change_from_run(run) -> AliasChange:
    tags, params = run.data.tags, run.data.params
    return AliasChange(
        model=tags["model"],
        reason=tags.get("reason", ""),
        actor=tags.get("actor", ""),
        at=datetime.fromisoformat(tags["changed_at"]),
        metrics=dict(run.data.metrics),
        run_id=run.info.run_id,
        **{k: params[k] for k in ("alias", "version", "previous", "action")},
    )


def _checked(name: str) -> str:
    """Model names go into filter strings and folder names: keep them plain."""
    if not MODEL_NAME.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings)
