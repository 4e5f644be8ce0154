"""The ingest stage's Prefect tasks: thin wrappers over `documents`, and the report artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.ingest.demo_corpus import write_python_docs
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams, IngestReport
from tasks.shared import lake
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
    quarantine = lake.read_quarantine(get_settings().quarantine_dir, report.run_id).head(50)
    rows = "\n".join(f"| `{q.source}` | {'; '.join(q.reasons)} |" for q in quarantine.itertuples())
    markdown = (
        f"# Ingest {report.run_id}\n\n"
        f"Source: `{report.source_root}`  \nSnapshot: `{report.snapshot_id}`\n\n"
        "| read | accepted | quarantined | new documents | seconds | docs/s |\n"
        "|---:|---:|---:|---:|---:|---:|\n"
        f"| {report.read} | {report.accepted} | {report.quarantined} | {report.new_documents} "
        f"| {report.seconds} | {report.read / max(report.seconds, 1e-9):.1f} |\n\n"
        f"read = accepted + quarantined: **{report.reconciles}**\n\n"
        "## Quarantine reasons\n\n| reason | rows |\n|---|---:|\n"
        + "".join(f"| {k} | {n} |\n" for k, n in sorted(report.reasons.items()))
        + "\n## Quarantined rows (first 50 of this run)\n\n| source | reasons |\n|---|---|\n"
        + rows
    )
    create_markdown_artifact(markdown, key="ingest-report", description="Ingest counts")
