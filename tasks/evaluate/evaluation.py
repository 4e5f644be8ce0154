"""One evaluation, start to end: the set, the target's answers, their scores and the record.

The gates use the same pieces: `answers_of_folder` for any model folder (a candidate, a base,
a registered version), `record_evaluation` to put a version's answers into MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.clients import Clients
from tasks.clients.tracking import finetuned_model, genai_evaluate, log_dataset, start_run
from tasks.core.promotion import CHAMPION
from tasks.core.scorers import Answer, Example, summarize
from tasks.evaluate.answer import (
    Passage,
    answer_with_endpoint,
    answer_with_model,
    load_for_evaluation,
    retrieve,
)
from tasks.evaluate.golden import GoldenReport
from tasks.evaluate.judge import NOTE as JUDGE_NOTE
from tasks.evaluate.judge import judge_answers
from tasks.evaluate.params import (
    EXPERIMENT,
    AnswerParams,
    EvalSetParams,
    EvaluateParams,
    EvaluateReport,
    JudgeRecord,
    MetricValue,
)
from tasks.evaluate.record import (
    genai_data,
    genai_scorers,
    missing_reasons,
    score_table,
    summary_table,
)
from tasks.evaluate.sets import EvalSet, generated_set, golden_set, load_set, training_leaks
from tasks.shared.lake import split_snapshot

if TYPE_CHECKING:
    from tasks.clients.judge import Judge


def choose_set(clients: Clients, params: EvalSetParams) -> tuple[EvalSet, GoldenReport | None]:
    """The stored set named, a golden file validated into one, or the snapshot's generated set;
    a generated set whose sources sit on the training side is refused."""
    settings = clients.settings
    if params.set_id:
        return load_set(settings, params.set_id), None
    if params.golden_path:
        return golden_set(settings, Path(params.golden_path), params.snapshot_id)
    chosen = generated_set(
        settings,
        params.snapshot_id,
        params.eval_fraction,
        params.max_questions,
        per_document=params.per_document,
        seed=params.seed,
    )
    _, train, _ = split_snapshot(settings, chosen.snapshot_id, params.eval_fraction)
    leaks = training_leaks(chosen, set(train["doc_id"]))
    if leaks:
        raise ValueError(
            f"evaluation set {chosen.set_id} asks about {len(leaks)} training document(s) "
            f"({leaks[:3]}): it would score a model on what it trained on"
        )
    return chosen, None


def target_folder(clients: Clients, params: EvaluateParams) -> Path:
    """The verified model folder of a registered version (number or alias) or a run."""
    if params.run_id:
        return finetuned_model(clients.settings, params.run_id)
    registry, name = clients.registry, params.model_name
    version = params.version or CHAMPION
    if not version.isdigit():
        aliases = registry.aliases(name)
        if version not in aliases:
            raise ValueError(f"{name} has no version with alias {version!r} (has {aliases})")
        version = aliases[version]
    return registry.download_verified(name, version)


def fetch_passages(
    clients: Clients, examples: Sequence[Example], top_k: int
) -> list[list[Passage]]:
    """Every question's passages, the index opened for this and closed after: a Milvus Lite
    file is held by one process at a time, and the serving app's retriever needs it too."""
    from tasks.clients.feature_store import ChunkIndex

    with ChunkIndex(clients.settings) as index:
        return retrieve(examples, index, top_k)


def answers_of_folder(
    clients: Clients,
    folder: Path,
    label: str,
    examples: Sequence[Example],
    passages: Sequence[Sequence[Passage]],
    how: AnswerParams,
) -> list[Answer]:
    """Answers of the model in `folder`; one that fails to load raises `ModelLoadError`."""
    model, tokenizer = load_for_evaluation(folder, label, clients.settings.allow_pickle)
    return answer_with_model(
        model,
        tokenizer,
        examples,
        passages,
        how.max_tokens,
        clients.settings.serving_max_prompt_tokens,
        how.batch_size,
        how.threads,
    )


def target_answers(
    clients: Clients, params: EvaluateParams, examples: Sequence[Example]
) -> list[Answer]:
    how = params.answers
    if params.endpoint and params.endpoint_retrieval:
        passages = None  # the serving app retrieves and returns its sources
    else:
        passages = fetch_passages(clients, examples, how.top_k)
    if params.endpoint:
        return answer_with_endpoint(
            params.endpoint,
            examples,
            passages,
            how.max_tokens,
            api_key=_serving_key(clients),
            model=params.endpoint_model,
            version=params.pin_version,
            top_k=how.top_k,
        )
    folder = target_folder(clients, params)
    return answers_of_folder(clients, folder, params.target, examples, passages, how)


def record_evaluation(
    clients: Clients,
    label: str,
    eval_set: EvalSet,
    examples: Sequence[Example],
    answers: Sequence[Answer],
    scores: Sequence[dict[str, float | None]],
    k: int,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    judge: Judge | None = None,
) -> EvaluateReport:
    """Record scored answers: MLflow GenAI evaluation (a trace per question with its answer,
    passages and scores), the set as the run's input dataset, the means as metrics and the
    per-question table as an artifact. With `judge`, its grades are recorded and reported
    beside the scores (`tasks.evaluate.judge`); `scores`, what gates decide with, stay as
    they are."""
    settings = clients.settings
    with start_run(settings, f"evaluate {label}", EXPERIMENT, nested=nested) as run:
        run.set_tags({"target": label, "eval_set": eval_set.set_id, **(tags or {})})
        run.log_params({"k": k, "questions": len(examples), **eval_set.counts()})
        log_dataset(eval_set.frame, str(eval_set.path), f"evalset-{eval_set.set_id}", "eval")
        rows, scorers, judged = list(scores), genai_scorers(k), None
        if judge is not None:
            judged = judge_answers(judge, examples, answers)
            judged.record(run)
            rows = [{**s, **j} for s, j in zip(scores, judged.scores(), strict=True)]
            scorers += judged.scorers()
        summary = summarize(rows)
        genai_evaluate(settings, genai_data(examples, answers), scorers)
        run.log_metrics({f"eval_{m}": s.mean for m, s in summary.items() if s.mean is not None})
        table = score_table(examples, answers, rows)
        run.log_table(table.to_dict(orient="list"), "evaluation/answers.json")
    markdown = summary_table({label: summary})
    judge_record = None
    if judged is not None:
        markdown += f"\n\n{JUDGE_NOTE}"
        judge_record = JudgeRecord(
            judge=judged.judge, prompt=judged.prompt.uri, missing=judged.missing()
        )
    return EvaluateReport(
        target=label,
        set_id=eval_set.set_id,
        questions=len(examples),
        answerable=sum(e.answerable for e in examples),
        metrics={m: MetricValue(mean=s.mean, n=s.n, missing=s.missing) for m, s in summary.items()},
        missing=missing_reasons(answers),
        mlflow_run_id=run.run_id,
        table=markdown,
        judge=judge_record,
    )


def _serving_key(clients: Clients) -> str | None:
    from tasks.clients.secrets import with_serving_key

    key = with_serving_key(clients.settings).serving_api_key
    return key.get_secret_value() if key is not None else None
