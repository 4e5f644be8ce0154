"""One request on its way to the request log and the metrics, and the model call behind it
(shared by the router's HTTP side and its shadow mirror)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ray.exceptions import RayActorError

from serving.api import ApiError, Generation
from serving.metrics import ServingMetrics
from tasks.core.routing import VERSION_HEADER

logger = logging.getLogger(__name__)
REQUEST_ID_HEADER = "x-llmops-request-id"  # the request log's key, also on refusals
NO_VERSION = "none"  # requests refused before a version was chosen


@dataclass
class Record:
    """One request on its way to the request log and the metrics."""

    request_id: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: str = NO_VERSION
    status: int = 200
    prompt: str = ""
    response: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    session: str | None = None
    sources: list[dict[str, Any]] | None = None
    rails: list[dict[str, str]] | None = None  # the rails' decisions, as the response has them
    # Where the time went in the model replica, as its reply reports it (None: not measured).
    queue_ms: float | None = None
    ttft_ms: float | None = None
    decode_tokens_per_s: float | None = None
    trace: dict[str, str] | None = None  # the request span's context (`serving.tracing`)

    def answered(self, out: Generation) -> None:
        self.response, self.prompt_tokens = out.text, out.prompt_tokens
        self.completion_tokens = out.completion_tokens
        self.sources = [s.model_dump() for s in out.sources]
        self.rails = [d.model_dump() for d in out.rails]
        self.queue_ms, self.ttft_ms = out.queue_ms, out.ttft_ms
        self.decode_tokens_per_s = out.decode_tokens_per_s

    def refused(self, error: ApiError) -> None:
        self.status, self.error = error.status, error.message

    def count(self, metrics: ServingMetrics, latency_s: float) -> None:
        """Into the metrics: the request, and the rails' decisions of the version that had it."""
        metrics.observe(
            self.version,
            self.route,
            self.status,
            latency_s,
            self.prompt_tokens,
            self.completion_tokens,
        )
        if self.version != NO_VERSION:
            metrics.observe_rails(self.version, self.rails or [])
            metrics.observe_engine(self.version, self.queue_ms, self.ttft_ms)

    def row(self, latency_s: float) -> dict[str, Any]:
        """The request log's record of this request (`tasks.clients.request_schema.SCHEMA`)."""
        return {
            "request_id": self.request_id,
            "at": self.at,
            "version": self.version,
            "route": self.route,
            "status": self.status,
            "latency_ms": latency_s * 1000,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt": self.prompt,
            "response": self.response,
            "error": self.error,
            "session": self.session,
            "sources": json.dumps(self.sources or []),
            "rails": json.dumps(self.rails or []),
            "queue_ms": self.queue_ms,
            "ttft_ms": self.ttft_ms,
            "decode_tokens_per_s": self.decode_tokens_per_s,
        }

    def headers(self) -> dict[str, str]:
        chosen = {VERSION_HEADER: self.version} if self.version != NO_VERSION else {}
        return {REQUEST_ID_HEADER: self.request_id, **chosen}


async def complete(server: Any, req: Any) -> Any:
    """The model's answer; once more if the replica died under the request (its node went
    away): Serve's handle has then dropped that replica, so the retry lands on a live one of
    the same version. Generation has no side effects, so a second try is safe."""
    try:
        return await server.complete.remote(req)
    except RayActorError as exc:
        logger.warning("replica lost (%s); retrying on another replica", type(exc).__name__)
        return await server.complete.remote(req)
