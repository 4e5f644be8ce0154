from prefect import flow

from tasks.promote.params import PromoteParams, PromoteReport
from tasks.promote.registration import request_approval
from tasks.promote.tasks import (
    apply_decision_task,
    decide_task,
    evaluate_models_task,
    publish_alias_history,
    publish_promotion_report,
    register_candidate_task,
    resolve_candidate,
)
from tasks.shared.run_names import promote_run_name


@flow(name="promote_model", flow_run_name=promote_run_name, log_prints=True)
def promote_model(params: PromoteParams = PromoteParams()) -> PromoteReport:  # noqa: B008
    """Register a compressed model with its lineage as challenger, compare it with its base and
    the champion on the same held-out documents and questions (bits per byte and paired
    answer verdicts), and promote it if the rule (and, when asked for, a person) says so.
    Every alias change is recorded."""
    candidate = resolve_candidate(params)
    registered = register_candidate_task(candidate, params.model_name)
    evaluation = evaluate_models_task(candidate, registered, params)
    decision = decide_task(evaluation, candidate, params)
    approval = request_approval(params, evaluation, decision)  # pauses the run when asked
    report = apply_decision_task(registered, evaluation, decision, approval, params.canary)
    publish_promotion_report(report)
    publish_alias_history(params.model_name)
    return report
