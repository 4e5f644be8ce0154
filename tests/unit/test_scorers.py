import json
import math

import pytest

from tasks.core.scorers import (
    METRICS,
    REFUSAL,
    Answer,
    Example,
    MetricSummary,
    citation_correctness,
    cited_passages,
    exact_match,
    groundedness,
    is_empty,
    is_refusal,
    live_scores,
    ndcg_at_k,
    normalize_tokens,
    recall_at_k,
    reciprocal_rank,
    refusal_correct,
    score,
    summarize,
    token_f1,
)

pytestmark = pytest.mark.unit

LOG3 = math.log2(3)  # the discount at rank 2


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The cat sat.", ["cat", "sat"]),
        ("Paris [1].", ["paris"]),
        ("Paris[2, 3] is big[4]", ["paris", "is", "big"]),
        ("[12]", []),
        ("", []),
        ("  \n ...!! ", []),
        ("Don't stop", ["dont", "stop"]),  # deleted, not spaced, as SQuAD does
        ("An apple a day", ["apple", "day"]),
        ("THE ANSWER", ["answer"]),
        ("theater anthem", ["theater", "anthem"]),  # articles only as whole words
        ("Café, naïve!", ["café", "naïve"]),
        ("line one\nline\ttwo", ["line", "one", "line", "two"]),
        ("costs $5 + tax", ["costs", "5", "tax"]),
        ("see [a] here", ["see", "here"]),  # not a citation: the brackets go, then the article
    ],
)
def test_normalize_tokens(text: str, tokens: list[str]) -> None:
    assert normalize_tokens(text) == tokens


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Paris", "paris.", 1.0),
        ("The Eiffel Tower [1]", "eiffel tower", 1.0),
        ("Paris, France", "Paris", 0.0),
        ("", "", 1.0),
        ("", "Paris", 0.0),
        ("...", "", 1.0),
    ],
)
def test_exact_match(answer: str, reference: str, expected: float) -> None:
    assert exact_match(answer, reference) == expected


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("the cat sat on the mat", "a cat sat on a mat", 1.0),
        ("cat sat", "cat sat on mat", 2 / 3),  # precision 1, recall 1/2
        ("cat cat cat", "cat", 0.5),  # multiset: one match; precision 1/3, recall 1
        ("red blue green", "blue yellow", 0.4),  # precision 1/3, recall 1/2
        ("dog", "cat", 0.0),
        ("Paris [1].", "paris", 1.0),
        ("", "", 1.0),
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("?!", "[1]", 1.0),  # both normalise to nothing
    ],
)
def test_token_f1(answer: str, reference: str, expected: float) -> None:
    assert token_f1(answer, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("retrieved", "relevant", "k", "expected"),
    [
        (["a", "b", "c"], {"a", "c"}, 2, 0.5),
        (["a", "b", "c"], {"a", "c"}, 3, 1.0),
        (["a", "a", "a"], {"a", "b"}, 3, 0.5),  # chunks of one document count once
        (["a", "b"], {"b"}, 10, 1.0),  # k beyond the list
        ([], {"a"}, 5, 0.0),
        (["x", "y"], {"a"}, 2, 0.0),
        (["b", "a"], ["a", "a"], 1, 0.0),
        (["b", "a"], ["a", "a"], 2, 1.0),  # a repeated relevant id is one document
    ],
)
def test_recall_at_k(retrieved: list[str], relevant: set[str], k: int, expected: float) -> None:
    assert recall_at_k(retrieved, relevant, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("retrieved", "relevant", "expected"),
    [
        (["a", "b"], {"a"}, 1.0),
        (["x", "y", "a"], {"a", "b"}, 1 / 3),
        (["x", "a", "a"], {"a"}, 0.5),
        (["x"], {"a"}, 0.0),
        ([], {"a"}, 0.0),
        (["x"], set(), 0.0),
    ],
)
def test_reciprocal_rank(retrieved: list[str], relevant: set[str], expected: float) -> None:
    assert reciprocal_rank(retrieved, relevant) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("retrieved", "relevant", "k", "expected"),
    [
        (["a", "b"], {"a"}, 2, 1.0),
        (["x", "a"], {"a"}, 2, 1 / LOG3),
        (["a", "a"], {"a", "b"}, 2, 1 / (1 + 1 / LOG3)),  # the repeat gains nothing
        (["a", "b"], {"a", "b"}, 5, 1.0),  # ideal: min(k, 2) hits
        (["x", "y", "a"], {"a"}, 2, 0.0),  # the hit is past k
        (["x", "a", "b"], {"a", "b", "c"}, 3, (1 / LOG3 + 0.5) / (1 + 1 / LOG3 + 0.5)),
        ([], {"a"}, 3, 0.0),
    ],
)
def test_ndcg_at_k(retrieved: list[str], relevant: set[str], k: int, expected: float) -> None:
    assert ndcg_at_k(retrieved, relevant, k) == pytest.approx(expected)


@pytest.mark.parametrize("metric", [recall_at_k, ndcg_at_k])
@pytest.mark.parametrize(
    ("relevant", "k", "match"), [({"a"}, 0, "k must be"), (set(), 3, "no relevant")]
)
def test_retrieval_metrics_refuse_undefined_inputs(
    metric, relevant: set[str], k: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        metric(["a"], relevant, k)


@pytest.mark.parametrize(
    ("answer", "passages", "n", "expected"),
    [
        ("Paris is the capital of France", ["Paris is the capital of France."], 3, 1.0),
        # tokens: paris is capital of france; only "capital of france" is in the passage
        ("Paris is the capital of France", ["The capital of France is Paris."], 3, 0.6),
        ("red green blue pink", ["red green blue", "green blue pink"], 3, 1.0),  # windows overlap
        ("red green blue pink", ["red green blue"], 3, 0.75),
        ("alpha beta gamma", ["alpha beta", "gamma delta"], 3, 0.0),  # never across passages
        ("cat dog bird", ["cat bird"], 1, 2 / 3),
        ("Paris", ["Paris is big"], 3, 1.0),  # shorter than n: n = 1
        ("Berlin", ["Paris is big"], 3, 0.0),
        ("Paris is big", [], 3, 0.0),
        ("", ["Paris is big"], 3, 0.0),  # an empty answer supports nothing
        ("[1]", ["Paris is big"], 3, 0.0),  # a bare citation is empty too
        (REFUSAL, ["The passages do not contain the answer."], 3, None),
        ("I don't know.", ["Paris"], 3, None),
    ],
)
def test_groundedness(answer: str, passages: list[str], n: int, expected: float | None) -> None:
    got = groundedness(answer, passages, n)
    assert got == (None if expected is None else pytest.approx(expected))


def test_groundedness_refuses_n_below_one() -> None:
    with pytest.raises(ValueError, match="n must be"):
        groundedness("x", ["x"], 0)


@pytest.mark.parametrize(
    ("answer", "cited"),
    [
        ("Paris [1].", [1]),
        ("A [2, 3] and [1][2]", [2, 3, 1]),
        ("[10] then [1]", [10, 1]),
        ("[2;1]", [2, 1]),
        ("x[3] y[3]", [3]),
        ("[a] [ 4 ]", [4]),
        ("no citations", []),
        ("", []),
    ],
)
def test_cited_passages(answer: str, cited: list[int]) -> None:
    assert cited_passages(answer) == cited


PASSAGE_DOCS = ("d1", "d2", "d1")


@pytest.mark.parametrize(
    ("answer", "relevant", "expected"),
    [
        ("x [1]", {"d1"}, 1.0),
        ("x [2]", {"d1"}, 0.0),
        ("x [1][2]", {"d1"}, 0.5),
        ("x [1, 3]", {"d1"}, 1.0),
        ("x [4]", {"d1"}, 0.0),  # no such passage
        ("x [0]", {"d1"}, 0.0),  # numbering starts at 1
        ("x [1] [4]", {"d1"}, 0.5),
        ("x [1] [1]", {"d1"}, 1.0),  # one citation, said twice
        ("no citation", {"d1"}, 0.0),
        ("x [1]", set(), None),  # unanswerable: not applicable
    ],
)
def test_citation_correctness(answer: str, relevant: set[str], expected: float | None) -> None:
    assert citation_correctness(answer, PASSAGE_DOCS, relevant) == expected


@pytest.mark.parametrize(
    ("answer", "refuses"),
    [
        (REFUSAL, True),
        ("The passages don't contain the answer.", True),
        ("THE CONTEXT DOES NOT CONTAIN THE ANSWER", True),
        ("I do not know.", True),
        ("I don't know", True),
        ("Sorry, I cannot answer that from the passages [1].", True),
        ("There is no information about that.", True),
        ("Paris", False),
        ("", False),
        ("I know the answer: Paris [1].", False),
        ("It cannot answers", False),  # whole tokens only
        ("The passages do contain the answer: Paris.", False),
    ],
)
def test_is_refusal(answer: str, refuses: bool) -> None:
    assert is_refusal(answer) is refuses


@pytest.mark.parametrize(
    ("answer", "empty"),
    [("", True), ("   \n\t", True), ("...!?", True), ("\n-\n", True), ("a", False), ("[1]", False)],
)
def test_is_empty(answer: str, empty: bool) -> None:
    assert is_empty(answer) is empty


@pytest.mark.parametrize(
    ("answer", "answerable", "expected"),
    [
        (REFUSAL, False, 1.0),
        (REFUSAL, True, 0.0),
        ("Paris", True, 1.0),
        ("Paris", False, 0.0),
        ("", False, 0.0),  # silence is not declining
    ],
)
def test_refusal_correct(answer: str, answerable: bool, expected: float) -> None:
    assert refusal_correct(answer, answerable) == expected


def example(answerable: bool = True, sources: tuple[str, ...] = ("d1",)) -> Example:
    reference = "Paris" if answerable else ""
    return Example("q1", "What is the capital of France?", reference, sources, answerable)


def answer(text: str, docs: tuple[str, ...] = ("d1", "d2"), error: str | None = None) -> Answer:
    passages = ("Paris is the capital of France.", "Berlin is the capital of Germany.")
    return Answer(text, docs, passages[: len(docs)], 120.0, 50, 9, error)


COMMON = {"latency_ms": 120.0, "prompt_tokens": 50.0, "completion_tokens": 9.0, "empty": 0.0}
NOT_APPLICABLE = dict.fromkeys(
    [
        "recall_at_k",
        "mrr",
        "ndcg_at_k",
        "token_f1",
        "exact_match",
        "groundedness",
        "citation_correct",
    ]
)


@pytest.mark.parametrize(
    ("ex", "ans", "expected"),
    [
        (
            example(),
            answer("Paris is the capital of France [1]."),
            # f1: 5 answer tokens, 1 reference token, 1 shared -> 2 * 0.2 * 1 / 1.2
            {"recall_at_k": 1.0, "mrr": 1.0, "ndcg_at_k": 1.0, "token_f1": 1 / 3,
             "exact_match": 0.0, "groundedness": 1.0, "citation_correct": 1.0,
             "refusal_correct": 1.0, **COMMON},
        ),
        (
            example(),
            answer("Paris [2].", docs=("d2", "d1")),
            {"recall_at_k": 1.0, "mrr": 0.5, "ndcg_at_k": 1 / LOG3, "token_f1": 1.0,
             "exact_match": 1.0, "groundedness": 1.0, "citation_correct": 1.0,
             "refusal_correct": 1.0, **COMMON},
        ),
        (
            example(),
            answer(REFUSAL),  # declined an answerable question
            {"recall_at_k": 1.0, "mrr": 1.0, "ndcg_at_k": 1.0, "token_f1": 0.0,
             "exact_match": 0.0, "groundedness": None, "citation_correct": 0.0,
             "refusal_correct": 0.0, **COMMON},
        ),
        (
            example(sources=()),  # answerable, sources unknown: no retrieval score
            answer("Paris"),
            {"recall_at_k": None, "mrr": None, "ndcg_at_k": None, "token_f1": 1.0,
             "exact_match": 1.0, "groundedness": 1.0, "citation_correct": None,
             "refusal_correct": 1.0, **COMMON},
        ),
        (
            example(answerable=False, sources=()),
            answer(REFUSAL),
            {**NOT_APPLICABLE, "refusal_correct": 1.0, **COMMON},
        ),
        (
            example(answerable=False, sources=()),
            answer("\n \n"),
            {**NOT_APPLICABLE, "refusal_correct": 0.0, **COMMON, "empty": 1.0},
        ),
        (
            example(),
            answer("", docs=(), error="timeout"),
            {**dict.fromkeys(METRICS), "latency_ms": 120.0},
        ),
    ],
)  # fmt: skip
def test_score(ex: Example, ans: Answer, expected: dict[str, float | None]) -> None:
    row = score(ex, ans, k=5)
    assert list(row) == list(METRICS)
    for name, value in expected.items():
        assert row[name] == (None if value is None else pytest.approx(value)), name


def test_score_cuts_retrieval_at_k() -> None:
    row = score(example(), answer("Paris", docs=("d2", "d1")), k=1)
    assert (row["recall_at_k"], row["mrr"], row["ndcg_at_k"]) == (0.0, 0.5, 0.0)


def test_metrics_say_which_way_is_better() -> None:
    lower = {name for name, higher in METRICS.items() if not higher}
    assert lower == {"empty", "latency_ms", "prompt_tokens", "completion_tokens"}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [{"a": 1.0, "b": None}, {"a": 0.0, "b": 2.0}, {"a": None}],
            {"a": MetricSummary(0.5, 2, 1), "b": MetricSummary(2.0, 1, 2)},
        ),
        ([{"a": None}, {"a": None}], {"a": MetricSummary(None, 0, 2)}),
        ([{"a": math.nan}, {"a": 3.0}], {"a": MetricSummary(3.0, 1, 1)}),
        (
            [{"b": 1.0}, {"a": 0.0, "b": 0.0}],
            {"b": MetricSummary(0.5, 2, 0), "a": MetricSummary(0.0, 1, 1)},
        ),
        ([], {}),
    ],
)
def test_summarize(rows: list[dict[str, float | None]], expected: dict[str, MetricSummary]) -> None:
    got = summarize(rows)
    assert list(got) == list(expected)
    assert got == expected


def test_summarize_scored_rows() -> None:
    rows = [
        score(example(), answer("Paris [1].")),
        score(example(answerable=False, sources=()), answer(REFUSAL)),
        score(example(), answer("", error="timeout")),
    ]
    got = summarize(rows)
    assert got["token_f1"] == MetricSummary(1.0, 1, 2)
    assert got["refusal_correct"] == MetricSummary(1.0, 2, 1)
    assert got["latency_ms"] == MetricSummary(120.0, 3, 0)


LIVE_PASSAGE = "The with statement wraps a block with methods defined by a context manager."


def hits(*scores: float, text: str = LIVE_PASSAGE) -> str:
    return json.dumps([{"doc_id": "d", "score": s, "text": text} for s in scores])


@pytest.mark.parametrize(
    ("answer", "sources", "expected"),
    [
        (
            "the with statement wraps a block",
            hits(0.8, 0.2),
            {"groundedness": 1.0, "refused": 0.0, "empty": 0.0, "retrieval_miss": 0.0},
        ),
        (
            "pasta is boiled in salted water",
            hits(0.3),
            {"groundedness": 0.0, "refused": 0.0, "empty": 0.0, "retrieval_miss": 1.0},
        ),
        (
            REFUSAL,
            hits(0.8),
            {"groundedness": None, "refused": 1.0, "empty": 0.0, "retrieval_miss": 0.0},
        ),
        (
            "\n\n",
            None,
            {"groundedness": None, "refused": 0.0, "empty": 1.0, "retrieval_miss": None},
        ),
        (
            "the with statement wraps a block",
            hits(0.9, text=""),
            {"groundedness": None, "refused": 0.0, "empty": 0.0, "retrieval_miss": 0.0},
        ),
    ],
    ids=["grounded", "ungrounded-and-missed", "refusal", "empty-without-sources", "no-text"],
)
def test_live_scores(answer: str, sources: str | None, expected: dict[str, float | None]) -> None:
    assert live_scores(answer, sources, miss_score=0.5) == expected
