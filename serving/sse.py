"""A streamed answer's server-sent events, OpenAI's chunk shapes: the first chat chunk carries
the role, text deltas follow, the last chunk the finish reason and (as extensions, like the
whole response's, see `serving.api`) usage, sources, answer_quality and rails; then `DONE`."""

from __future__ import annotations

import json
import time
from typing import Any

from serving.api import AnswerQuality, ChatRequest, Generation, GenerationRequest

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def final_extensions(out: Generation) -> dict[str, Any]:
    """What the last chunk carries besides the finish reason."""
    return {
        "usage": out.usage().model_dump(),
        "sources": [s.model_dump() for s in out.sources],
        "answer_quality": AnswerQuality.of(out.text).model_dump(),
        "rails": [d.model_dump() for d in out.rails],
    }


def stream_chunk(
    request: GenerationRequest,
    rid: str,
    model: str,
    version: str,
    text: str | None,
    finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """One SSE event of a streamed answer: the first chat chunk carries the role, the last one
    the finish reason (and `extra`, `final_extensions`)."""
    chat = isinstance(request, ChatRequest)
    if chat:
        delta: dict[str, Any] = {} if text is None else {"content": text}
        if text == "":
            delta = {"role": "assistant", "content": ""}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish_reason}
    payload = {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "version": version,
        "choices": [choice],
        **(extra or {}),
    }
    return sse(payload)
