"""The quality contract's scorers: one set of pure functions that every gate decides with.

Retrieval is scored against the documents a question was written from (recall@k, MRR, nDCG on
doc ids), the answer against its reference (SQuAD-style token F1 and exact match), against the
passages it was given (groundedness, citation correctness), and on whether it declines exactly
when it should. `score` gives one question's row, `summarize` the means over a set; both leave a
metric None where it does not apply, so a mean never mixes in a made-up zero.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

REFUSAL = "The passages do not contain the answer."  # what models are taught to say

# "[1]", "[2, 3]", "[2;3]": the serving prompt numbers passages like this (tasks.core.context).
_CITATION = re.compile(r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"\w")
_ARTICLES = frozenset({"a", "an", "the"})


def _strip_punctuation(text: str) -> str:
    # Unicode punctuation and symbols, deleted rather than spaced (as SQuAD does: "don't" ->
    # "dont"), so scores stay comparable with published ones.
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")


def normalize_tokens(text: str) -> list[str]:
    """SQuAD-style tokens: lowercased, citation markers like [1] or [2, 3] removed, punctuation
    removed, the articles a/an/the dropped, split on whitespace."""
    text = _strip_punctuation(_CITATION.sub(" ", text.lower()))
    return [t for t in text.split() if t not in _ARTICLES]


# Normalised (as `normalize_tokens` leaves them) so they match token runs, not substrings.
REFUSAL_PHRASES: tuple[str, ...] = tuple(
    " ".join(normalize_tokens(p))
    for p in (
        REFUSAL,
        "do not contain the answer",
        "does not contain the answer",
        "don't contain the answer",
        "doesn't contain the answer",
        "not contain the information",
        "i do not know",
        "i don't know",
        "cannot answer",
        "can't answer",
        "unable to answer",
        "no information",
        "not enough information",
        "insufficient information",
        "not mentioned in the passages",
        "not mentioned in the context",
    )
)


def exact_match(answer: str, reference: str) -> float:
    """1.0 when the normalized tokens are the same, else 0.0."""
    return float(normalize_tokens(answer) == normalize_tokens(reference))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD multiset token F1. Both empty: 1.0 (they agree); exactly one empty: 0.0."""
    got, want = normalize_tokens(answer), normalize_tokens(reference)
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def _check_retrieval(relevant: Collection[str], k: int | None = None) -> None:
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not relevant:  # an unanswerable question: there is nothing to find, so no score
        raise ValueError("no relevant ids: the metric is undefined for this question")


def recall_at_k(retrieved: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant ids found among the first k retrieved ids. Retrieved ids may repeat
    (several chunks of one document); a document counts once."""
    _check_retrieval(relevant, k)
    wanted = set(relevant)
    return len(wanted.intersection(retrieved[:k])) / len(wanted)


def reciprocal_rank(retrieved: Sequence[str], relevant: Collection[str]) -> float:
    """1/rank of the first relevant id (ranks from 1); 0.0 if none was retrieved."""
    wanted = set(relevant)
    for rank, doc_id in enumerate(retrieved, 1):
        if doc_id in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(retrieved: Sequence[str], relevant: Collection[str], k: int) -> float:
    """nDCG@k with binary gains. A repeat of an already-counted relevant id gains 0 (a second
    chunk of the same document adds no new evidence); the ideal ranking puts
    min(k, len(relevant)) relevant ids at the top."""
    _check_retrieval(relevant, k)
    wanted, seen = set(relevant), set()
    dcg = 0.0
    for i, doc_id in enumerate(retrieved[:k]):
        if doc_id in wanted and doc_id not in seen:
            seen.add(doc_id)
            dcg += 1.0 / math.log2(i + 2)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(wanted))))
    return dcg / ideal


def is_empty(answer: str) -> bool:
    """True when the answer has no word characters at all (spaces, newlines, punctuation)."""
    return _WORD.search(answer) is None


def is_refusal(answer: str) -> bool:
    """True when the answer declines: it holds one of REFUSAL_PHRASES as a run of tokens."""
    padded = f" {' '.join(normalize_tokens(answer))} "  # spaces: match whole tokens only
    return any(f" {phrase} " in padded for phrase in REFUSAL_PHRASES)


def refusal_correct(answer: str, answerable: bool) -> float:
    """1.0 when the answer declines exactly when the question is unanswerable, else 0.0."""
    return float(is_refusal(answer) != answerable)


def groundedness(answer: str, passages: Sequence[str], n: int = 3) -> float | None:
    """Share of the answer's normalized tokens covered by a word n-gram that also occurs in one
    passage's normalized tokens. Answers shorter than n tokens use n = their length. An empty
    answer supports nothing: 0.0; a refusal claims nothing: None (not applicable)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if is_refusal(answer):
        return None
    tokens = normalize_tokens(answer)
    if not tokens:
        return 0.0
    n = min(n, len(tokens))
    grams: set[tuple[str, ...]] = set()
    for passage in passages:  # n-grams within one passage, never across two
        words = normalize_tokens(passage)
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    covered = [False] * len(tokens)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) in grams:
            covered[i : i + n] = [True] * n
    return sum(covered) / len(tokens)


def cited_passages(answer: str) -> list[int]:
    """The passage numbers the answer cites as [n] or [n, m], in first-seen order, unique."""
    numbers = (int(m) for c in _CITATION.finditer(answer) for m in _NUMBER.findall(c.group()))
    return list(dict.fromkeys(numbers))


def citation_correctness(
    answer: str, passage_doc_ids: Sequence[str], relevant: Collection[str]
) -> float | None:
    """Share of the cited numbers that name an existing passage (1-based into
    `passage_doc_ids`) from a relevant document. No citation: 0.0 (the prompt asks for them);
    no relevant document (an unanswerable question): None."""
    if not relevant:
        return None
    cited = cited_passages(answer)
    if not cited:
        return 0.0
    wanted = set(relevant)
    good = sum(
        1 for c in cited if 1 <= c <= len(passage_doc_ids) and passage_doc_ids[c - 1] in wanted
    )
    return good / len(cited)


@dataclass(frozen=True)
class Example:
    """One evaluation question: its reference answer and the documents it was written from.
    An unanswerable question (`answerable=False`) should be declined."""

    question_id: str
    question: str
    reference: str
    source_doc_ids: tuple[str, ...]
    answerable: bool


@dataclass(frozen=True)
class Answer:
    """What a version answered: the text, the passages it was given (in prompt order, with
    their doc ids) and what it cost. `error` says why no answer came (the text is then moot)."""

    text: str
    passage_doc_ids: tuple[str, ...]
    passages: tuple[str, ...]
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


# Every key `score` returns -> whether higher is better.
METRICS: dict[str, bool] = {
    "recall_at_k": True,
    "mrr": True,
    "ndcg_at_k": True,
    "token_f1": True,
    "exact_match": True,
    "groundedness": True,
    "citation_correct": True,
    "refusal_correct": True,
    "empty": False,
    "latency_ms": False,
    "prompt_tokens": False,
    "completion_tokens": False,
}
# What only means something when there is an answer to find.
_ANSWERABLE_ONLY = (
    "recall_at_k",
    "mrr",
    "ndcg_at_k",
    "token_f1",
    "exact_match",
    "groundedness",
    "citation_correct",
)


def score(example: Example, answer: Answer, k: int = 5) -> dict[str, float | None]:
    """One question's row: a value for every key of METRICS, None where it does not apply.

    Unanswerable question: the retrieval and answer-quality metrics are None; refusal_correct,
    empty, latency and tokens are scored. An answerable question without known sources gets
    None for the retrieval metrics. An answer with `error` set: everything None but latency.
    """
    row: dict[str, float | None] = dict.fromkeys(METRICS)
    row["latency_ms"] = float(answer.latency_ms)
    if answer.error is not None:
        return row
    text, relevant = answer.text, set(example.source_doc_ids)
    row["refusal_correct"] = refusal_correct(text, example.answerable)
    row["empty"] = float(is_empty(text))
    row["prompt_tokens"] = float(answer.prompt_tokens)
    row["completion_tokens"] = float(answer.completion_tokens)
    if not example.answerable:
        return row
    if relevant:
        retrieved = answer.passage_doc_ids
        row["recall_at_k"] = recall_at_k(retrieved, relevant, k)
        row["mrr"] = reciprocal_rank(retrieved, relevant)
        row["ndcg_at_k"] = ndcg_at_k(retrieved, relevant, k)
    row["token_f1"] = token_f1(text, example.reference)
    row["exact_match"] = exact_match(text, example.reference)
    row["groundedness"] = groundedness(text, answer.passages)
    row["citation_correct"] = citation_correctness(text, answer.passage_doc_ids, relevant)
    return row


@dataclass(frozen=True)
class MetricSummary:
    """Mean over the rows that have the metric (None if none has), how many had it, how many
    did not."""

    mean: float | None
    n: int
    missing: int


def summarize(rows: Sequence[Mapping[str, float | None]]) -> dict[str, MetricSummary]:
    """Per metric (every key seen, in first-seen order): the mean over non-None values. A row
    without the key, or with None or NaN, counts as missing."""
    names = dict.fromkeys(name for row in rows for name in row)
    summary: dict[str, MetricSummary] = {}
    for name in names:
        values = [v for row in rows if (v := row.get(name)) is not None and not math.isnan(v)]
        mean = math.fsum(values) / len(values) if values else None
        summary[name] = MetricSummary(mean=mean, n=len(values), missing=len(rows) - len(values))
    return summary


def live_scores(answer: str, sources: str | None, miss_score: float) -> dict[str, float | None]:
    """The reference-free scores of one served answer, from the request log's `sources` (the
    JSON list of hits it was given, each with its `text` and `score`): groundedness (None for a
    refusal or without passages), refused, empty, and a retrieval miss when no hit scored at
    least `miss_score` (None without hits)."""
    hits = json.loads(sources or "[]")
    passages = [h.get("text", "") for h in hits]
    refused = is_refusal(answer)
    return {
        "groundedness": None if refused or not any(passages) else groundedness(answer, passages),
        "refused": float(refused),
        "empty": float(is_empty(answer)),
        "retrieval_miss": None
        if not hits
        else float(max(h.get("score", 0.0) for h in hits) < miss_score),
    }
