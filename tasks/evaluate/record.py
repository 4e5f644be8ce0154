"""Scores of one version's answers, and their record in MLflow's GenAI evaluation.

`score_answers` is the decision's source: the quality contract's scorers (`tasks.core.scorers`)
over each question. `genai_scorers` wraps the same functions as MLflow code scorers, so
`mlflow.genai.evaluate` records every question's answer, passages and scores as traces that
are browsable in the MLflow UI; its means are the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from tasks.core.scorers import METRICS, Answer, Example, MetricSummary, score


def score_answers(
    examples: Sequence[Example], answers: Sequence[Answer], k: int
) -> list[dict[str, float | None]]:
    if len(examples) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(examples)} questions")
    return [score(e, a, k) for e, a in zip(examples, answers, strict=True)]


def score_table(
    examples: Sequence[Example],
    answers: Sequence[Answer],
    scores: Sequence[dict[str, float | None]],
) -> pd.DataFrame:
    """One row per question: what was asked, expected and answered, and every metric."""
    return pd.DataFrame(
        [
            {
                "question_id": e.question_id,
                "question": e.question,
                "reference": e.reference,
                "answerable": e.answerable,
                "answer": a.text,
                "error": a.error,
                "sources": ",".join(a.passage_doc_ids),
                **s,
            }
            for e, a, s in zip(examples, answers, scores, strict=True)
        ]
    )


def missing_reasons(answers: Sequence[Answer]) -> dict[str, int]:
    """Why answers are missing, with how many each: every metric of those is left out."""
    reasons: dict[str, int] = {}
    for a in answers:
        if a.error is not None:
            reasons[a.error] = reasons.get(a.error, 0) + 1
    return reasons


def summary_table(summaries: dict[str, dict[str, MetricSummary]]) -> str:
    """Markdown: one column per evaluated version, one row per metric (mean and n)."""
    names = list(summaries)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    more = dict.fromkeys(m for s in summaries.values() for m in s if m not in METRICS)
    for metric in [*METRICS, *more]:  # the contract's, then any reported beside (judge_*)
        cells = []
        for name in names:
            s = summaries[name].get(metric)
            cells.append("—" if s is None or s.mean is None else f"{s.mean:.3f} (n={s.n})")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def genai_data(examples: Sequence[Example], answers: Sequence[Answer]) -> pd.DataFrame:
    """The evaluation in MLflow's shape: inputs, outputs (answer, passages, cost) and
    expectations (reference, sources, whether it is answerable)."""
    return pd.DataFrame(
        {
            "inputs": [{"question": e.question} for e in examples],
            "outputs": [
                {
                    "answer": a.text,
                    "passages": list(a.passages),
                    "passage_doc_ids": list(a.passage_doc_ids),
                    "latency_ms": a.latency_ms,
                    "prompt_tokens": a.prompt_tokens,
                    "completion_tokens": a.completion_tokens,
                    "error": a.error,
                }
                for a in answers
            ],
            "expectations": [
                {
                    "expected_response": e.reference,
                    "question_id": e.question_id,
                    "source_doc_ids": list(e.source_doc_ids),
                    "answerable": e.answerable,
                }
                for e in examples
            ],
        }
    )


def _example(inputs: dict[str, Any], expectations: dict[str, Any]) -> Example:
    return Example(
        question_id=expectations["question_id"],
        question=inputs["question"],
        reference=expectations["expected_response"],
        source_doc_ids=tuple(expectations["source_doc_ids"]),
        answerable=bool(expectations["answerable"]),
    )


def _answer(outputs: dict[str, Any]) -> Answer:
    return Answer(
        text=outputs["answer"],
        passage_doc_ids=tuple(outputs["passage_doc_ids"]),
        passages=tuple(outputs["passages"]),
        latency_ms=float(outputs["latency_ms"]),
        prompt_tokens=int(outputs["prompt_tokens"]),
        completion_tokens=int(outputs["completion_tokens"]),
        error=outputs.get("error"),
    )


def genai_scorers(k: int) -> list[Any]:
    """One MLflow code scorer per metric of the contract, each the same pure function."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    def make(metric: str) -> Any:
        def run(inputs: dict, outputs: dict, expectations: dict) -> Any:
            answer = _answer(outputs)
            value = score(_example(inputs, expectations), answer, k)[metric]
            if value is None and answer.error is not None:
                return Feedback(value=None, error=answer.error)
            return value  # None where the metric does not apply: left out of the mean

        return scorer(name=metric)(run)

    return [make(metric) for metric in METRICS]
