from prefect import flow

from tasks.compress.params import CompressParams, CompressReport
from tasks.compress.tasks import compress_task, publish_compress_report
from tasks.shared.run_names import compress_run_name


@flow(name="compress_model", flow_run_name=compress_run_name, log_prints=True)
def compress_model(params: CompressParams = CompressParams()) -> CompressReport:  # noqa: B008
    """Compress a fine-tuned model every asked way, measure each candidate, keep the best that
    passes the gate (or the uncompressed model)."""
    report = compress_task(params)
    publish_compress_report(report)
    return report
