from prefect import flow
from pydantic import BaseModel, Field

from flows.embed import embed_documents
from flows.ingest import ingest_documents
from tasks.embed import EmbedParams, EmbedReport
from tasks.ingest import IngestParams, IngestReport
from tasks.report import publish_pipeline_summary


class NightlyParams(BaseModel):
    ingest: IngestParams = Field(default_factory=IngestParams, description="Ingest stage.")
    embed: EmbedParams = Field(default_factory=EmbedParams, description="Embed stage.")


class NightlyReport(BaseModel):
    ingest: IngestReport
    embed: EmbedReport
    summary: str


@flow(name="nightly_pipeline", log_prints=True)
def nightly_pipeline(params: NightlyParams = NightlyParams()) -> NightlyReport:  # noqa: B008
    """The whole pipeline, stage after stage: ingest → embed."""
    ingested = ingest_documents(params.ingest)
    snapshot = {"snapshot_id": ingested.snapshot_id}
    embedded = embed_documents(params.embed.model_copy(update=snapshot))
    summary = publish_pipeline_summary(ingested, embedded)
    return NightlyReport(ingest=ingested, embed=embedded, summary=summary)


if __name__ == "__main__":
    print(f"\nnightly_pipeline: {nightly_pipeline().summary}")
