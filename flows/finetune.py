from prefect import flow

from tasks.finetune.params import FinetuneParams, FinetuneReport
from tasks.finetune.tasks import finetune_task, publish_finetune_report
from tasks.shared.run_names import finetune_run_name


@flow(name="finetune_model", flow_run_name=finetune_run_name, log_prints=True)
def finetune_model(params: FinetuneParams = FinetuneParams()) -> FinetuneReport:  # noqa: B008
    """Fine-tune a causal LM (LoRA or full) on a snapshot with Ray Train; track it in MLflow."""
    report = finetune_task(params)
    publish_finetune_report(report)
    return report
