from prefect import flow

from tasks.evaluate.params import EvaluateParams, EvaluateReport
from tasks.evaluate.tasks import answer_task, eval_set_task, publish_evaluation, record_task
from tasks.shared.run_names import evaluate_run_name


@flow(name="evaluate_model", flow_run_name=evaluate_run_name, log_prints=True)
def evaluate_model(params: EvaluateParams = EvaluateParams()) -> EvaluateReport:  # noqa: B008
    """Score a registered version, a fine-tuning run or an OpenAI-compatible endpoint on an
    evaluation set with the quality contract's scorers, and record every answer in MLflow."""
    set_id = eval_set_task(params.eval_set)
    answers = answer_task(params, set_id)
    report = record_task(params, set_id, answers)
    publish_evaluation(report)
    return report


if __name__ == "__main__":
    print(evaluate_model().table)
