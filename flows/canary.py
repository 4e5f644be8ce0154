from prefect import flow

from tasks.canary.params import CanaryOutcome, CanaryParams, StepResult
from tasks.canary.tasks import (
    canary_step_task,
    canary_versions_task,
    conclude_task,
    ensure_serving_task,
    pinned_questions_task,
    publish_canary_report,
    quality_task,
    replay_prompts_task,
)
from tasks.core.canary import plan_steps
from tasks.promote.tasks import publish_alias_history


@flow(name="canary_rollout", flow_run_name="canary-{params.model_name}", log_prints=True)
def canary_rollout(params: CanaryParams = CanaryParams()) -> CanaryOutcome:  # noqa: B008
    """Optionally mirror live traffic to the challenger first (a shadow step: no user gets its
    answers), then give it a growing share of live traffic on the running app, judge every step
    on error rate, p95 latency, held-out quality and paired answers to the same pinned questions
    against the champion, then promote it or roll it back (an inconclusive step gathers more
    answers first). The champion never stops serving; every alias change is recorded."""
    versions = canary_versions_task(params.model_name)
    ensure_serving_task(params, versions)
    quality = quality_task(params.model_name, versions)
    prompts = replay_prompts_task(params.model_name, versions["challenger"])
    pinned = pinned_questions_task(params, versions)
    judged = plan_steps(params.steps)[:-1]  # at 100 % the champion has nothing to compare
    if not judged:
        raise ValueError("give at least one step below 100 to judge the challenger on")
    steps: list[StepResult] = []
    if params.shadow_percent:  # users get the champion's answers only
        shadow = params.shadow_percent
        steps.append(
            canary_step_task(params, versions, 0.0, False, quality, prompts, pinned, shadow)
        )
    for percent in judged:
        if steps and steps[-1].action != "advance":
            break
        last = percent == judged[-1]
        steps.append(canary_step_task(params, versions, percent, last, quality, prompts, pinned))
    outcome = conclude_task(params, versions, steps)
    publish_canary_report(outcome)
    publish_alias_history(params.model_name)
    return outcome
