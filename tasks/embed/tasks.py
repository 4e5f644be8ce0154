"""The embed stage's Prefect tasks: thin wrappers over `index`, and the report artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.clients.embedder import load_embedder
from tasks.clients.feature_store import ChunkIndex
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams, EmbedReport
from tasks.embed.ray_encoder import RayEncoder, use_ray
from tasks.shared.caching import RETRIES, snapshot_key, stage_task
from tasks.shared.settings import get_settings


@stage_task(snapshot_key, **RETRIES)  # upserts by content-hash id
def index_snapshot(params: EmbedParams) -> EmbedReport:
    settings = get_settings()
    with ChunkIndex(settings) as index:  # closed after: the serving app may read it next
        index.apply()
        embedder = load_embedder(params.model)  # here for its tokenizer at least
        if not use_ray(params.on_ray, settings.ray_address):
            return embed_snapshot(params, settings, index, embedder)
        encoder = RayEncoder(
            settings,
            params.model,
            params.encode_batch_size,
            params.ray_actors,
            params.cpus_per_actor,
        )
        with encoder:
            return embed_snapshot(params, settings, index, embedder, encoder)


@task
def publish_embed_report(report: EmbedReport) -> None:
    languages = "\n".join(
        f"| {r['language']} | {r['chunks']} | {r['tokens']} | {r['chars']} "
        f"| {r['tokens_per_100_chars']} |"
        for r in report.languages
    )
    markdown = (
        f"# Embed snapshot {report.snapshot_id}\n\n"
        "| documents | embedded docs | chunks embedded | chunks skipped | chunks deleted "
        "| rows in Milvus | chunks/s | seconds |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {report.documents} | {report.documents_embedded} | {report.chunks_embedded} "
        f"| {report.chunks_skipped} | {report.chunks_deleted} | {report.collection_rows} "
        f"| {report.chunks_per_second:.1f} | {report.seconds} |\n\n"
        "## Tokens per language (embedded this run)\n\n"
        "| language | chunks | tokens | chars | tokens per 100 chars |\n|---|---:|---:|---:|---:|\n"
        + languages
        + _placement_section(report.placement)
    )
    create_markdown_artifact(markdown, key="embed-report", description="Embed counts")


def _placement_section(placement: list[dict]) -> str:
    if not placement:
        return ""
    rows = "\n".join(f"| {p['node']} | {p['batches']} | {p['chunks']} |" for p in placement)
    return (
        "\n\n## Encoded on Ray (per node)\n\n| node | batches | chunks |\n|---|---:|---:|\n" + rows
    )
