"""How a `ModelServer` turns a prompt into ids: through the continuous-batching engine
(`serving.engine`, the default) or Serve's `@serve.batch` ("static", the baseline). Either
way a request gets an async iterator of ids, its timing, and HTTP's answers to a full queue
(429), a passed deadline (504) and a failed model (500)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from serving.api import ApiError
from serving.engine import Engine, QueueFull, Ticket
from serving.tracing import record_decode, record_span
from tasks.shared.generation import Prompt

if TYPE_CHECKING:
    from opentelemetry.context import Context


@dataclass
class Timing:
    """Where a request's time went in the replica (None where the engine cannot say)."""

    queue_ms: float | None = None
    ttft_ms: float | None = None
    decode_tokens_per_s: float | None = None
    prefill_ms: float | None = None


class EngineDecoding:
    def __init__(
        self, engine: Engine, ticket: Ticket, deadline_s: float, parent: Context | None
    ) -> None:
        self.engine, self.ticket, self.deadline_s = engine, ticket, deadline_s
        self.parent, self.timing = parent, Timing()

    async def __aiter__(self) -> AsyncIterator[int]:
        ticket = self.ticket
        try:
            async for token in self.engine.tokens(ticket):
                yield token
        finally:
            self.timing = Timing(
                ticket.queue_ms, ticket.ttft_ms, ticket.decode_tokens_per_s, ticket.prefill_ms
            )
            self._trace()
        end = ticket.end
        if end is not None and end.reason == "deadline":
            raise ApiError(
                504,
                f"the request's deadline of {self.deadline_s:g} s passed {end.detail}",
                "deadline_exceeded",
                "server_error",
            )
        if end is not None and end.reason == "error":
            raise ApiError(500, f"decoding failed: {end.detail}", "decoding_failed")

    def _trace(self) -> None:
        """The engine's readings as spans: queue wait, prefill, decode (summarised)."""
        t, parent = self.ticket, self.parent
        if t.admitted is not None:
            record_span("queue", t.enqueued, t.admitted, {"queue_ms": t.queue_ms}, parent)
        if t.admitted is not None and t.prefilled is not None:
            prompt = {"prompt_tokens": len(t.job.prompt)}
            record_span("prefill", t.admitted, t.prefilled, prompt, parent)
        if t.first_token is not None and t.finished is not None:
            record_decode(t.first_token, t.finished, t.tokens, t.ttft_ms, parent)


class EngineDecoder:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(
        self,
        prompt: Prompt,
        temperature: float,
        deadline_s: float,
        streaming: bool,
        parent: Context | None = None,
    ) -> EngineDecoding:
        """Queued at once: a full queue is refused here, before anything is sent."""
        try:
            ticket = self.engine.submit(prompt.ids, prompt.max_new, temperature, deadline_s)
        except QueueFull as full:
            raise ApiError(
                429,
                f"this version is at capacity ({full.waiting} requests queued per replica); "
                f"retry after {full.retry_after_s} s",
                "queue_full",
                "rate_limit_error",
                retry_after_s=full.retry_after_s,
            ) from None
        return EngineDecoding(self.engine, ticket, deadline_s, parent)

    def close(self) -> None:
        self.engine.close()


Batch = Callable[[tuple[list[int], int, float]], Awaitable[list[int]]]
Stream = Callable[[list[int], int, float], Iterator[int]]


class StaticDecoding:
    """One request of a `@serve.batch` batch (all its ids at once), or a stream decoded alone
    in a thread, as serving worked before the engine."""

    def __init__(
        self,
        run: Callable[[], AsyncIterator[int]],
        deadline_s: float,
        parent: Context | None = None,
    ) -> None:
        self.run, self.deadline_s, self.parent = run, deadline_s, parent
        self.timing = Timing()

    async def __aiter__(self) -> AsyncIterator[int]:
        started, tokens = time.monotonic(), 0
        try:
            async with asyncio.timeout(self.deadline_s):
                async for token in self.run():
                    if self.timing.ttft_ms is None:
                        self.timing.ttft_ms = (time.monotonic() - started) * 1000
                    tokens += 1
                    yield token
        except TimeoutError:
            raise ApiError(
                504,
                f"the request's deadline of {self.deadline_s:g} s passed",
                "deadline_exceeded",
                "server_error",
            ) from None
        finally:  # one span: a static batch cannot tell its queue from its decoding
            record_span("decode", started, time.monotonic(), {"tokens": tokens}, self.parent)


class StaticDecoder:
    def __init__(self, batch: Batch, stream: Stream) -> None:
        self.batch, self.stream = batch, stream

    def start(
        self,
        prompt: Prompt,
        temperature: float,
        deadline_s: float,
        streaming: bool,
        parent: Context | None = None,
    ) -> StaticDecoding:
        async def batched() -> AsyncIterator[int]:
            for token in await self.batch((prompt.ids, prompt.max_new, temperature)):
                yield token

        async def alone() -> AsyncIterator[int]:
            tokens = self.stream(prompt.ids, prompt.max_new, temperature)
            while (token := await asyncio.to_thread(next, tokens, None)) is not None:
                yield token

        return StaticDecoding(alone if streaming else batched, deadline_s, parent)

    def close(self) -> None:
        pass


Decoder = EngineDecoder | StaticDecoder
