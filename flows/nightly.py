from prefect import flow
from pydantic import BaseModel, Field

from flows.embed import embed_documents
from flows.ingest import ingest_documents
from tasks.embed import EmbedParams, EmbedReport
from tasks.ingest import IngestParams, IngestReport


class NightlyParams(BaseModel):
    ingest: IngestParams = Field(default_factory=IngestParams, description="Ingest stage.")
    embed: EmbedParams = Field(default_factory=EmbedParams, description="Embed stage.")


class NightlyReport(BaseModel):
    ingest: IngestReport
    embed: EmbedReport


@flow(name="nightly_pipeline", log_prints=True)
def nightly_pipeline(params: NightlyParams = NightlyParams()) -> NightlyReport:  # noqa: B008
    """The whole pipeline, stage after stage: ingest → embed."""
    ingested = ingest_documents(params.ingest)
    embedded = embed_documents(
        params.embed.model_copy(update={"snapshot_id": ingested.snapshot_id})
    )
    return NightlyReport(ingest=ingested, embed=embedded)


if __name__ == "__main__":
    report = nightly_pipeline()
    i, e = report.ingest, report.embed
    print(
        f"\nnightly_pipeline: read {i.read} = accepted {i.accepted} + quarantined {i.quarantined}"
        f" ({i.new_documents} new); embedded {e.chunks_embedded} chunks"
        f" ({e.chunks_per_second:.1f}/s), skipped {e.chunks_skipped}, deleted {e.chunks_deleted};"
        f" {e.collection_rows} chunks searchable in Milvus (snapshot {e.snapshot_id})"
    )
