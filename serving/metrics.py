"""Per-version serving metrics in the Prometheus text format.

Each `ServingMetrics` owns a private `CollectorRegistry`: the global registry would make two
apps (or two tests) in one process collide on metric names. The canary reads these per version:
requests and errors for the error rate, the latency histogram for p95, tokens for cost, and
the rails' decisions for block and redact rates (over `llmops_requests_total`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

# 5 ms (a cached or refused request) to 30 s (a long generation on CPU), about x2 apart.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)
# What each serving rail can do (tasks.core.rails): every pair is a series from a version's
# first request on, at 0 until it happens.
RAIL_ACTIONS = (
    ("input", "block"),
    ("retrieval", "neutralise"),
    ("retrieval", "drop"),
    ("output", "block"),
    ("output", "redact"),
)


class ServingMetrics:
    """Counters and latency histograms (the request's; in the replica, its queue wait and its
    time to first token) labelled by model version. Thread-safe (the client's metrics are)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "llmops_requests_total",
            "Requests answered, by model version, route and HTTP status.",
            ["version", "route", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "llmops_errors_total",
            "Requests answered with an HTTP status of 400 or more, by model version and route.",
            ["version", "route"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "llmops_tokens_total",
            "Tokens by model version; direction in: prompt, out: completion.",
            ["version", "direction"],
            registry=self.registry,
        )
        self.rails = Counter(
            "llmops_rail_decisions_total",
            "Requests on which a rail acted, by model version, rail and action; a request "
            "counts once per rail and action, however many reasons or passages.",
            ["version", "rail", "action"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmops_request_latency_seconds",
            "Request latency in seconds, from arrival to the last byte, by model version.",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.queue = Histogram(
            "llmops_queue_seconds",
            "Time an answer waited in its replica's queue for a batch slot, by model version.",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "llmops_time_to_first_token_seconds",
            "Time from the replica's queue to an answer's first token (queue and prefill), "
            "by model version.",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(
        self,
        version: str,
        route: str,
        status: int,
        latency_s: float,
        tokens_in: int,
        tokens_out: int,
    ) -> None:
        """Count one finished request. Every series of the version is touched, errors at 0
        included, so a rate over them exists before the first error happens."""
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency_s must be finite and >= 0, got {latency_s}")
        if tokens_in < 0 or tokens_out < 0:
            raise ValueError(f"token counts must be >= 0, got in={tokens_in}, out={tokens_out}")
        self.requests.labels(version, route, str(int(status))).inc()
        errors = self.errors.labels(version, route)
        if status >= 400:
            errors.inc()
        self.tokens.labels(version, "in").inc(tokens_in)
        self.tokens.labels(version, "out").inc(tokens_out)
        self.latency.labels(version).observe(latency_s)

    def observe_engine(self, version: str, queue_ms: float | None, ttft_ms: float | None) -> None:
        """Where an answer's time went in its replica: the engine's queue and the time to its
        first token (what the latency histogram adds beyond them is the router and Ray)."""
        if queue_ms is not None:
            self.queue.labels(version).observe(queue_ms / 1000)
        if ttft_ms is not None:
            self.ttft.labels(version).observe(ttft_ms / 1000)

    def observe_rails(self, version: str, decisions: Iterable[Mapping[str, str]]) -> None:
        """Count one request's rail decisions (`Decision.as_dict()`s), each (rail, action)
        once; every known pair of the version is touched at 0 so a rate exists from the start."""
        for rail, action in RAIL_ACTIONS:
            self.rails.labels(version, rail, action)
        for rail, action in sorted({(d["rail"], d["action"]) for d in decisions}):
            self.rails.labels(version, rail, action).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for a /metrics endpoint."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
