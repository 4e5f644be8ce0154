from prefect import flow

from tasks.embed.index import index_snapshot, publish_embed_report
from tasks.embed.params import EmbedParams, EmbedReport


@flow(name="embed_documents", log_prints=True)
def embed_documents(params: EmbedParams = EmbedParams()) -> EmbedReport:  # noqa: B008
    """Chunk an ingest snapshot by tokens, embed what is new and sync it into Milvus via Feast."""
    report = index_snapshot(params)
    publish_embed_report(report)
    return report
