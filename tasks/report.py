"""The pipeline's run summary, for the console and the Prefect UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from tasks.canary_report import CanaryOutcome
from tasks.compress_report import CompressReport
from tasks.embed import EmbedReport
from tasks.ingest import IngestReport
from tasks.registry_report import PromoteReport
from tasks.train import FinetuneReport


def summary_rows(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None = None,
) -> list[dict[str, object]]:
    chosen, base = compressed.chosen_row, compressed.baseline
    rolled_out = [
        {"stage": "canary", "metric": f"v{canary.challenger} vs v{canary.champion}",
         "value": canary.verdict},
        {"stage": "canary", "metric": "steps", "value": " -> ".join(
            f"{s.percent:g}% {s.action}" for s in canary.steps)},
        {"stage": "canary", "metric": "champion now", "value": canary.champion_now or "none"},
    ] if canary else []  # fmt: skip
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
        {"stage": "finetune", "metric": "MLflow run", "value": tuned.run_id},
        {"stage": "finetune", "metric": "steps", "value": tuned.steps},
        {"stage": "finetune", "metric": "tokens/s", "value": round(tuned.tokens_per_s)},
        {
            "stage": "finetune",
            "metric": "perplexity before",
            "value": round(tuned.perplexity_before, 1),
        },
        {
            "stage": "finetune",
            "metric": "perplexity after",
            "value": round(tuned.perplexity_after, 1),
        },
        {"stage": "compress", "metric": "chosen", "value": compressed.chosen},
        {
            "stage": "compress",
            "metric": "size vs uncompressed",
            "value": round(chosen.size_bytes / base.size_bytes, 3),
        },
        {
            "stage": "compress",
            "metric": "perplexity change",
            "value": f"{chosen.perplexity / base.perplexity - 1:+.2%}",
        },
        {"stage": "promote", "metric": "version", "value": promoted.version},
        {"stage": "promote", "metric": "promoted", "value": promoted.promoted},
        {"stage": "promote", "metric": "champion", "value": promoted.champion or "none"},
        *rolled_out,
    ]


def summary_line(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None = None,
) -> str:
    chosen, base = compressed.chosen_row, compressed.baseline
    verdict = "promoted to champion" if promoted.promoted else "not promoted"
    if canary:
        verdict = f"canary against v{canary.champion}: {canary.verdict}"
    champion = canary.champion_now if canary else promoted.champion
    return (
        f"read {ingest.read} = accepted {ingest.accepted} + quarantined {ingest.quarantined}"
        f" ({ingest.new_documents} new); embedded {embed.chunks_embedded} chunks"
        f" ({embed.chunks_per_second:.1f}/s), skipped {embed.chunks_skipped}, deleted"
        f" {embed.chunks_deleted}; {embed.collection_rows} chunks searchable in Milvus"
        f" (snapshot {embed.snapshot_id}); fine-tuned {tuned.steps} steps ({tuned.base_model},"
        f" LoRA {100 * tuned.trainable_fraction:.1f}% trainable), held-out perplexity"
        f" {tuned.perplexity_before:.0f} -> {tuned.perplexity_after:.0f}, MLflow run"
        f" {tuned.run_id};"
        f" compressed to {compressed.chosen} (x{chosen.size_bytes / base.size_bytes:.2f} size,"
        f" perplexity {chosen.perplexity / base.perplexity - 1:+.1%}); registered as"
        f" {promoted.model_name} v{promoted.version}, {verdict}"
        f" (champion: v{champion or 'none'})"
    )


@task
def publish_pipeline_summary(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None,
) -> str:
    reports = (ingest, embed, tuned, compressed, promoted, canary)
    line = summary_line(*reports)
    create_table_artifact(summary_rows(*reports), key="nightly-summary", description=line)
    return line
