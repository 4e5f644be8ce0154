from prefect import flow

from tasks.ingest.params import IngestParams, IngestReport
from tasks.ingest.tasks import ingest_source, publish_ingest_report, resolve_source
from tasks.shared.run_names import ingest_run_name


@flow(name="ingest_documents", flow_run_name=ingest_run_name, log_prints=True)
def ingest_documents(params: IngestParams = IngestParams()) -> IngestReport:  # noqa: B008
    """Read documents (PDF, Word, web pages, text; from a folder, an object store or a site),
    the ones changed since the last run; screen them for secrets and personal data
    (quarantine, redact or allow, per kind), validate them, keep the good ones and quarantine
    the rest with their reasons."""
    root = resolve_source(params)
    report = ingest_source(root, params)
    publish_ingest_report(report)
    return report
