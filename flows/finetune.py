from prefect import flow

from tasks.run_names import finetune_run_name
from tasks.train import FinetuneReport, finetune_task, publish_finetune_report
from tasks.train_prepare import FinetuneParams


@flow(name="finetune_model", flow_run_name=finetune_run_name, log_prints=True)
def finetune_model(params: FinetuneParams = FinetuneParams()) -> FinetuneReport:  # noqa: B008
    """Fine-tune a causal LM (LoRA or full) on a snapshot with Ray Train; track it in MLflow."""
    report = finetune_task(params)
    publish_finetune_report(report)
    return report
