"""The pipeline's run summary, for the console and the Prefect UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from tasks.embed import EmbedReport
from tasks.ingest import IngestReport


def summary_rows(ingest: IngestReport, embed: EmbedReport) -> list[dict[str, object]]:
    return [
        {"stage": "ingest", "metric": "read", "value": ingest.read},
        {"stage": "ingest", "metric": "accepted", "value": ingest.accepted},
        {"stage": "ingest", "metric": "quarantined", "value": ingest.quarantined},
        {"stage": "ingest", "metric": "new documents", "value": ingest.new_documents},
        {
            "stage": "ingest",
            "metric": "docs/s",
            "value": round(ingest.read / max(ingest.seconds, 1e-9), 1),
        },
        {"stage": "embed", "metric": "chunks in Milvus", "value": embed.collection_rows},
        {"stage": "embed", "metric": "embedded", "value": embed.chunks_embedded},
        {"stage": "embed", "metric": "skipped (unchanged)", "value": embed.chunks_skipped},
        {"stage": "embed", "metric": "deleted (stale)", "value": embed.chunks_deleted},
        {"stage": "embed", "metric": "chunks/s", "value": round(embed.chunks_per_second, 1)},
    ]


def summary_line(ingest: IngestReport, embed: EmbedReport) -> str:
    return (
        f"read {ingest.read} = accepted {ingest.accepted} + quarantined {ingest.quarantined}"
        f" ({ingest.new_documents} new); embedded {embed.chunks_embedded} chunks"
        f" ({embed.chunks_per_second:.1f}/s), skipped {embed.chunks_skipped}, deleted"
        f" {embed.chunks_deleted}; {embed.collection_rows} chunks searchable in Milvus"
        f" (snapshot {embed.snapshot_id})"
    )


@task
def publish_pipeline_summary(ingest: IngestReport, embed: EmbedReport) -> str:
    create_table_artifact(
        summary_rows(ingest, embed), key="nightly-summary", description=summary_line(ingest, embed)
    )
    return summary_line(ingest, embed)
