"""The promotion stage's Prefect tasks: wrappers over `registration`, a reviewer's answer,
the artifacts."""

from __future__ import annotations

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.clients import Clients
from tasks.clients.registry import AliasChange
from tasks.clients.releases import ReleasedVersion
from tasks.clients.tracking import run_url
from tasks.core.promotion import CHAMPION
from tasks.promote.answers import evaluate_answers
from tasks.promote.params import (
    Approval,
    Candidate,
    Evaluation,
    PromoteParams,
    PromoteReport,
    PromotionDecision,
    Registered,
    ReleaseParams,
    history_rows,
)
from tasks.promote.registration import (
    alias_history,
    apply_decision,
    candidate_from_run,
    decide_promotion,
    evaluate_models,
    register_candidate,
    rollback_champion,
)
from tasks.shared.caching import RETRIES
from tasks.shared.runs import current_actor
from tasks.shared.settings import get_settings


@task(**RETRIES)
def resolve_candidate(params: PromoteParams) -> Candidate:
    if params.compress_report is not None:
        return Candidate.from_report(params.compress_report)
    return candidate_from_run(params.compress_run_id, Clients())


@task
def register_candidate_task(candidate: Candidate, name: str) -> Registered:
    return register_candidate(candidate, name, Clients(), current_actor())


@task
def evaluate_models_task(
    candidate: Candidate, registered: Registered, params: PromoteParams
) -> Evaluation:
    """Bits per byte, and (with the answer gate) answers to the held-out questions."""
    clients = Clients()
    evaluation = evaluate_models(candidate, registered, clients)
    if not params.answer_gate or evaluation.champion_version == registered.version:
        return evaluation
    answers = evaluate_answers(candidate, registered, params, clients)
    return evaluation.model_copy(update={"answers": answers})


@task
def decide_task(
    evaluation: Evaluation, candidate: Candidate, params: PromoteParams
) -> PromotionDecision:
    return decide_promotion(
        evaluation, candidate.gate_passed, params.min_improvement, params.canary
    )


@task
def apply_decision_task(
    registered: Registered,
    evaluation: Evaluation,
    decision: PromotionDecision,
    approval: Approval | None,
    canary: bool = False,
) -> PromoteReport:
    return apply_decision(
        registered, evaluation, decision, approval, Clients(), current_actor(), canary
    )


@task
def rollback_task(name: str, reason: str, requested_by: str) -> AliasChange:
    return rollback_champion(name, reason, requested_by or current_actor(), Clients())


@task
def release_task(params: ReleaseParams) -> ReleasedVersion:
    clients = Clients()
    version = params.from_version or clients.registry.aliases(params.model_name).get(CHAMPION)
    if version is None:
        raise ValueError(f"{params.model_name} has no champion: name the version to release")
    actor = params.requested_by or current_actor()
    released = clients.releases.release(
        params.model_name, version, params.changes(), params.instruction, actor
    )
    print(
        f"v{released.version} (release of v{version}) is the challenger: "
        + "; ".join(released.changes)
    )
    return released


@task(**RETRIES)
def publish_alias_history(name: str) -> list[AliasChange]:
    changes = alias_history(name, Clients())
    create_table_artifact(
        history_rows(changes),
        key=f"alias-history-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}",
        description=f"Every alias change of {name}, oldest first",
    )
    return changes


@task
def publish_promotion_report(report: PromoteReport) -> None:
    answers = report.evaluation.answers
    runs = answers.mlflow_runs if answers else {}
    links = " · ".join(f"[{role}]({run_url(get_settings(), rid)})" for role, rid in runs.items())
    evaluations = f"\nEach answer, its passages and scores in MLflow: {links}\n" if links else ""
    create_markdown_artifact(
        report.markdown() + evaluations,
        key="promotion-report",
        description=f"{report.model_name} v{report.version}: {report.verdict}",
    )
