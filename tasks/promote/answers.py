"""The quality contract at promotion: the candidate, its base model and the champion answer the
same held-out questions from the same passages, and paired comparisons decide."""

from __future__ import annotations

from pathlib import Path

from tasks.clients import Clients
from tasks.clients.tracking import run_base_model
from tasks.core.paired import Verdict
from tasks.core.promotion import CHAMPION, AnswerVerdicts
from tasks.evaluate.compare import compare_scores
from tasks.evaluate.evaluation import (
    answers_of_folder,
    choose_set,
    fetch_passages,
    record_evaluation,
)
from tasks.evaluate.params import EvalSetParams
from tasks.evaluate.record import score_answers
from tasks.promote.params import AnswerEvaluation, Candidate, PromoteParams, Registered


def evaluate_answers(
    candidate: Candidate, registered: Registered, params: PromoteParams, clients: Clients
) -> AnswerEvaluation:
    """Every version's answers recorded in MLflow (experiment `evaluate`), and the candidate's
    paired verdicts against its base model and the champion."""
    registry, name = clients.registry, registered.model_name
    training = registry.client.get_run(candidate.training_run_id)
    eval_fraction = float(training.data.params["eval_fraction"])
    eval_set, _ = choose_set(
        clients,
        EvalSetParams(
            snapshot_id=candidate.snapshot_id,
            eval_fraction=eval_fraction,
            max_questions=params.eval_questions,
        ),
    )
    examples = eval_set.examples()
    passages = fetch_passages(clients, examples, params.answers.top_k)
    folders: dict[str, tuple[str, Path]] = {
        "candidate": (
            f"{name} v{registered.version}",
            registry.download_verified(name, registered.version),
        ),
        "base": ("base model", run_base_model(training, clients.settings)),
    }
    champion = registry.aliases(name).get(CHAMPION)
    if champion is not None and champion != registered.version:
        folders["champion"] = (f"{name} v{champion}", registry.download_verified(name, champion))
    scores, means, runs = {}, {}, {}
    k = params.answers.top_k
    for role, (label, folder) in folders.items():
        answers = answers_of_folder(clients, folder, label, examples, passages, params.answers)
        scores[role] = score_answers(examples, answers, k)
        report = record_evaluation(
            clients,
            label,
            eval_set,
            examples,
            answers,
            scores[role],
            k,
            tags={"gate": "promote", "role": role, "model_name": name},
        )
        means[role] = {m: v.mean for m, v in report.metrics.items()}
        runs[role] = report.mlflow_run_id
    vs_base, rows, base_reasons = compare_scores(
        scores["candidate"], scores["base"], params.contract, "base"
    )
    vs_champion, champion_reasons = None, []
    if "champion" in scores:
        vs_champion, more, champion_reasons = compare_scores(
            scores["candidate"], scores["champion"], params.contract, "champion"
        )
        rows += more
    return AnswerEvaluation(
        set_id=eval_set.set_id,
        questions=len(examples),
        means=means,
        mlflow_runs=runs,
        comparisons=rows,
        vs_base=vs_base,
        vs_champion=vs_champion,
        base_reasons=base_reasons,
        champion_reasons=champion_reasons,
    )


def verdicts(answers: AnswerEvaluation) -> AnswerVerdicts:
    return AnswerVerdicts(
        vs_base=Verdict(answers.vs_base),
        vs_champion=Verdict(answers.vs_champion) if answers.vs_champion else None,
        base_reasons=tuple(answers.base_reasons),
        champion_reasons=tuple(answers.champion_reasons),
    )
