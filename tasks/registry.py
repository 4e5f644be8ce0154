"""Registration and promotion: every model that leaves compression becomes a registry version
with its lineage; the aliases `challenger` and `champion` carry the state, and every change of
them is recorded (see `tasks.clients.registry`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.runtime import flow_run

from tasks.caching import RETRIES
from tasks.clients.registry import DIGEST_TAG, NONE, AliasChange, model_registry
from tasks.clients.tracking import latest_run_with, run_base_model
from tasks.compress_report import EXPERIMENT as COMPRESS_EXPERIMENT
from tasks.core import promotion
from tasks.evaluate import bits_per_byte, held_out_texts, load_model_folder
from tasks.manifest import manifest_digest
from tasks.registry_report import (
    Approval,
    ApprovalInput,
    Candidate,
    Evaluation,
    PromoteParams,
    PromoteReport,
    PromotionDecision,
    Registered,
    history_rows,
)
from tasks.settings import Settings, get_settings

CHALLENGER, CHAMPION = "challenger", "champion"


def candidate_from_run(run_id: str | None, settings: Settings) -> Candidate:
    """From the tags the compression stage sets on its run (lineage and `chosen`); no id = the
    latest finished compression."""
    client = model_registry(settings).client
    run_id = run_id or latest_run_with(client, COMPRESS_EXPERIMENT, "chosen")
    if run_id is None:
        raise ValueError("no finished compression run to promote: run compress_model first")
    return Candidate.from_run_tags(run_id, client.get_run(run_id).data.tags)


def register_candidate(
    candidate: Candidate, name: str, settings: Settings, actor: str
) -> Registered:
    """A new version (or the one already registered with the same files) as challenger."""
    registry = model_registry(settings)
    digest = registry.run_manifest_digest(candidate.compress_run_id)
    folder = Path(candidate.folder) if candidate.folder else None
    if folder and folder.exists() and manifest_digest(folder) != digest:
        raise ValueError(
            f"the model logged with run {candidate.compress_run_id} is not the chosen folder "
            f"{folder} (manifests differ): refusing to register it"
        )
    aliases = registry.aliases(name)
    version = registry.find_version(name, candidate.compress_run_id, digest)
    reused = version is not None
    if version is not None:  # re-running the flow registers nothing twice
        parent = registry.version_tags(name, version).get("parent_version", NONE)
    else:
        parent = aliases.get(CHAMPION, NONE)
        tags = {
            **candidate.lineage,
            "data_snapshot": candidate.snapshot_id,
            "training_run": candidate.training_run_id,
            "compress_run": candidate.compress_run_id,
            "candidate": candidate.chosen,
            "gate_passed": str(candidate.gate_passed).lower(),
            "parent_version": parent,
            DIGEST_TAG: digest,
        }
        version = registry.register(name, candidate.compress_run_id, tags)
    if version not in (aliases.get(CHALLENGER), aliases.get(CHAMPION)):
        reason = f"registered from compression run {candidate.compress_run_id} ({candidate.chosen})"
        registry.set_alias(name, CHALLENGER, version, action="register", reason=reason, actor=actor)
    return Registered(
        model_name=name, version=version, parent_version=parent, manifest_digest=digest,
        reused=reused,
    )  # fmt: skip


def evaluate_models(candidate: Candidate, registered: Registered, settings: Settings) -> Evaluation:
    """Candidate (as registered), base and champion on the candidate's held-out documents,
    with the split and sequence length of its fine-tuning run."""
    registry, name = model_registry(settings), registered.model_name
    training_run = registry.client.get_run(candidate.training_run_id)
    training = training_run.data
    missing = {"eval_fraction", "seq_len"} - set(training.params)
    if missing or "base_model_path" not in training.tags:
        raise ValueError(
            f"training run {candidate.training_run_id} lacks params {sorted(missing)} or tag "
            "base_model_path: cannot rebuild the evaluation set it held out"
        )
    seq_len = int(training.params["seq_len"])
    texts = held_out_texts(settings, candidate.snapshot_id, float(training.params["eval_fraction"]))

    def score(folder: Path) -> float:
        model, tokenizer = load_model_folder(folder, settings.allow_pickle)
        return bits_per_byte(model, tokenizer, texts, seq_len)

    champion = registry.aliases(name).get(CHAMPION)
    champion_bpb = None
    if champion is not None and champion != registered.version:
        champion_bpb = score(registry.download_verified(name, champion))
    return Evaluation(
        snapshot_id=candidate.snapshot_id,
        texts=len(texts),
        utf8_bytes=sum(len(t.encode("utf-8")) for t in texts),
        seq_len=seq_len,
        version=registered.version,
        candidate_bpb=score(registry.download_verified(name, registered.version)),
        base_model_path=training.tags["base_model_path"],
        base_bpb=score(run_base_model(training_run, settings)),
        champion_version=champion,
        champion_bpb=champion_bpb,
    )


def decide_promotion(
    evaluation: Evaluation, gate_passed: bool, min_improvement: float
) -> PromotionDecision:
    if evaluation.champion_version == evaluation.version:
        return PromotionDecision(
            promote=False, reasons=[f"v{evaluation.version} is already the champion"]
        )
    scores = promotion.Scores(
        evaluation.candidate_bpb,
        evaluation.base_bpb,
        evaluation.champion_bpb,
        evaluation.champion_version,
    )
    decision = promotion.decide(scores, gate_passed, min_improvement)
    return PromotionDecision(promote=decision.promote, reasons=list(decision.reasons))


def request_approval(
    params: PromoteParams, evaluation: Evaluation, decision: PromotionDecision
) -> Approval | None:
    """Pause the flow run until a person approves or rejects in the Prefect UI (only when asked
    for, and only for a candidate the rule would promote). With no answer in time the run fails
    (Prefect marks an expired pause so) and the candidate stays challenger."""
    if not (params.require_approval and decision.promote):
        return None
    reasons = "\n".join(f"- {r}" for r in decision.reasons)
    description = (
        f"## Promote {params.model_name} v{evaluation.version} to champion?\n\n"
        f"{evaluation.markdown()}\nThe decision rule says promote:\n{reasons}\n"
    )
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description),
            timeout=params.approval_timeout_s,
            poll_interval=params.approval_poll_s,
        )
    except FlowPauseTimeout:
        waited = f"nobody approved or rejected within {params.approval_timeout_s} s"
        model_registry(get_settings()).tag_version(
            params.model_name,
            evaluation.version,
            {"approval": "no decision", "review_reason": waited},
        )
        raise FlowPauseTimeout(
            f"{waited}: {params.model_name} v{evaluation.version} stays challenger and the "
            "champion is unchanged; run promote_model again to ask again"
        ) from None
    answered = answer.model_dump(include={"approve", "reviewer", "reason"})
    return Approval(**answered, at=datetime.now(UTC))


def apply_decision(
    registered: Registered,
    evaluation: Evaluation,
    decision: PromotionDecision,
    approval: Approval | None,
    settings: Settings,
    actor: str,
    canary: bool = False,
) -> PromoteReport:
    """Move the aliases as decided, and tag the version with the decision and who made it.
    With `canary`, a passing model that has a champion to face stays challenger instead."""
    registry, name, version = model_registry(settings), registered.model_name, registered.version
    reasons, verdict = list(decision.reasons), ""
    if approval is not None:
        verdict = "approved" if approval.approve else "rejected"
        reasons.append(f"{verdict} by {approval.reviewer}: {approval.reason}")
        actor = approval.reviewer
    promote = decision.promote and (approval is None or approval.approve)
    pending = promote and canary and evaluation.champion_version not in (None, version)
    if pending:
        promote = False
        reasons.append(f"left as challenger: a canary rollout against v"
                       f"{evaluation.champion_version} decides on live traffic")  # fmt: skip
    changes: list[AliasChange] = []
    if promote:
        why = "; ".join(reasons)
        changes.append(
            registry.set_alias(
                name, CHAMPION, version, action=promotion.PROMOTE, reason=why, actor=actor,
                metrics=evaluation.metrics(),
            )
        )  # fmt: skip
        if registry.aliases(name).get(CHALLENGER) == version:
            changes.append(
                registry.set_alias(
                    name, CHALLENGER, None, action="clear", actor=actor,
                    reason=f"v{version} promoted to champion",
                )
            )  # fmt: skip
    if evaluation.champion_version != version:  # a re-run leaves the champion's record alone
        tags = {
            "decision": "promoted" if promote else "canary" if pending else "not promoted",
            "decision_reasons": "\n".join(reasons),
            **{k: f"{v:.6f}" for k, v in evaluation.metrics().items()},
        }
        if approval is not None:
            tags |= {"approval": verdict, "reviewer": approval.reviewer,
                     "review_reason": approval.reason}  # fmt: skip
        registry.tag_version(name, version, tags)
    aliases = registry.aliases(name)
    return PromoteReport(
        model_name=name,
        version=version,
        parent_version=registered.parent_version,
        promoted=promote,
        canary_pending=pending,
        champion=aliases.get(CHAMPION),
        challenger=aliases.get(CHALLENGER),
        evaluation=evaluation,
        reasons=reasons,
        approval=approval,
        changes=changes,
    )


def rollback_champion(name: str, reason: str, actor: str, settings: Settings) -> AliasChange:
    """Put the champion before the current one back (its files verified first)."""
    registry = model_registry(settings)
    current = registry.aliases(name).get(CHAMPION)
    if current is None:
        raise ValueError(f"{name} has no champion: there is nothing to roll back")
    served = [(c.action, c.version) for c in registry.history(name) if c.alias == CHAMPION]
    target = promotion.previous_champion(served)
    if target is None:
        raise ValueError(
            f"{name} has no previous champion to roll back to: v{current} is the only one "
            "that has served (see the alias history)"
        )
    registry.download_verified(name, target)  # refuse to serve files that no longer match
    change = registry.set_alias(
        name, CHAMPION, target, action=promotion.ROLLBACK, reason=reason, actor=actor
    )
    registry.tag_version(name, current, {"rolled_back_at": change.at.isoformat()})
    return change


def alias_history(name: str, settings: Settings | None = None) -> list[AliasChange]:
    """Every alias change of the model, oldest first: what served when, and why."""
    return model_registry(settings or get_settings()).history(name)


def current_actor() -> str:
    """Who acts when no person does: the flow run, by name (its id is in Prefect)."""
    run = flow_run.get_name()
    return f"{flow_run.get_flow_name()} flow run {run}" if run else "plain call"


@task(**RETRIES)
def resolve_candidate(params: PromoteParams) -> Candidate:
    if params.compress_report is not None:
        return Candidate.from_report(params.compress_report)
    return candidate_from_run(params.compress_run_id, get_settings())


@task
def register_candidate_task(candidate: Candidate, name: str) -> Registered:
    return register_candidate(candidate, name, get_settings(), current_actor())


@task
def evaluate_models_task(candidate: Candidate, registered: Registered) -> Evaluation:
    return evaluate_models(candidate, registered, get_settings())


@task
def decide_task(
    evaluation: Evaluation, candidate: Candidate, min_improvement: float
) -> PromotionDecision:
    return decide_promotion(evaluation, candidate.gate_passed, min_improvement)


@task
def apply_decision_task(
    registered: Registered,
    evaluation: Evaluation,
    decision: PromotionDecision,
    approval: Approval | None,
    canary: bool = False,
) -> PromoteReport:
    settings = get_settings()
    return apply_decision(registered, evaluation, decision, approval, settings, current_actor(),
                          canary)  # fmt: skip


@task
def rollback_task(name: str, reason: str, requested_by: str) -> AliasChange:
    return rollback_champion(name, reason, requested_by or current_actor(), get_settings())


@task(**RETRIES)
def publish_alias_history(name: str) -> list[AliasChange]:
    changes = alias_history(name)
    create_table_artifact(
        history_rows(changes),
        key=f"alias-history-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}",
        description=f"Every alias change of {name}, oldest first",
    )
    return changes


@task
def publish_promotion_report(report: PromoteReport) -> None:
    reasons = "\n".join(f"- {r}" for r in report.reasons)
    verdict = "promoted to champion" if report.promoted else "not promoted"
    create_markdown_artifact(
        f"# {report.model_name} v{report.version}: {verdict}\n\n"
        f"Champion now: v{report.champion or NONE}; challenger: v{report.challenger or NONE}; "
        f"parent: v{report.parent_version}\n\n{report.evaluation.markdown()}\n"
        f"## Reasons\n\n{reasons}\n",
        key="promotion-report",
        description=f"{report.model_name} v{report.version}: {verdict}",
    )
