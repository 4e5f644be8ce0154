"""Feast over Milvus: the one place that builds the feature store and talks to the collection."""

from __future__ import annotations

import fcntl
import logging
import socket
import time
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.data_source import DataSource
from feast.repo_config import RepoConfig

from tasks.shared.settings import Settings

CHUNK_VIEW = "document_chunks"
CHUNK_FEATURES = ("text", "doc_id", "source", "chunk_index", "n_tokens", "language")
_DELETE_BATCH = 1000
_LITE_OPEN_HERE: set[Path] = set()  # Milvus Lite files this process has open


class IndexBusy(RuntimeError):
    """The Milvus Lite file is open in another process (it locks its folder while open)."""


def wait_for_lite(path: Path, timeout_s: float) -> None:
    """Wait until no other process holds the Milvus Lite folder's lock, or raise IndexBusy.

    Milvus Lite refuses a second process with an error pymilvus turns into an unrelated
    connection failure; waiting here lets a stage and the serving app's retriever take turns.
    """
    lock = path / "LOCK"
    if path in _LITE_OPEN_HERE or not lock.exists():
        return  # this process has it (a second flock here would block itself), or it is new
    deadline = time.monotonic() + timeout_s
    with lock.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"the Milvus Lite index {path} is open in another process (the "
                        "serving app's retriever lets go after a few idle seconds, a stage "
                        "when it ends); for concurrent readers and writers use a Milvus "
                        "server (LLMOPS_MILVUS_URI)"
                    ) from None
                time.sleep(0.2)


class MilvusUnavailable(ConnectionError):
    """The Milvus server in settings does not answer, or refuses the token."""


def milvus_error(uri: str, exc: Exception) -> str:
    """Why a Milvus server cannot be used: pymilvus reports a wrong token and an absent server
    with the same message, so whether anything listens at the address tells them apart."""
    parsed = urlparse(uri if "://" in uri else f"http://{uri}")
    port = parsed.port or (443 if parsed.scheme == "https" else 19530)
    try:
        socket.create_connection((parsed.hostname or "localhost", port), timeout=3).close()
    except OSError as err:
        return (
            f"nothing answers at the Milvus URI {uri} (LLMOPS_MILVUS_URI): {err}; start the "
            "server or fix the address (unset it for the embedded Milvus Lite file)"
        )
    return (
        f"the Milvus server at {uri} refused the connection: check LLMOPS_MILVUS_TOKEN "
        f"('user:password' or an API key; the server needs one when authentication is on) "
        f"[{exc}]"
    )


class _MilvusLiteNoise(logging.Filter):
    """pymilvus probes AllocTimestamp, which Milvus Lite does not implement; the fallback works."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not isinstance(record.exc_info[1], NotImplementedError):
            return True
        tb = record.exc_info[2]
        while tb and tb.tb_next:
            tb = tb.tb_next
        return not (tb and tb.tb_frame.f_code.co_name == "AllocTimestamp")


def _quiet_milvus_lite() -> None:
    log = logging.getLogger("grpc._server")
    if not any(isinstance(f, _MilvusLiteNoise) for f in log.filters):
        log.addFilter(_MilvusLiteNoise())


OBJECT_STORES = ("s3://", "gs://", "az://")


def repo_config(settings: Settings) -> RepoConfig:
    """`feature_store.yaml`, with its paths bound to the state folder and Milvus to settings."""
    raw: dict[str, Any] = yaml.safe_load((settings.feature_repo / "feature_store.yaml").read_text())
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    raw["registry"]["path"] = (
        settings.feast_registry or f"sqlite:///{settings.feast_dir / 'registry.db'}"
    )
    if (settings.feast_registry or "").startswith(OBJECT_STORES):  # Feast's file registry there
        raw["registry"]["registry_type"] = "file"
    online = raw["online_store"]
    if settings.milvus_uri:
        online.update(path="", uri=settings.milvus_uri)
        if settings.milvus_token:
            online["token"] = settings.milvus_token.get_secret_value()
    else:
        online["path"] = str(settings.milvus_lite_path)
    config = RepoConfig(**raw)
    config.repo_path = settings.home  # file sources are relative to the state folder
    return config


def feature_definitions() -> list[Any]:
    """Every Feast object declared in `feature_repo/definitions.py`."""
    from feature_repo import definitions

    kinds = (Entity, DataSource, FeatureView, FeatureService)
    return [v for v in vars(definitions).values() if isinstance(v, kinds)]


class _MemoizedViewsStore(FeatureStore):
    """Feast's v2 retrieval looks the feature view up once per requested feature, and every
    lookup rebuilds it from its protobuf under typeguard checks (about 5 ms each here, more than
    the Milvus search itself). Views are memoized instead, until the next `apply`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._views: dict[str, FeatureView] = {}

    def get_feature_view(self, name: str, allow_registry_cache: bool = False) -> FeatureView:
        if name not in self._views:
            self._views[name] = super().get_feature_view(name, allow_registry_cache)
        return self._views[name]

    def apply(self, *args: Any, **kwargs: Any) -> None:
        self._views.clear()
        super().apply(*args, **kwargs)


class ChunkIndex:
    """The chunk feature view: writes go through Feast, searches through Feast's v2 retrieval."""

    def __init__(self, settings: Settings, wait_s: float = 60.0) -> None:
        self.lite_path = None if settings.milvus_uri else settings.milvus_lite_path
        if self.lite_path:
            _quiet_milvus_lite()
            wait_for_lite(self.lite_path, wait_s)
            _LITE_OPEN_HERE.add(self.lite_path)
        self.store = _MemoizedViewsStore(config=repo_config(settings))
        if settings.milvus_uri:
            self._check_server(settings.milvus_uri)

    def _check_server(self, uri: str) -> None:
        """Connect now, so a wrong address or token fails here with a reason."""
        from pymilvus.exceptions import MilvusException

        try:
            self._client.list_collections()
        except MilvusException as exc:
            raise MilvusUnavailable(milvus_error(uri, exc)) from None

    def close(self) -> None:
        """Let go of the index: a Milvus Lite file stays locked to this process until closed."""
        self._reconnect()
        if self.lite_path:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(self.lite_path))
            _LITE_OPEN_HERE.discard(self.lite_path)

    def __enter__(self) -> ChunkIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply(self) -> None:
        self.store.apply(feature_definitions())

    @cached_property
    def _online(self) -> Any:
        return self.store._get_provider().online_store

    @property
    def _client(self) -> Any:
        return self._online._connect(self.store.config)

    @cached_property
    def collection(self) -> str:
        view = self.store.get_feature_view(CHUNK_VIEW)
        self._online._get_or_create_collection(self.store.config, view)
        return f"{self.store.project}_{CHUNK_VIEW}"

    def write(self, frame: pd.DataFrame) -> None:
        """Upsert chunks (columns: chunk_id, vector, the chunk features, event_timestamp)."""
        self.store.write_to_online_store(CHUNK_VIEW, frame)

    def flush(self) -> None:
        # Feast does not flush; unflushed rows are searched far more slowly.
        self._client.flush(self.collection)

    def delete(self, chunk_ids: list[str]) -> None:
        for i in range(0, len(chunk_ids), _DELETE_BATCH):
            ids = chunk_ids[i : i + _DELETE_BATCH]
            self._client.delete(self.collection, filter=f"chunk_id in {ids!r}")

    def count(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _reconnect(self) -> None:
        """pymilvus keeps one gRPC connection per address for every client in the process and
        pings it every 10 s even when idle; Milvus Lite's server answers an idle connection's
        pings with GOAWAY ("too many pings") after a while, and pymilvus then fails every call
        on it. Dropping the shared connections lets the next call open a fresh one."""
        from pymilvus.client.connection_manager import ConnectionManager

        ConnectionManager.get_instance().close_all()
        self._online.client = None

    def search(self, vector: list[float], top_k: int) -> list[dict[str, Any]]:
        """Top-k chunks by cosine similarity (`score`), best first."""
        from pymilvus.exceptions import MilvusException

        # Milvus searches the vector field only when it is among the requested features.
        features = [f"{CHUNK_VIEW}:{f}" for f in ("vector", *CHUNK_FEATURES)]

        def retrieve() -> dict[str, Any]:
            return self.store.retrieve_online_documents_v2(
                features=features, query=vector, top_k=top_k, distance_metric="COSINE"
            ).to_dict()

        try:
            response = retrieve()
        except MilvusException:  # a connection that went stale while idle: once more, afresh
            self._reconnect()
            response = retrieve()
        if not response.get("chunk_id"):  # an empty collection: Feast leaves the columns out
            return []
        # Feast 0.67 returns the entity column in rank order but the feature rows re-ordered
        # by entity value; ranking the features by score realigns them with the ids.
        rows = [
            dict(zip(CHUNK_FEATURES, r, strict=True))
            for r in zip(*(response[f] for f in CHUNK_FEATURES), strict=True)
        ]
        for row, score in zip(rows, response["distance"], strict=True):
            row["score"] = score
        rows.sort(key=lambda r: -r["score"])
        for row, chunk_id in zip(rows, response["chunk_id"], strict=True):
            row["chunk_id"] = chunk_id
        return rows
