"""The ingest stage's Prefect tasks: thin wrappers over `documents`, and the report artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.ingest.demo_corpus import write_python_docs
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams, IngestReport
from tasks.shared.caching import ingest_key, stage_task
from tasks.shared.settings import get_settings


@task
def resolve_source(params: IngestParams) -> Path:
    """The folder to ingest: the given one, or the Python docs demo corpus written out now."""
    if params.source_dir:
        return Path(params.source_dir)
    dest = get_settings().corpus_dir / "python-docs"
    return write_python_docs(dest, params.demo_topics, params.demo_modules)


@stage_task(ingest_key)
def ingest_source(root: Path, params: IngestParams) -> IngestReport:
    report = ingest_folder(root, params, get_settings())
    if not report.reconciles:  # a bug, never a data problem: stop before anything builds on it
        raise RuntimeError(f"counts do not reconcile: {report}")
    return report


@task
def publish_ingest_report(report: IngestReport) -> None:
    create_markdown_artifact(report.markdown(), key="ingest-report", description="Ingest counts")
