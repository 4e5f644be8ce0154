"""`llmops status`: the platform's state read from its own systems (the registry, the serving
app, Prefect, the index, the lake). Each part is read on its own: one that cannot be read is a
line saying why, never the end of the command."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from llmops.status_view import unavailable, version_scores
from tasks.clients import Clients
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.shared import lake
from tasks.shared.settings import Settings

# The flows whose last run the status shows (their @flow names in flows/).
FLOWS = ("nightly_pipeline", "monitor_drift")
LOCAL_PREFECT = "http://127.0.0.1:4200/api"  # where `make ui` serves the Prefect API
TIMEOUT_S = 3.0


def _part(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except Exception as exc:  # a part that cannot be read says why; the others still show
        return unavailable(f"cannot read: {type(exc).__name__}: {exc}")


def registry_part(clients: Clients, model: str) -> dict[str, Any]:
    uri = clients.settings.tracking_uri
    store = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///") and not store.exists():  # reading would create it
        return unavailable(f"no tracking store yet at {store} (run the nightly)")
    registry = clients.registry
    aliases = registry.aliases(model)  # checks the name too (it goes into the filter below)
    versions = registry.client.search_model_versions(f"name='{model}'")
    if not versions:
        return {"model": model, "registered": False}
    releases: dict[str, Any] = {}
    for alias in (CHAMPION, CHALLENGER):
        version = aliases.get(alias)
        if version is None:
            releases[alias] = None
            continue
        tags = registry.version_tags(model, version)
        releases[alias] = {
            "version": version,
            "scores": version_scores(tags),
            "decision": tags.get("decision"),
        }
    return {"model": model, "registered": True, "versions": len(versions), "releases": releases}


def serving_part(clients: Clients, url: str) -> dict[str, Any]:
    """What the router at `url` serves and with which weights (its `/v1/models`)."""
    try:
        with clients.serve.http(url, timeout=TIMEOUT_S) as http:
            response = http.get("/v1/models")
    except httpx.HTTPError:
        return {"url": url, "serving": False}
    if response.status_code in (401, 403):
        return unavailable(
            f"the serving app at {url} refused the API key (HTTP {response.status_code}): "
            "set LLMOPS_SERVING_API_KEY to its key"
        )
    if response.status_code != 200:
        return unavailable(f"{url}/v1/models answered HTTP {response.status_code}")
    model = response.json()["data"][0]
    return {"url": url, "serving": True, "model": model["id"], "versions": model["versions"]}


def prefect_api(settings: Settings) -> tuple[str | None, str]:
    """The Prefect API to ask: PREFECT_API_URL, else the platform's own server (`make ui`) if
    it answers. Never a temporary server: starting one takes 15-20 s."""
    url = os.environ.get("PREFECT_API_URL") or LOCAL_PREFECT
    try:
        httpx.get(f"{url}/health", timeout=TIMEOUT_S).raise_for_status()
    except httpx.HTTPError as exc:
        database = settings.home / "platform" / "prefect" / "prefect.db"  # `make ui`, nightly
        return None, (
            f"no Prefect server answers at {url} ({type(exc).__name__}): the platform's runs "
            f"are in {database}; `make ui` serves them at {LOCAL_PREFECT.removesuffix('/api')} "
            "(another server: export PREFECT_API_URL)"
        )
    return url, ""


def runs_part(settings: Settings, api_url: str | None = None) -> dict[str, Any]:
    """The last started run of each flow in FLOWS, with its state."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    if api_url is None:
        api_url, why = prefect_api(settings)
        if api_url is None:
            return unavailable(why)
    flows: dict[str, Any] = {}
    with SyncPrefectClient(api_url, httpx_settings={"timeout": TIMEOUT_S}) as client:
        for flow in FLOWS:
            found = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            flows[flow] = _flow_run(found[0]) if found else None
    return {"api_url": api_url, "flows": flows}


def _flow_run(run: Any) -> dict[str, Any]:
    return {
        "name": run.name,
        "state": run.state_name or "unknown",
        "start_time": run.start_time.isoformat(timespec="seconds") if run.start_time else None,
        "duration_s": round(run.total_run_time.total_seconds(), 1),
        "id": str(run.id),
    }


def index_part(clients: Clients, wait_s: float) -> dict[str, Any]:
    """Rows in the chunk collection; the Milvus Lite file is opened and let go at once (one
    process at a time holds it)."""
    settings = clients.settings
    store = settings.milvus_uri or str(settings.milvus_lite_path)
    if not settings.milvus_uri and not settings.milvus_lite_path.exists():
        return unavailable(f"no index yet at {store} (run embed_documents)")
    from tasks.clients.feature_store import ChunkIndex, IndexBusy  # Feast: seconds to import

    try:
        with ChunkIndex(settings, wait_s=wait_s) as index:
            return {"store": store, "rows": index.count()}
    except IndexBusy as exc:
        return unavailable(f"after {wait_s:g} s: {exc}")


def quarantine_part(settings: Settings) -> dict[str, Any]:
    folder = settings.quarantine_dir
    return {"folder": str(folder), "rows": len(lake.quarantine_ids(folder))}


def gather(
    settings: Settings, model: str, serving_url: str, index_wait_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Every part of the status, each read on its own (see the module doc)."""
    clients = Clients(settings)
    return {
        "registry": _part(lambda: registry_part(clients, model)),
        "serving": _part(lambda: serving_part(clients, serving_url)),
        "runs": _part(lambda: runs_part(settings)),
        "index": _part(lambda: index_part(clients, index_wait_s)),
        "quarantine": _part(lambda: quarantine_part(settings)),
    }
