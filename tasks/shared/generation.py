"""What a model is asked and how it answers: prompts fitted to the model's window, then
decoding with the KV cache, a batch of prompts (left-padded, masked) or one prompt streamed.

Plain PyTorch over any Hugging Face causal LM, including compressed candidates whose linears
are int8 modules: only `model(input_ids, attention_mask, position_ids, cache, use_cache)` is
used (transformers 5 names the cache argument and output `cache`). Returned ids never include
the EOS that ended a row, so fewer ids than asked means the model stopped by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tasks.core.context import INSTRUCTION, Chunk, build_prompt, context_budget, fit_context


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


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a sequence: the tokenizer's EOS and the generation config's."""
    found: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        if isinstance(value, int):
            found.add(value)
        elif value is not None:
            found.update(int(v) for v in value)
    return found


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_tokens: int | Sequence[int],
    temperature: float | Sequence[float] = 0.0,
    seed: int | None = None,
) -> list[list[int]]:
    """Up to `max_tokens` new ids per prompt (each row may ask for its own count and
    temperature; 0 is greedy), stopping a row at EOS and the batch when every row is done."""
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


@torch.inference_mode()
def _decode(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_tokens: int | Sequence[int],
    temperature: float | Sequence[float],
    seed: int | None,
) -> Iterator[dict[int, int]]:
    """Per decoding step, {row: new id} for the rows still running."""
    if not prompts or any(not p for p in prompts):
        raise ValueError("every prompt needs at least one token")
    n = len(prompts)
    limits = _per_row(max_tokens, n, "max_tokens")
    temps = torch.tensor(_per_row(temperature, n, "temperature"), dtype=torch.float32)
    stops = torch.tensor(sorted(eos_ids(model, tokenizer)), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    pad = next((t for t in (tokenizer.pad_token_id, *stops.tolist()) if t is not None), 0)

    width = max(len(p) for p in prompts)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, prompt in enumerate(prompts):  # left padding: every row's last token is aligned
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padding must not shift the positions
    running = torch.tensor([limit > 0 for limit in limits])
    counts = torch.zeros(n, dtype=torch.long)
    cap = torch.tensor(limits, dtype=torch.long)
    cache = None
    while bool(running.any()):
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache
        token = _next_token(out.logits[:, -1, :].float(), temps, generator)
        ended = torch.isin(token, stops) if len(stops) else torch.zeros(n, dtype=torch.bool)
        emitted = running & ~ended
        counts += emitted.long()
        step = {row: int(token[row]) for row in emitted.nonzero().flatten().tolist()}
        if step:
            yield step
        running = emitted & (counts < cap)
        # Finished rows keep a pad step with mask 0: the batch stays rectangular.
        ids = torch.where(running, token, torch.full_like(token, pad)).unsqueeze(1)
        mask = torch.cat([mask, running.long().unsqueeze(1)], dim=1)
        positions = positions[:, -1:] + 1


def _next_token(
    logits: torch.Tensor, temps: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    greedy = logits.argmax(-1)
    if not bool((temps > 0).any()):
        return greedy
    scaled = logits / temps.clamp(min=1e-5).unsqueeze(1)
    sampled = torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(1)
    return torch.where(temps > 0, sampled, greedy)


def _per_row(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, int | float):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name}: {len(values)} values for {n} prompts")
    return values
