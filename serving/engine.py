"""The model server's engine: continuous batching (`tasks.shared.batching`) in a thread of its
own, with a bounded queue in front and a deadline on every request.

    submit ─► waiting (≤ max_queue beyond the batch's free rows, else QueueFull) ─► admitted
              between two decoding steps
              (≤ max_batch_size rows, ≤ max_prefill_tokens of prompt per step) ─► one id per
              row per step, to each request's own asyncio queue ─► End

A request leaves the batch the step it ends (EOS, its token count, its deadline, or its caller
gone), and a newcomer joins at the next step: the batch is formed when the model is free, not
when requests arrive. The thread keeps the replica's event loop free for new requests while
the model computes. Nothing here knows of Ray or HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tasks.shared.batching import DecodeBatch, Job, Progress

logger = logging.getLogger(__name__)
Reason = Literal["stop", "length", "deadline", "cancelled", "error"]


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(f"{waiting} requests are waiting for this replica")
        self.waiting, self.retry_after_s = waiting, retry_after_s


@dataclass(frozen=True)
class End:
    reason: Reason
    detail: str = ""


@dataclass
class Ticket:
    """One request in the engine, with the times its tracing and the request log report."""

    job: Job
    deadline: float  # time.monotonic()
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    enqueued: float = field(default_factory=time.monotonic)
    admitted: float | None = None
    prefilled: float | None = None
    first_token: float | None = None
    finished: float | None = None
    tokens: int = 0
    end: End | None = None
    cancelled: bool = False  # set from the event loop, read by the engine's thread

    @property
    def queue_ms(self) -> float | None:
        return None if self.admitted is None else (self.admitted - self.enqueued) * 1000

    @property
    def prefill_ms(self) -> float | None:
        if self.admitted is None or self.prefilled is None:
            return None
        return (self.prefilled - self.admitted) * 1000

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.enqueued) * 1000

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Ids after the first, per second of decoding (None below two ids)."""
        if self.first_token is None or self.finished is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / max(self.finished - self.first_token, 1e-9)


class Engine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int = 8,
        max_queue: int = 64,
        max_prefill_tokens: int = 2048,
    ) -> None:
        if max_batch_size < 1 or max_queue < 0 or max_prefill_tokens < 1:
            raise ValueError("max_batch_size and max_prefill_tokens >= 1, max_queue >= 0")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.max_prefill_tokens = max_prefill_tokens
        self.batch = DecodeBatch(model, tokenizer)
        self.waiting: deque[Ticket] = deque()
        self.running: dict[int, Ticket] = {}
        self.keys = itertools.count()
        self.service_s = 1.0  # a moving mean of admit-to-end, for Retry-After
        self.wake = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def submit(
        self, prompt: Sequence[int], max_new: int, temperature: float, deadline_s: float
    ) -> Ticket:
        """Queue one request (from the event loop that will read its events)."""
        job = Job(next(self.keys), list(prompt), max_new, temperature)
        ticket = Ticket(job, time.monotonic() + deadline_s, asyncio.get_running_loop())
        with self.wake:
            # Rows free in the batch take newcomers at the next step: they are not queued.
            free = max(0, self.max_batch_size - len(self.running))
            if len(self.waiting) >= self.max_queue + free:
                raise QueueFull(len(self.waiting) - free, self.retry_after_s())
            self.waiting.append(ticket)
            self.wake.notify()
        return ticket

    async def tokens(self, ticket: Ticket) -> AsyncIterator[int]:
        """The request's ids as they are decoded; `ticket.end` says why they stopped. Leaving
        early (the caller went away) takes the request out of the engine."""
        try:
            while not isinstance(event := await ticket.events.get(), End):
                yield event
        finally:
            if ticket.end is None:
                ticket.cancelled = True
                with self.wake:
                    self.wake.notify()

    def retry_after_s(self) -> int:
        """Seconds until the queue has room, roughly: the waiting batches times the mean."""
        batches = math.ceil((len(self.waiting) + 1) / self.max_batch_size)
        return max(1, min(60, math.ceil(batches * self.service_s)))

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self.wake:
                while not (self.waiting or self.running or self.closed):
                    self.wake.wait()
                if self.closed:
                    return
                newcomers = self._take()
                now = time.monotonic()
                for ticket in newcomers:  # under the lock: submit counts the free rows
                    ticket.admitted = now
                    self.running[ticket.job.key] = ticket
            try:
                self._expire()
                if newcomers:
                    progress = self.batch.admit([t.job for t in newcomers])
                    now = time.monotonic()
                    for ticket in newcomers:
                        ticket.prefilled = now
                    self._deliver(progress)
                if self.running:
                    self._deliver(self.batch.step())
            except Exception as exc:  # the model failed: answer everyone, start afresh
                logger.exception("decoding failed; ending %d requests", len(self.running))
                for ticket in list(self.running.values()):
                    self._finish(ticket, End("error", f"{type(exc).__name__}: {exc}"))
                self.batch = DecodeBatch(self.model, self.tokenizer)

    def _take(self) -> list[Ticket]:
        """Waiting tickets that fit in the batch and this step's prefill budget (one always)."""
        taken: list[Ticket] = []
        prefill = 0
        while self.waiting and len(self.running) + len(taken) < self.max_batch_size:
            ticket = self.waiting[0]
            if ticket.cancelled or time.monotonic() > ticket.deadline:
                self.waiting.popleft()
                self._finish(ticket, _expired(ticket))
                continue
            prefill += len(ticket.job.prompt)
            if taken and prefill > self.max_prefill_tokens:
                break
            taken.append(self.waiting.popleft())
        return taken

    def _expire(self) -> None:
        now = time.monotonic()
        gone = [t for t in self.running.values() if t.cancelled or now > t.deadline]
        if gone:
            self.batch.drop([t.job.key for t in gone])
            for ticket in gone:
                self._finish(ticket, _expired(ticket))

    def _deliver(self, progress: Progress) -> None:
        now = time.monotonic()
        for key, token in progress.tokens.items():
            ticket = self.running[key]
            ticket.tokens += 1
            ticket.first_token = ticket.first_token or now
            ticket.loop.call_soon_threadsafe(ticket.events.put_nowait, token)
        for key in progress.ended:
            ticket = self.running[key]
            self._finish(ticket, End("length" if ticket.tokens >= ticket.job.max_new else "stop"))

    def _finish(self, ticket: Ticket, end: End) -> None:
        ticket.finished, ticket.end = time.monotonic(), end
        self.running.pop(ticket.job.key, None)
        if ticket.admitted is not None and end.reason in ("stop", "length"):
            self.service_s = 0.9 * self.service_s + 0.1 * (ticket.finished - ticket.admitted)
        if not ticket.loop.is_closed():
            ticket.loop.call_soon_threadsafe(ticket.events.put_nowait, end)


def _expired(ticket: Ticket) -> End:
    if ticket.cancelled:
        return End("cancelled")
    where = "in the queue" if ticket.admitted is None else f"after {ticket.tokens} tokens"
    return End("deadline", where)
