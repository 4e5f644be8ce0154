"""The canary stage's Prefect tasks: each builds the run's clients (with the serving API key,
from a Prefect secret when so configured) and calls the plain functions of `rollout`."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from tasks.canary.answers import pinned_questions
from tasks.canary.params import (
    ROLLED_BACK_EVENT,
    CanaryOutcome,
    CanaryParams,
    StepResult,
    report_markdown,
)
from tasks.canary.rollout import (
    canary_versions,
    conclude,
    ensure_serving,
    quality_scores,
    replay_prompts,
    run_step,
)
from tasks.clients import Clients
from tasks.clients.secrets import with_serving_key
from tasks.core.scorers import Example
from tasks.monitor.params import model_resource
from tasks.shared.caching import RETRIES
from tasks.shared.runs import current_actor
from tasks.shared.settings import get_settings


def _clients() -> Clients:
    """The run's clients, with the serving API key resolved once per task."""
    return Clients(with_serving_key(get_settings()))


@task(**RETRIES)
def canary_versions_task(name: str) -> dict[str, str]:
    return canary_versions(Clients(), name)


@task
def ensure_serving_task(params: CanaryParams, versions: dict[str, str]) -> bool:
    return ensure_serving(_clients(), params, versions)


@task(**RETRIES)
def quality_task(name: str, versions: dict[str, str]) -> dict[str, float]:
    return quality_scores(Clients(), name, versions)


@task(**RETRIES)
def replay_prompts_task(name: str, version: str) -> list[str]:
    return replay_prompts(Clients(), name, version)


@task(**RETRIES)
def pinned_questions_task(params: CanaryParams, versions: dict[str, str]) -> list[Example]:
    """The held-out questions both versions answer at every step (none when not checked)."""
    if not params.answer_check:
        return []
    limit = params.pinned_questions * (1 + params.max_extensions)
    return pinned_questions(Clients(), params.model_name, versions["challenger"], limit)


def _step_name() -> str:
    from prefect.runtime import task_run

    given = task_run.parameters
    if given.get("shadow"):
        return f"canary shadow {given['shadow']:g}%"
    return f"canary step {given['percent']:g}%"


@task(task_run_name=_step_name)
def canary_step_task(
    params: CanaryParams,
    versions: dict[str, str],
    percent: float,
    last: bool,
    quality: dict[str, float] | None,
    prompts: list[str],
    pinned: list[Example],
    shadow: float = 0.0,
) -> StepResult:
    clients = _clients()
    return run_step(clients, params, versions, percent, last, quality, prompts, pinned, shadow)


@task
def conclude_task(
    params: CanaryParams, versions: dict[str, str], steps: list[StepResult]
) -> CanaryOutcome:
    """Conclude; a rollback is also an event (`ROLLED_BACK_EVENT`), which prefect.yaml's
    alert answers."""
    outcome = conclude(_clients(), params, versions, steps, current_actor())
    if outcome.verdict == "rolled back":
        name, last = params.model_name, steps[-1]
        emit_event(
            ROLLED_BACK_EVENT,
            resource={"prefect.resource.id": model_resource(name), "prefect.resource.name": name},
            payload={
                "challenger": outcome.challenger,
                "champion": outcome.champion,
                "percent": last.percent,
                "step": last.label,
                "reasons": last.reasons,
            },
        )
    return outcome


@task
def publish_canary_report(outcome: CanaryOutcome) -> None:
    create_markdown_artifact(
        report_markdown(outcome),
        key="canary-report",
        description=f"{outcome.model_name}: {outcome.verdict}",
    )
