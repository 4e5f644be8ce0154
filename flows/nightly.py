from prefect import flow
from pydantic import BaseModel, Field

from flows.embed import embed_documents
from flows.finetune import finetune_model
from flows.ingest import ingest_documents
from tasks.embed import EmbedParams, EmbedReport
from tasks.ingest import IngestParams, IngestReport
from tasks.report import publish_pipeline_summary
from tasks.train import FinetuneReport
from tasks.train_prepare import FinetuneParams


class NightlyParams(BaseModel):
    ingest: IngestParams = Field(default_factory=IngestParams, description="Ingest stage.")
    embed: EmbedParams = Field(default_factory=EmbedParams, description="Embed stage.")
    finetune: FinetuneParams = Field(default_factory=FinetuneParams, description="Fine-tuning.")


class NightlyReport(BaseModel):
    ingest: IngestReport
    embed: EmbedReport
    finetune: FinetuneReport
    summary: str


@flow(name="nightly_pipeline", log_prints=True)
def nightly_pipeline(params: NightlyParams = NightlyParams()) -> NightlyReport:  # noqa: B008
    """The whole pipeline, stage after stage: ingest → embed → fine-tune, on one data snapshot."""
    ingested = ingest_documents(params.ingest)
    snapshot = {"snapshot_id": ingested.snapshot_id}
    embedded = embed_documents(params.embed.model_copy(update=snapshot))
    tuned = finetune_model(params.finetune.model_copy(update=snapshot))
    summary = publish_pipeline_summary(ingested, embedded, tuned)
    return NightlyReport(ingest=ingested, embed=embedded, finetune=tuned, summary=summary)


if __name__ == "__main__":
    print(f"\nnightly_pipeline: {nightly_pipeline().summary}")
