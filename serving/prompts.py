"""A request's prompt: its messages rendered the way the model was asked, fitted to its window
with the retrieved passages (`tasks.shared.generation.fit_prompt`, the same code evaluation uses).
"""

from __future__ import annotations

from typing import Any

from serving.api import ChatRequest, GenerationRequest
from tasks.core.context import INSTRUCTION, Chunk
from tasks.shared.generation import Limits, Prompt, fit_prompt, separator_tokens


def encode(tokenizer: Any, request: GenerationRequest, question: str | None = None) -> list[int]:
    """The request's token ids, its question (prompt or last user message) replaced if given.
    Chat uses the tokenizer's chat template when it has one, else plain `role: text` lines."""
    if not isinstance(request, ChatRequest):
        return tokenizer.encode(question or request.prompt, add_special_tokens=True)
    messages = [m.model_dump() for m in request.messages]
    if question is not None:
        messages[-1]["content"] = question
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=False)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return tokenizer.encode(text, add_special_tokens=True)


def prepare(
    tokenizer: Any,
    request: GenerationRequest,
    limits: Limits,
    chunks: list[Chunk] | None,
    instruction: str = INSTRUCTION,
) -> Prompt:
    """The ids to decode from for `request`, with `chunks` (retrieved, best first) fitted in
    under the release's `instruction`."""
    return fit_prompt(
        lambda text: encode(tokenizer, request, text),
        request.question,
        limits,
        request.max_tokens or limits.max_tokens,
        chunks,
        lambda chunk, n: separator_tokens(tokenizer, chunk, n),
        instruction,
    )
