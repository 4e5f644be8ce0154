"""The ingest stage's Prefect tasks: thin wrappers over `documents`, and the report artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.ingest.demo_corpus import write_python_docs
from tasks.ingest.documents import ingest
from tasks.ingest.params import IngestParams, IngestReport
from tasks.ingest.sources import Source, open_source
from tasks.shared.caching import ingest_key, stage_task
from tasks.shared.settings import get_settings


@task
def resolve_source(params: IngestParams) -> str | None:
    """The folder or URL to ingest: the given one, none for web pages, or the Python docs demo
    corpus written out now."""
    if params.is_web:
        return None
    if params.source_dir:
        return params.source_dir
    dest = get_settings().corpus_dir / "python-docs"
    return str(write_python_docs(dest, params.demo_topics, params.demo_modules))


@stage_task(ingest_key)
def ingest_source(root: str | None, params: IngestParams) -> IngestReport:
    """The built-in sources: files under `root` (a folder or an object-store URL), or the web
    pages `params` names."""
    settings = get_settings()
    return _checked(ingest(open_source(root, params, settings), params, settings))


@task
def ingest_from(source: Source, params: IngestParams) -> IngestReport:
    """Any other source (`llmops new-flow --kind source`), through the same screening,
    validation and quarantine; incremental when the source lists versions."""
    return _checked(ingest(source, params, get_settings()))


def _checked(report: IngestReport) -> IngestReport:
    if not report.reconciles:  # a bug, never a data problem: stop before anything builds on it
        raise RuntimeError(f"counts do not reconcile: {report}")
    return report


@task
def publish_ingest_report(report: IngestReport) -> None:
    create_markdown_artifact(report.markdown(), key="ingest-report", description="Ingest counts")
