"""Fit retrieved chunks into a model's context window, by token budget, never overflowing it.

The window holds the prompt frame (instructions and question), the retrieved passages and the
tokens the model will generate. `context_budget` says how many tokens are left for passages;
`fit_context` picks passages in rank order within that budget; `build_prompt` lays them out.
Token counts come from the caller (the serving model's own tokenizer), so this stays pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasks.core.citations import cite

INSTRUCTION = (
    "Answer the question using only the numbered context passages. "
    "Cite the passages you use by their number, like [1]. "
    "If the passages do not contain the answer, say so."
)
NO_CONTEXT = "(no passages)"


@dataclass(frozen=True)
class Chunk:
    """One retrieved passage: its text, its length in the serving model's tokens, where it came
    from, and its retrieval score (higher is more relevant)."""

    text: str
    tokens: int
    doc_id: str
    source: str
    score: float

    def __post_init__(self) -> None:
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 0:
            raise ValueError(f"chunk tokens must be an int >= 0, got {self.tokens!r}")


def _non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def context_budget(
    max_positions: int, prompt_tokens: int, max_tokens: int, reserve: int = 0
) -> int:
    """Tokens left for retrieved passages once the prompt frame (`prompt_tokens`, measured on
    `build_prompt(question, [])`), the generation (`max_tokens`) and a safety `reserve` (special
    tokens, chat template) are set aside from the model's window. 0 when nothing is left."""
    _non_negative(
        max_positions=max_positions,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        reserve=reserve,
    )
    return max(0, max_positions - prompt_tokens - max_tokens - reserve)


def context_tokens(chunks: Sequence[Chunk], separator_tokens: int = 1) -> int:
    """What the passages cost in the prompt: their tokens plus `separator_tokens` each."""
    return sum(c.tokens + separator_tokens for c in chunks)


def fit_context(chunks: Sequence[Chunk], budget: int, separator_tokens: int = 1) -> list[Chunk]:
    """The chunks to put in the prompt, in the given (rank) order, within `budget` tokens.

    A chunk that does not fit is skipped, and a later, smaller one may still take the room (the
    best-ranked text that fits beats leaving the space empty). `separator_tokens` is what each
    passage adds around its text in the prompt (its number, source label and the blank line
    before the next), counted for every passage, the first too; measure it with the serving
    tokenizer on `build_prompt`, or overestimate it.
    """
    _non_negative(budget=budget, separator_tokens=separator_tokens)
    chosen: list[Chunk] = []
    used = 0
    for chunk in chunks:
        cost = chunk.tokens + separator_tokens
        if used + cost <= budget:
            chosen.append(chunk)
            used += cost
    return chosen


def build_prompt(question: str, chunks: Sequence[Chunk], instruction: str = INSTRUCTION) -> str:
    """The prompt for one question. The template, with `{…}` filled in (`instruction` is the
    release's, `INSTRUCTION` unless a release names another):

        {INSTRUCTION}

        Context:
        [1] ({citation}) {text}

        [2] ({citation}) {text}

        Question: {question}
        Answer:

    A passage's citation is its source, with the page or section of a PDF or Word file
    (`tasks.core.citations`). Passages are numbered from 1 in the given order, so an answer's
    "[2]" names the second passage; with no passages the context reads "(no passages)".
    """
    passages = "\n\n".join(
        f"[{i}] ({cite(c.source)}) {c.text.strip()}" for i, c in enumerate(chunks, 1)
    )
    return (
        f"{instruction.strip()}\n\n"
        f"Context:\n{passages or NO_CONTEXT}\n\n"
        f"Question: {question.strip()}\n"
        "Answer:"
    )
