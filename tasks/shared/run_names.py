"""Flow run names that say what a run works on, from its `params`: the flows' `flow_run_name`
where a parameter may be empty (then the stage takes the latest, and the name says so).

Parameters that are always set are named by a template in the flow itself (Prefect formats
`flow_run_name` with the validated parameters, so `"canary-{params.model_name}"` works)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect.runtime import flow_run


def _param(*path: str) -> Any:
    """A field of the run's `params` (a model once validated, else a dict); None if unset."""
    value: Any = flow_run.parameters.get("params")
    for name in path:
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return value


def _source(source_dir: str | None) -> str:
    return Path(source_dir).name if source_dir else "demo-corpus"


def _web(sitemap: str | None, urls: list[str] | None) -> str | None:
    """The site a web ingest reads: the sitemap's host, else the first URL's."""
    where = sitemap or (urls[0] if urls else None)
    return urlsplit(where).netloc or None if where else None


def _run(run_id: str | None) -> str:
    return run_id[:8] if run_id else "latest"  # as MLflow names runs after their source


def ingest_run_name() -> str:
    web = _web(_param("sitemap"), _param("urls"))
    return f"ingest-{web or _source(_param('source_dir'))}"


def embed_run_name() -> str:
    return f"embed-{_param('snapshot_id') or 'latest'}"


def finetune_run_name() -> str:
    base = Path(_param("base_model") or "scratch").name
    return f"finetune-{_param('method') or 'lora'}-{base}-on-{_param('snapshot_id') or 'latest'}"


def compress_run_name() -> str:
    return f"compress-{_run(_param('source_run_id'))}"


def promote_run_name() -> str:
    candidate = _param("compress_report", "run_id") or _param("compress_run_id")
    return f"promote-{_param('model_name')}-from-{_run(candidate)}"


def nightly_run_name() -> str:
    # a validated model resolves `ingest` itself; a raw dict has the choice or `advanced`
    chosen = _param("source_dir") or _param("advanced", "ingest", "source_dir")
    return f"nightly-{_source(_param('ingest', 'source_dir') or chosen)}"


def evaluate_run_name() -> str:
    endpoint = _param("endpoint")
    if endpoint:
        return f"evaluate-endpoint-{endpoint.split('//')[-1].rstrip('/')}"
    if _param("run_id"):
        return f"evaluate-run-{_run(_param('run_id'))}"
    return f"evaluate-{_param('model_name')}-{_param('version') or 'champion'}"
