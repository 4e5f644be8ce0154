"""Evaluation: MLflow's GenAI harness against a plain loop, retrieval quality of the default
index, and the answer scores of a nightly's models.

1. Harness cost. The demo corpus is ingested and embedded; an evaluation set of up to 200
   questions is generated from it (held-out share 0.5, so there are enough documents), and
   every question gets the same prediction: the first sentence of its best retrieved passage
   (an extractive answer; no model is needed to time the recording). Then, alternately:
   - plain: the platform's scorers over every (question, answer) in a loop, the means logged
     as metrics and the per-question table as an artifact of an MLflow run;
   - harness: the same in `mlflow.genai.evaluate` with the same scorers (a trace per question).
   Goal: harness <= 1.3 x plain.
2. Retrieval: recall@5 and MRR of the default index (all-MiniLM-L6-v2, Milvus Lite through
   Feast, the embed stage's defaults) on the answerable generated questions. Goal recall@5
   >= 0.85.
3. With `--home PATH` (a state folder after `make nightly`): the score table of the latest
   fine-tuning run's base model, the fine-tuned model and every candidate of the latest
   compression run, on the held-out questions of that run's own split, answered in-process.

    python benchmarks/bench_evaluate.py [--quick] [--repeats N] [--home PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path
from typing import Any

import _common

from tasks.clients import Clients
from tasks.clients.tracking import genai_evaluate, start_run
from tasks.core.scorers import Answer, summarize
from tasks.evaluate.evaluation import answers_of_folder, fetch_passages
from tasks.evaluate.params import AnswerParams
from tasks.evaluate.record import genai_data, genai_scorers, score_answers, score_table
from tasks.evaluate.sets import generated_set

K, GOAL_HARNESS, GOAL_RECALL = 5, 1.3, 0.85
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def first_sentence(text: str) -> str:
    return _SENTENCE.split(text.strip(), maxsplit=1)[0][:300]


def extractive_answers(passages: list[list[Any]]) -> list[Answer]:
    return [
        Answer(
            text=first_sentence(hits[0].text) if hits else "",
            passage_doc_ids=tuple(h.doc_id for h in hits),
            passages=tuple(h.text for h in hits),
            latency_ms=0.0,
            prompt_tokens=0,
            completion_tokens=0,
        )
        for hits in passages
    ]


def plain(settings: Any, examples: list, answers: list[Answer]) -> float:
    started = time.perf_counter()
    scores = score_answers(examples, answers, K)
    means = {f"eval_{m}": s.mean for m, s in summarize(scores).items() if s.mean is not None}
    with start_run(settings, "bench plain", "bench-evaluate") as run:
        run.log_metrics(means)
        table = score_table(examples, answers, scores)
        run.log_table(table.to_dict(orient="list"), "evaluation/answers.json")
    return time.perf_counter() - started


def harness(settings: Any, examples: list, answers: list[Answer]) -> float:
    started = time.perf_counter()
    with start_run(settings, "bench harness", "bench-evaluate"):
        genai_evaluate(settings, genai_data(examples, answers), genai_scorers(K))
    return time.perf_counter() - started


def score_nightly(home: Path) -> list[list[Any]]:
    """Base, fine-tuned and each compression candidate of the latest runs under `home`."""
    import os

    os.environ["LLMOPS_HOME"] = str(home)
    from tasks.clients.tracking import latest_run_with, run_base_model
    from tasks.compress.params import EXPERIMENT as COMPRESS
    from tasks.compress.prepare import resolve_source
    from tasks.evaluate.evaluation import choose_set
    from tasks.evaluate.params import EvalSetParams
    from tasks.shared.settings import get_settings

    clients = Clients(get_settings())
    run_id = latest_run_with(clients.tracking, COMPRESS, "chosen")
    compress = clients.tracking.get_run(run_id)
    source = resolve_source(clients.settings, compress.data.tags["training_run"])
    training = clients.tracking.get_run(source.run_id)
    questions = EvalSetParams(snapshot_id=source.snapshot_id, eval_fraction=source.eval_fraction)
    eval_set = choose_set(clients, questions)[0]
    examples = eval_set.examples()
    passages = fetch_passages(clients, examples, 4)
    folders = {"base": run_base_model(training, clients.settings), "fine-tuned": source.folder}
    out = clients.settings.models_dir / "compressed" / run_id
    folders |= {p.name: p for p in sorted(out.iterdir()) if p.is_dir()}
    rows = []
    for name, folder in folders.items():
        answers = answers_of_folder(clients, folder, name, examples, passages, AnswerParams())
        s = summarize(score_answers(examples, answers, 4))
        rows.append(
            [
                name,
                len(examples),
                *(s[m].mean for m in ("token_f1", "groundedness", "refusal_correct", "empty")),
                s["citation_correct"].mean,
                s["latency_ms"].mean,
            ]
        )
    print(f"\nset {eval_set.set_id}: {eval_set.counts()}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ten topics, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", type=Path, help="score a nightly's models in this state folder")
    parser.add_argument("--json")
    args = parser.parse_args()
    info = _common.machine()
    _common.print_machine(info)
    result: dict[str, Any] = {"machine": info}
    if args.home:
        rows = score_nightly(args.home)
        headers = ["model", "questions", "token F1", "grounded", "refusal ok", "empty"]
        _common.print_table([*headers, "citation ok", "ms/answer (batch)"], rows)
        result["scores"] = rows
        _common.write_json(args.json, result)
        return
    with _common.fresh_home("evaluate") as settings:
        root = _common.write_demo_corpus(settings, args.quick)
        _, _, index = _common.ingest_and_embed(settings, root)
        index.close()
        eval_set = generated_set(
            settings, None, eval_fraction=0.5, max_questions=200, per_document=8
        )
        examples = eval_set.examples()
        clients = Clients(settings)
        passages = fetch_passages(clients, examples, K)
        answers = extractive_answers(passages)
        print(f"\n{len(examples)} questions: {eval_set.counts()}")
        harness(settings, examples[:2], answers[:2])  # imports and first-use set-up
        times: dict[str, list[float]] = {"plain": [], "harness": []}
        for _ in range(1 if args.quick else args.repeats):
            times["plain"].append(plain(settings, examples, answers))
            times["harness"].append(harness(settings, examples, answers))
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians["harness"] / medians["plain"]
        _common.print_table(
            ["path", "median s", "ms/question", "x plain"],
            [[k, v, 1000 * v / len(examples), v / medians["plain"]] for k, v in medians.items()],
        )
        met = "met" if ratio <= GOAL_HARNESS else "NOT met"
        print(f"harness / plain = {ratio:.2f} (goal <= {GOAL_HARNESS}: {met})")
        retrieval = summarize(score_answers(examples, answers, K))
        recall, mrr = retrieval["recall_at_k"], retrieval["mrr"]
        met = "met" if recall.mean >= GOAL_RECALL else "NOT met"
        print(
            f"retrieval on {recall.n} answerable questions: recall@{K} {recall.mean:.3f} "
            f"(goal >= {GOAL_RECALL}: {met}), MRR {mrr.mean:.3f}"
        )
        result |= {
            "questions": len(examples),
            "seconds": times,
            "ratio": ratio,
            "recall_at_5": recall.mean,
            "mrr": mrr.mean,
        }
    _common.write_json(args.json, result)


if __name__ == "__main__":
    main()
