"""The evaluation stage's Prefect tasks: wrappers over the plain functions, and the artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from tasks.clients import Clients
from tasks.clients.tracking import run_url
from tasks.core.scorers import Answer
from tasks.evaluate.evaluation import choose_set, record_evaluation, target_answers
from tasks.evaluate.judge import judge_for
from tasks.evaluate.params import EvalSetParams, EvaluateParams, EvaluateReport
from tasks.evaluate.record import score_answers
from tasks.evaluate.sets import load_set
from tasks.shared.caching import RETRIES
from tasks.shared.settings import get_settings


@task(**RETRIES)
def eval_set_task(params: EvalSetParams) -> str:
    """The set's id (a golden file's bad rows are quarantined with reasons on the way)."""
    chosen, golden = choose_set(Clients(), params)
    counts = ", ".join(f"{k} {v}" for k, v in chosen.counts().items())
    print(f"evaluation set {chosen.set_id} ({chosen.origin}): {counts}")
    if golden is not None:
        print(
            f"golden set: read {golden.read} = accepted {golden.accepted} + quarantined "
            f"{golden.quarantined} {golden.reasons}"
        )
    return chosen.set_id


@task
def answer_task(params: EvaluateParams, set_id: str) -> list[Answer]:
    clients = Clients()
    judge_for(clients, params.judge)  # asked for and not usable: refused before answering
    return target_answers(clients, params, load_set(clients.settings, set_id).examples())


@task
def record_task(params: EvaluateParams, set_id: str, answers: list[Answer]) -> EvaluateReport:
    clients = Clients()
    chosen = load_set(clients.settings, set_id)
    examples, k = chosen.examples(), params.answers.top_k
    scores = score_answers(examples, answers, k)
    judge = judge_for(clients, params.judge)
    return record_evaluation(
        clients, params.target, chosen, examples, answers, scores, k, judge=judge
    )


@task
def publish_evaluation(report: EvaluateReport) -> None:
    missing = "".join(f"\n- {n} answer(s) missing: {why}" for why, n in report.missing.items())
    if report.judge is not None:
        j = report.judge
        missing += f"\n\nJudged by {j.judge} with `{j.prompt}`." + "".join(
            f"\n- {n} judged value(s) missing: {why}" for why, n in j.missing.items()
        )
    create_markdown_artifact(
        key="evaluation",
        markdown=(
            f"# Evaluation of {report.target}\n\n"
            f"Set `{report.set_id}`: {report.questions} questions ({report.answerable} "
            f"answerable). [MLflow run `{report.mlflow_run_id}`]"
            f"({run_url(get_settings(), report.mlflow_run_id)}) holds every question's answer, "
            f"passages and scores.{missing}\n\n{report.table}\n"
        ),
        description=f"Answer quality of {report.target}",
    )
