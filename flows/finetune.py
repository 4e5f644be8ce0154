from prefect import flow

from tasks.finetune.params import FinetuneParams, FinetuneReport
from tasks.finetune.tasks import finetune_task, publish_finetune_report


@flow(name="finetune_model", log_prints=True)
def finetune_model(params: FinetuneParams = FinetuneParams()) -> FinetuneReport:  # noqa: B008
    """Fine-tune a causal LM (LoRA or full) on a snapshot with Ray Train; track it in MLflow."""
    report = finetune_task(params)
    publish_finetune_report(report)
    return report
