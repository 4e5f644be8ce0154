import random

import pytest

from tasks.core.context import (
    INSTRUCTION,
    Chunk,
    build_prompt,
    context_budget,
    context_tokens,
    fit_context,
)

pytestmark = pytest.mark.unit


def chunk(tokens: int, name: str = "", score: float = 1.0) -> Chunk:
    name = name or f"c{tokens}"
    return Chunk(
        text=f"text of {name}", tokens=tokens, doc_id=name, source=f"{name}.txt", score=score
    )


@pytest.mark.parametrize(
    ("max_positions", "prompt", "max_tokens", "reserve", "budget"),
    [
        (2048, 100, 256, 0, 1692),
        (2048, 100, 256, 16, 1676),
        (512, 300, 212, 0, 0),  # exactly full
        (512, 300, 256, 0, 0),  # overfull: never negative
        (512, 0, 0, 0, 512),
        (0, 0, 0, 0, 0),
    ],
)
def test_context_budget(
    max_positions: int, prompt: int, max_tokens: int, reserve: int, budget: int
):
    assert context_budget(max_positions, prompt, max_tokens, reserve) == budget


@pytest.mark.parametrize("args", [(-1, 0, 0, 0), (512, -1, 0, 0), (512, 0, -1, 0), (512, 0, 0, -1)])
def test_context_budget_refuses_negative_counts(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        context_budget(*args)


@pytest.mark.parametrize(
    ("sizes", "budget", "separator", "kept"),
    [
        ([10, 10, 10], 33, 1, [10, 10, 10]),  # 3 x (10 + 1) fills it exactly
        ([10, 10, 10], 32, 1, [10, 10]),
        ([50, 10, 40, 5], 30, 1, [10, 5]),  # too big ones skipped, smaller later ones taken
        ([5, 50, 20], 30, 0, [5, 20]),
        ([5, 50, 20], 30, 3, [5]),  # separators count: 8 + 23 = 31 > 30
        ([5, 50, 20], 31, 3, [5, 20]),
        ([100], 50, 1, []),
        ([], 100, 1, []),
        ([0, 0], 1, 1, [0]),  # an empty chunk still costs its separator
        ([10, 10], 0, 1, []),
    ],
)
def test_fit_context_table(sizes: list[int], budget: int, separator: int, kept: list[int]) -> None:
    chunks = [chunk(n, f"c{i}") for i, n in enumerate(sizes)]
    fitted = fit_context(chunks, budget, separator)
    assert [c.tokens for c in fitted] == kept
    assert context_tokens(fitted, separator) <= budget


def test_fit_context_keeps_rank_order_and_skips_what_does_not_fit() -> None:
    ranked = [chunk(40, "a"), chunk(70, "b"), chunk(20, "c"), chunk(30, "d"), chunk(5, "e")]
    fitted = fit_context(ranked, budget=100, separator_tokens=2)
    # a (42) fits; b (72) would overflow; c (22) fits; d (32) fits: 96; e (7) would overflow.
    assert [c.doc_id for c in fitted] == ["a", "c", "d"]
    assert context_tokens(fitted, 2) == 96


@pytest.mark.parametrize("seed", range(300))
def test_fit_context_never_exceeds_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    chunks = [chunk(rng.randint(0, 400), f"c{i}") for i in range(rng.randint(0, 30))]
    budget = rng.randint(0, 2000)
    separator = rng.randint(0, 8)
    fitted = fit_context(chunks, budget, separator)
    assert context_tokens(fitted, separator) <= budget
    # A subsequence in rank order...
    positions = [chunks.index(c) for c in fitted]
    assert positions == sorted(positions)
    # ...and greedy: every skipped chunk would have overflowed at the point it was reached.
    used = 0
    for c in chunks:
        if c in fitted:
            used += c.tokens + separator
        else:
            assert used + c.tokens + separator > budget


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("seed", range(100))
def test_the_built_prompt_stays_within_the_window(seed: int) -> None:
    # Whitespace words stand in for tokens: a passage adds "[i]" and "(source)" to its text,
    # 2 words, and the empty frame's "(no passages)" is 2 words that passages replace.
    rng = random.Random(seed)
    texts = [" ".join(["w"] * rng.randint(1, 120)) for _ in range(rng.randint(0, 20))]
    chunks = [Chunk(t, words(t), f"d{i}", f"s{i}", 1.0) for i, t in enumerate(texts)]
    question = "what does " + " ".join(["x"] * rng.randint(0, 30))
    max_positions, max_tokens = rng.randint(64, 1024), rng.randint(0, 64)
    frame = words(build_prompt(question, []))
    budget = context_budget(max_positions, frame, max_tokens)
    prompt = build_prompt(question, fit_context(chunks, budget, separator_tokens=2))
    assert words(prompt) + max_tokens <= max_positions or budget == 0


def test_build_prompt_numbers_passages_then_asks() -> None:
    chunks = [
        Chunk("  Ray Serve routes requests. ", 5, "d1", "serve.md", 0.9),
        Chunk("Milvus stores vectors.", 4, "d2", "milvus.md", 0.8),
    ]
    prompt = build_prompt(" How are requests routed? ", chunks)
    assert prompt == (
        f"{INSTRUCTION}\n\n"
        "Context:\n"
        "[1] (serve.md) Ray Serve routes requests.\n\n"
        "[2] (milvus.md) Milvus stores vectors.\n\n"
        "Question: How are requests routed?\n"
        "Answer:"
    )
    assert "Context:\n(no passages)\n\nQuestion: q\n" in build_prompt("q", [])


def test_chunk_is_frozen_and_checks_tokens() -> None:
    c = chunk(3)
    with pytest.raises(AttributeError):
        c.tokens = 4  # type: ignore[misc]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="tokens"):
            Chunk("t", bad, "d", "s", 0.0)  # type: ignore[arg-type]


def test_fit_context_refuses_negative_budget_or_separator() -> None:
    with pytest.raises(ValueError, match="budget"):
        fit_context([chunk(1)], -1)
    with pytest.raises(ValueError, match="separator_tokens"):
        fit_context([chunk(1)], 10, -1)
