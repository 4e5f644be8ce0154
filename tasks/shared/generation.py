"""What a model is asked and how it answers: prompts fitted to the model's window, then
decoding with the KV cache (`tasks.shared.batching`), a batch of prompts or one prompt streamed.

Plain PyTorch over any Hugging Face causal LM, including compressed candidates whose linears
are int8 modules: only `model(input_ids, attention_mask, position_ids, cache, use_cache)` is
used (transformers 5 names the cache argument and output `cache`). Returned ids never include
the EOS that ended a row, so fewer ids than asked means the model stopped by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.core.context import INSTRUCTION, Chunk, build_prompt, context_budget, fit_context
from tasks.shared.batching import DecodeBatch, Job


class PromptTooLong(ValueError):
    def __init__(self, count: int, limit: int, what: str = "the prompt") -> None:
        super().__init__(f"{what} has {count} tokens; this model accepts at most {limit}")
        self.count, self.limit = count, limit


@dataclass(frozen=True)
class Limits:
    """The model's window (positions), the longest prompt served and the most new tokens."""

    window: int
    max_prompt_tokens: int
    max_tokens: int

    @classmethod
    def of(cls, model: Any, tokenizer: Any, max_prompt_tokens: int, max_tokens: int) -> Limits:
        window = getattr(model.config, "max_position_embeddings", None)
        window = int(window or tokenizer.model_max_length)
        # At least one position is left for the answer.
        return cls(window, min(max_prompt_tokens, window - 1), min(max_tokens, window - 1))


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    max_new: int
    chunks: list[Chunk]


def fit_prompt(
    encode: Callable[[str], list[int]],
    question: str,
    limits: Limits,
    max_new: int,
    chunks: Sequence[Chunk] | None,
    separator: Callable[[Chunk, int], int],
    instruction: str = INSTRUCTION,
) -> Prompt:
    """The ids to decode from and how many new tokens they leave room for. `encode` renders a
    question (or a whole `build_prompt` text) the way the caller frames it (plain prompt or chat
    template). With `chunks` (retrieved, best first) the question is wrapped in `build_prompt`
    with as many passages as the window holds beside the prompt and the answer; the rendered
    count is checked, not estimated, so the context never overflows."""
    ids = encode(question)
    if len(ids) > limits.max_prompt_tokens:
        raise PromptTooLong(len(ids), limits.max_prompt_tokens)
    max_new = min(max_new, limits.max_tokens)
    chosen: list[Chunk] = []
    if chunks is not None:
        frame = encode(build_prompt(question, [], instruction))
        budget = context_budget(limits.window, len(frame), max_new)
        sep = max((separator(c, len(chunks)) for c in chunks), default=0)
        chosen = fit_context(chunks, budget, sep)
        ids = encode(build_prompt(question, chosen, instruction))
        while chosen and len(ids) + max_new > limits.window:  # BPE merges across passages
            chosen.pop()
            ids = encode(build_prompt(question, chosen, instruction))
    if len(ids) >= limits.window:
        raise PromptTooLong(len(ids), limits.window - 1, "the prompt with its retrieval frame")
    return Prompt(ids, min(max_new, limits.window - len(ids)), chosen)


def prompt_for(
    tokenizer: Any,
    question: str,
    limits: Limits,
    max_new: int,
    chunks: Sequence[Chunk] | None,
    instruction: str = INSTRUCTION,
) -> Prompt:
    """A plain completion prompt (what `/v1/completions` decodes) for `question`."""
    return fit_prompt(
        lambda text: tokenizer.encode(text, add_special_tokens=True),
        question,
        limits,
        max_new,
        chunks,
        lambda chunk, n: separator_tokens(tokenizer, chunk, n),
        instruction,
    )


def to_chunk(tokenizer: Any, text: str, doc_id: str, source: str, score: float) -> Chunk:
    """A retrieved passage measured in the serving model's own tokens."""
    tokens = len(tokenizer.encode(text.strip(), add_special_tokens=False))
    return Chunk(text=text, tokens=tokens, doc_id=doc_id, source=source, score=score)


def separator_tokens(tokenizer: Any, chunk: Chunk, n: int) -> int:
    # What `build_prompt` puts around a passage: "[n] (source) " and the blank line after it.
    return len(tokenizer.encode(f"[{n}] ({chunk.source}) \n\n", add_special_tokens=False))


class TextStream:
    """Text deltas of ids decoded one at a time (a multi-byte character may span tokens)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.ids, self.sent = tokenizer, [], 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for its next bytes
            return ""
        delta, self.sent = text[self.sent :], len(text)
        return delta


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_tokens: int | Sequence[int],
    temperature: float | Sequence[float] = 0.0,
    seed: int | None = None,
) -> list[list[int]]:
    """Up to `max_tokens` new ids per prompt (each row may ask for its own count and
    temperature; 0 is greedy), a row leaving the batch at its EOS or its count."""
    out: list[list[int]] = [[] for _ in prompts]
    for step in _decode(model, tokenizer, prompts, max_tokens, temperature, seed):
        for row, token in step.items():
            out[row].append(token)
    return out


def stream(
    model: Any,
    tokenizer: Any,
    prompt: list[int],
    max_tokens: int,
    temperature: float = 0.0,
    seed: int | None = None,
) -> Iterator[int]:
    """The new ids of one prompt, one at a time, as they are decoded."""
    for step in _decode(model, tokenizer, [prompt], max_tokens, temperature, seed):
        yield step[0]


def _decode(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_tokens: int | Sequence[int],
    temperature: float | Sequence[float],
    seed: int | None,
) -> Iterator[dict[int, int]]:
    """Per decoding step, {row: new id} for the rows still running: every prompt admitted at
    once, then stepped until none is left."""
    n = len(prompts)
    limits = _per_row(max_tokens, n, "max_tokens")
    temps = _per_row(temperature, n, "temperature")
    batch = DecodeBatch(model, tokenizer, seed)
    rows = zip(prompts, limits, temps, strict=True)
    jobs = [Job(row, p, limit, t) for row, (p, limit, t) in enumerate(rows)]
    progress = batch.admit(jobs)
    while True:
        if progress.tokens:
            yield progress.tokens  # type: ignore[misc]
        if not len(batch):
            return
        progress = batch.step()


def _per_row(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, int | float):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name}: {len(values)} values for {n} prompts")
    return values
