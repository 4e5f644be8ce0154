from prefect import flow

from tasks.embed.params import EmbedParams, EmbedReport
from tasks.embed.tasks import index_snapshot, publish_embed_report
from tasks.shared.run_names import embed_run_name


@flow(name="embed_documents", flow_run_name=embed_run_name, log_prints=True)
def embed_documents(params: EmbedParams = EmbedParams()) -> EmbedReport:  # noqa: B008
    """Chunk an ingest snapshot by tokens, embed what is new and sync it into Milvus via Feast."""
    report = index_snapshot(params)
    publish_embed_report(report)
    return report
