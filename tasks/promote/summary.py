"""The pipeline's run summary, for the console and the Prefect UI."""

from __future__ import annotations

import json
import time

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.canary.params import CanaryOutcome
from tasks.compress.params import CompressReport
from tasks.core.cost import MODEL_STAGES, StageUsage, usage_metrics, version_cost
from tasks.embed.params import EmbedReport
from tasks.finetune.params import FinetuneReport
from tasks.ingest.params import IngestReport
from tasks.promote.params import PromoteReport, version_name
from tasks.promote.summary_page import (
    model_scores,
    stage_outcomes,
    stage_table,
    summary_figure,
    summary_markdown,
)


def summary_rows(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None = None,
    usage: list[StageUsage] | None = None,
) -> list[dict[str, object]]:
    chosen, base = compressed.chosen_row, compressed.baseline
    rolled_out = (
        [
            {
                "stage": "canary",
                "metric": f"v{canary.challenger} vs v{canary.champion}",
                "value": canary.verdict,
            },
            {
                "stage": "canary",
                "metric": "steps",
                "value": " -> ".join(f"{s.percent:g}% {s.action}" for s in canary.steps),
            },
            {"stage": "canary", "metric": "champion now", "value": canary.champion_now or "none"},
        ]
        if canary
        else []
    )
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
        *answer_rows(promoted),
        {"stage": "promote", "metric": "promoted", "value": promoted.promoted},
        {"stage": "promote", "metric": "champion", "value": promoted.champion or "none"},
        *rolled_out,
        *cost_rows(usage or [], promoted.model_name, promoted.version),
    ]


def cost_rows(usage: list[StageUsage], model: str, version: str | None) -> list[dict[str, object]]:
    """What each stage held, used and cost; the run's total; the model version's share."""
    if not usage:
        return []
    currency = usage[0].cost.currency
    rows: list[dict[str, object]] = []
    for s in usage:
        peaks = ", ".join(f"{p.part} {p.peak_memory_bytes / 2**20:.0f}" for p in s.parts)
        rows += [
            {"stage": s.stage, "metric": "wall s", "value": round(s.wall_s, 2)},
            {"stage": s.stage, "metric": "CPU-core-s held", "value": round(s.cpu_core_s, 2)},
            {"stage": s.stage, "metric": "CPU-s used", "value": round(s.cpu_s, 2)},
            {"stage": s.stage, "metric": "GPU-s", "value": round(s.gpu_s, 2)},
            {"stage": s.stage, "metric": "peak memory MiB", "value": peaks},
            {"stage": s.stage, "metric": f"cost {currency}", "value": round(s.cost.total, 6)},
        ]
    total = sum(s.cost.total for s in usage)
    rows.append({"stage": "total", "metric": f"cost {currency}", "value": round(total, 6)})
    if version:
        rows.append(
            {
                "stage": f"{model} v{version}",
                "metric": f"cost {currency}",
                "value": round(version_cost(usage), 6),
            }
        )
    return rows


def answer_rows(promoted: PromoteReport) -> list[dict[str, object]]:
    """The candidate's answers beside its base's, and the paired verdicts."""
    answers = promoted.evaluation.answers
    if answers is None:
        return []
    rows = [
        {
            "stage": "promote",
            "metric": f"{metric} (base → candidate)",
            "value": " → ".join(_mean(answers.means.get(r, {}).get(metric)) for r in ROLES),
        }
        for metric in ("token_f1", "groundedness", "empty")
    ]
    rows.append({"stage": "promote", "metric": "answers vs base", "value": answers.vs_base})
    if answers.vs_champion:
        rows.append(
            {"stage": "promote", "metric": "answers vs champion", "value": answers.vs_champion}
        )
    return rows


ROLES = ("base", "candidate")


def _mean(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _answers_clause(promoted: PromoteReport) -> str:
    answers = promoted.evaluation.answers
    if answers is None:
        return ""
    mine, base = answers.means.get("candidate", {}), answers.means.get("base", {})
    return (
        f"; answers on {answers.questions} held-out questions: token F1"
        f" {_mean(base.get('token_f1'))} -> {_mean(mine.get('token_f1'))}, grounded"
        f" {_mean(mine.get('groundedness'))}, empty {_mean(mine.get('empty'))}"
        f" ({answers.vs_base} than the base)"
    )


def summary_line(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None = None,
    usage: list[StageUsage] | None = None,
) -> str:
    chosen, base = compressed.chosen_row, compressed.baseline
    verdict = promoted.verdict
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
        f" (champion: {version_name(champion)})"
        f"{_answers_clause(promoted)}"
        f"{_cost_clause(usage or [], promoted.version)}"
    )


def _cost_clause(usage: list[StageUsage], version: str | None) -> str:
    if not usage:
        return ""
    cost = sum(s.cost.total for s in usage)
    held = sum(s.cpu_core_s for s in usage)
    gpu = sum(s.gpu_s for s in usage)
    of_version = f", v{version} {version_cost(usage):.4f}" if version else ""
    return (
        f"; held {held:.0f} CPU-core-s and {gpu:.0f} GPU-s, estimated cost "
        f"{cost:.4f} {usage[0].cost.currency}{of_version}"
    )


@task
def publish_pipeline_summary(
    ingest: IngestReport,
    embed: EmbedReport,
    tuned: FinetuneReport,
    compressed: CompressReport,
    promoted: PromoteReport,
    canary: CanaryOutcome | None,
    usage: list[StageUsage] | None = None,
) -> str:
    reports = (ingest, embed, tuned, compressed, promoted, canary, usage)
    line = summary_line(*reports)
    outcomes = stage_outcomes(ingest, embed, tuned, compressed, promoted, canary)
    figure = summary_figure(usage or [], model_scores(promoted))
    create_markdown_artifact(
        summary_markdown(line, figure, stage_table(outcomes, usage or [])),
        key="nightly-summary",
        description="What each stage did, its time and cost, and the model's scores",
    )
    create_table_artifact(summary_rows(*reports), key="nightly-details", description=line)
    return line


@task
def record_costs(
    usage: list[StageUsage], compress_run_id: str, model: str, version: str | None
) -> None:
    """The compression stage's usage on its MLflow run (fine-tuning logs its own), and the cost
    of the model version on its registry entry, where a person choosing a model looks."""
    from mlflow.entities import Metric

    from tasks.clients.tracking import connect
    from tasks.shared.settings import get_settings

    settings = get_settings()
    client = connect(settings)
    stamp = int(time.time() * 1000)
    for stage in usage:
        if stage.stage == "compress":
            metrics = usage_metrics(stage.parts, settings.prices)
            client.log_batch(compress_run_id, [Metric(k, v, stamp, 0) for k, v in metrics.items()])
    if version:
        by_stage = {s.stage: round(s.cost.total, 6) for s in usage if s.stage in MODEL_STAGES}
        client.set_model_version_tag(model, version, "cost.total", f"{version_cost(usage):.6f}")
        client.set_model_version_tag(model, version, "cost.currency", usage[0].cost.currency)
        client.set_model_version_tag(model, version, "cost.stages", json.dumps(by_stage))
