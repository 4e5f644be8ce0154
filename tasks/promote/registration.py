"""Registration and promotion: every model that leaves compression becomes a registry version
with its lineage; the aliases `challenger` and `champion` carry the state, and every change of
them is recorded (see `tasks.clients.registry`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run

from tasks.clients import Clients
from tasks.clients.registry import DIGEST_TAG, NONE, AliasChange
from tasks.clients.tracking import latest_run_with, run_base_model
from tasks.compress.params import EXPERIMENT as COMPRESS_EXPERIMENT
from tasks.core import promotion
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.promote.answers import verdicts
from tasks.promote.params import (
    Approval,
    ApprovalInput,
    Candidate,
    Evaluation,
    PromoteParams,
    PromoteReport,
    PromotionDecision,
    Registered,
)
from tasks.shared.manifest import manifest_digest
from tasks.shared.models import bits_per_byte, held_out_texts, load_model_folder


def candidate_from_run(run_id: str | None, clients: Clients) -> Candidate:
    """From the tags the compression stage sets on its run (lineage and `chosen`); no id = the
    latest finished compression."""
    client = clients.registry.client
    run_id = run_id or latest_run_with(client, COMPRESS_EXPERIMENT, "chosen")
    if run_id is None:
        raise ValueError("no finished compression run to promote: run compress_model first")
    return Candidate.from_run_tags(run_id, client.get_run(run_id).data.tags)


def register_candidate(candidate: Candidate, name: str, clients: Clients, actor: str) -> Registered:
    """A new version (or the one already registered with the same files) as challenger."""
    registry = clients.registry
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
            **clients.releases.for_new_version(name).tags(),
        }
        version = registry.register(name, candidate.compress_run_id, tags)
    if version not in (aliases.get(CHALLENGER), aliases.get(CHAMPION)):
        reason = f"registered from compression run {candidate.compress_run_id} ({candidate.chosen})"
        registry.set_alias(name, CHALLENGER, version, action="register", reason=reason, actor=actor)
    return Registered(
        model_name=name,
        version=version,
        parent_version=parent,
        manifest_digest=digest,
        reused=reused,
    )


def evaluate_models(candidate: Candidate, registered: Registered, clients: Clients) -> Evaluation:
    """Candidate (as registered), base and champion on the candidate's held-out documents,
    with the split and sequence length of its fine-tuning run."""
    registry, name = clients.registry, registered.model_name
    training_run = registry.client.get_run(candidate.training_run_id)
    training = training_run.data
    missing = {"eval_fraction", "seq_len"} - set(training.params)
    if missing or "base_model_path" not in training.tags:
        raise ValueError(
            f"training run {candidate.training_run_id} lacks params {sorted(missing)} or tag "
            "base_model_path: cannot rebuild the evaluation set it held out"
        )
    seq_len = int(training.params["seq_len"])
    texts = held_out_texts(
        clients.settings, candidate.snapshot_id, float(training.params["eval_fraction"])
    )

    def score(folder: Path) -> float:
        model, tokenizer = load_model_folder(folder, clients.settings.allow_pickle)
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
        base_bpb=score(run_base_model(training_run, clients.settings)),
        champion_version=champion,
        champion_bpb=champion_bpb,
    )


def decide_promotion(
    evaluation: Evaluation, gate_passed: bool, min_improvement: float, canary: bool = False
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
    answers = verdicts(evaluation.answers) if evaluation.answers is not None else None
    decision = promotion.decide(scores, gate_passed, min_improvement, answers, canary)
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
        Clients().registry.tag_version(
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
    clients: Clients,
    actor: str,
    canary: bool = False,
) -> PromoteReport:
    """Move the aliases as decided, and tag the version with the decision and who made it.
    With `canary`, a passing model that has a champion to face stays challenger instead."""
    registry, name, version = clients.registry, registered.model_name, registered.version
    reasons, verdict = list(decision.reasons), ""
    if approval is not None:
        verdict = "approved" if approval.approve else "rejected"
        reasons.append(f"{verdict} by {approval.reviewer}: {approval.reason}")
        actor = approval.reviewer
    promote = decision.promote and (approval is None or approval.approve)
    pending = promote and canary and evaluation.champion_version not in (None, version)
    if pending:
        promote = False
        reasons.append(
            f"left as challenger: a canary rollout against v"
            f"{evaluation.champion_version} decides on live traffic"
        )
    changes: list[AliasChange] = []
    if promote:
        why = "; ".join(reasons)
        changes.append(
            registry.set_alias(
                name,
                CHAMPION,
                version,
                action=promotion.PROMOTE,
                reason=why,
                actor=actor,
                metrics=evaluation.metrics(),
            )
        )
        if registry.aliases(name).get(CHALLENGER) == version:
            changes.append(
                registry.set_alias(
                    name,
                    CHALLENGER,
                    None,
                    action="clear",
                    actor=actor,
                    reason=f"v{version} promoted to champion",
                )
            )
    if evaluation.champion_version != version:  # a re-run leaves the champion's record alone
        tags = {
            "decision": "promoted" if promote else "canary" if pending else "not promoted",
            "decision_reasons": "\n".join(reasons),
            **{k: f"{v:.6f}" for k, v in evaluation.metrics().items()},
        }
        if approval is not None:
            tags |= {
                "approval": verdict,
                "reviewer": approval.reviewer,
                "review_reason": approval.reason,
            }
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


def rollback_champion(name: str, reason: str, actor: str, clients: Clients) -> AliasChange:
    """Put the champion before the current one back (its files verified first)."""
    registry = clients.registry
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


def alias_history(name: str, clients: Clients) -> list[AliasChange]:
    """Every alias change of the model, oldest first: what served when, and why."""
    return clients.registry.history(name)
