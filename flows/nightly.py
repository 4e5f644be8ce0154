from prefect import flow
from pydantic import BaseModel, Field

from flows.canary import canary_rollout
from flows.compress import compress_model
from flows.embed import embed_documents
from flows.finetune import finetune_model
from flows.ingest import ingest_documents
from flows.promote import promote_model
from tasks.canary.params import CanaryOutcome
from tasks.compress.params import CompressReport
from tasks.core.cost import StageUsage
from tasks.embed.params import EmbedReport
from tasks.finetune.params import FinetuneReport
from tasks.ingest.params import IngestReport
from tasks.nightly.params import NightlyParams
from tasks.promote.params import PromoteReport
from tasks.promote.summary import publish_pipeline_summary, record_costs
from tasks.shared.run_names import nightly_run_name
from tasks.shared.usage import StageMeter


class NightlyReport(BaseModel):
    ingest: IngestReport
    embed: EmbedReport
    finetune: FinetuneReport
    compress: CompressReport
    promote: PromoteReport
    canary: CanaryOutcome | None = None
    usage: list[StageUsage] = Field(
        default_factory=list, description="What each stage held, used and cost, in order."
    )
    summary: str


@flow(name="nightly_pipeline", flow_run_name=nightly_run_name, log_prints=True)
def nightly_pipeline(params: NightlyParams = NightlyParams()) -> NightlyReport:  # noqa: B008
    """The whole pipeline, stage after stage, on one data snapshot: ingest → embed → fine-tune
    → compress → register → canary rollout on the serving app (when there is a champion to
    face) → champion."""
    meter = StageMeter()  # each stage's wall, CPU and memory in this process, and its cost
    with meter.stage("ingest"):
        ingested = ingest_documents(params.ingest)
    snapshot = {"snapshot_id": ingested.snapshot_id}
    with meter.stage("embed"):
        embedded = embed_documents(params.embed.model_copy(update=snapshot))
    with meter.stage("finetune"):
        tuned = finetune_model(params.finetune.model_copy(update=snapshot))
    meter.add_parts("finetune", tuned.worker_usage)  # the Ray Train workers report their own
    with meter.stage("compress"):
        compressed = compress_model(
            params.compress.model_copy(update={"source_run_id": tuned.run_id})
        )
    with meter.stage("promote"):
        promoted = promote_model(
            params.promote.model_copy(
                update={"compress_report": compressed, "canary": params.rollout is not None}
            )
        )
    rolled_out = None
    if promoted.canary_pending:
        with meter.stage("canary"):
            rolled_out = canary_rollout(
                params.rollout.model_copy(update={"model_name": promoted.model_name})
            )
    record_costs(meter.stages, compressed.run_id, promoted.model_name, promoted.version)
    summary = publish_pipeline_summary(
        ingested, embedded, tuned, compressed, promoted, rolled_out, meter.stages
    )
    return NightlyReport(
        ingest=ingested,
        embed=embedded,
        finetune=tuned,
        compress=compressed,
        promote=promoted,
        canary=rolled_out,
        usage=meter.stages,
        summary=summary,
    )


if __name__ == "__main__":
    print(f"\nnightly_pipeline: {nightly_pipeline().summary}")
