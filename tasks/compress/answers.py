"""The quality contract at compression: the uncompressed model and every candidate answer the
same held-out questions from the same passages, so the gate can see a candidate that keeps its
perplexity but loses its answers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.clients import Clients
from tasks.compress.params import AnswerGateParams
from tasks.compress.prepare import Source
from tasks.core.scorers import summarize
from tasks.evaluate.evaluation import answers_of_folder, choose_set, fetch_passages
from tasks.evaluate.params import EvalSetParams
from tasks.evaluate.record import score_answers


def answer_means(
    clients: Clients, source: Source, folders: Mapping[str, Path], params: AnswerGateParams
) -> dict[str, dict[str, float | None]]:
    """Per model (by name): each answer metric's mean over the fine-tuning run's held-out
    questions. A model that fails to load raises (the stage fails with its name)."""
    eval_set, _ = choose_set(
        clients,
        EvalSetParams(
            snapshot_id=source.snapshot_id,
            eval_fraction=source.eval_fraction,
            max_questions=params.questions,
        ),
    )
    examples = eval_set.examples()
    passages = fetch_passages(clients, examples, params.answers.top_k)
    means = {}
    for name, folder in folders.items():
        answers = answers_of_folder(clients, folder, name, examples, passages, params.answers)
        summary = summarize(score_answers(examples, answers, params.answers.top_k))
        means[name] = {metric: s.mean for metric, s in summary.items()}
    return means
