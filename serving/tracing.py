"""Where each request's time went: OpenTelemetry spans from the router to the model replica,
sent to an OTLP/HTTP collector when one is configured, costing nothing when none is.

    request (router: route, version, status, request_id)
    ├── authenticate, route, log
    └── model (the handle call; `carrier()` rides along in the request)
        └── (replica, under `context_of(carrier)`) retrieve, prompt, queue, prefill, decode

Set up lazily, once per process (`tracer(settings)`), never at import. The provider is this
module's own, not OpenTelemetry's global one: Ray Serve's built-in tracing sets the global one
when enabled, and a global provider cannot be replaced (tests set up and tear down). Sampling
follows the SDK's standard variables (OTEL_TRACES_SAMPLER, ..._ARG); the default samples all.

Work done in the engine's thread (queue, prefill, decode) is recorded afterwards from the times
it measured (`record_span`, `record_decode`), so the decoding loop never touches a span; the
decode is one span with its totals (and an event every N steps), not a span per token.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, NoOpTracer, Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from tasks.shared.settings import Settings

SERVICE_NAME = "llmops-serving"
TRACES_PATH = "/v1/traces"
SPAN_NAMES = (
    *("request", "authenticate", "route", "model", "retrieve", "prompt"),
    *("queue", "prefill", "decode", "log"),
)
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent/tracestate
_OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)  # reused: no allocation when off


@dataclass(frozen=True)
class _Installed:
    endpoint: str
    service_name: str
    provider: TracerProvider
    tracer: Tracer


_lock = threading.Lock()
_installed: _Installed | None = None


def otlp_endpoint(configured: str | None = None) -> str | None:
    """The traces URL to export to: `configured` (the platform's `otlp_endpoint`), else the
    standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a full URL) or OTEL_EXPORTER_OTLP_ENDPOINT (a
    base); None when none is set or OTEL_SDK_DISABLED is true."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if configured:
        return _traces_url(configured)
    if full := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return full
    if base := os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return _traces_url(base)
    return None


def _traces_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def setup_tracing(endpoint: str | None, service_name: str = SERVICE_NAME) -> Tracer:
    """Install this process's tracer: spans batched to the OTLP/HTTP `endpoint` (the full
    traces URL), or a no-op tracer when it is None. Calling again with the same arguments
    keeps what is installed; other arguments flush and replace it."""
    global _installed
    with _lock:
        current = _installed
        if current and (current.endpoint, current.service_name) == (endpoint, service_name):
            return current.tracer
        _installed = None
        if current:
            current.provider.shutdown()  # flushes what it still holds
        if endpoint is None:
            return NoOpTracer()
        _installed = _install(endpoint, service_name)
        return _installed.tracer


def _install(endpoint: str, service_name: str) -> _Installed:
    # Imported here: the SDK and exporter load only in a process that traces.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name})
    provider = TracerProvider(resource=resource, shutdown_on_exit=True)
    # Batched in a thread of its own: a slow or absent collector never delays a request.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return _Installed(endpoint, service_name, provider, provider.get_tracer("llmops.serving"))


def tracer(source: Settings | str | None = None, service_name: str = SERVICE_NAME) -> Tracer:
    """The process's tracer, set up from settings (`otlp_endpoint`), an endpoint, or None (the
    standard OTEL_* variables only); a no-op tracer when no endpoint is found."""
    configured = source if isinstance(source, str) or source is None else source.otlp_endpoint
    return setup_tracing(otlp_endpoint(configured), service_name)


def enabled() -> bool:
    return _installed is not None


def flush(timeout_s: float = 10.0) -> bool:
    """Send the spans still batched (tests, shutdown); True when all went out in time."""
    installed = _installed
    return installed.provider.force_flush(int(timeout_s * 1000)) if installed else True


def shutdown_tracing() -> None:
    """Flush and uninstall: later spans are no-ops until the next setup."""
    setup_tracing(None)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OpenTelemetry refuses None values (with a warning per attribute): they are left out.
    return {k: v for k, v in (attributes or {}).items() if v is not None}


def span(
    name: str, attributes: Mapping[str, Any] | None = None, parent: Context | None = None
) -> AbstractContextManager[Span]:
    """`with span("retrieve", {"top_k": 4}) as s:` starts a span, current inside the block,
    under `parent` (e.g. `context_of(carrier)`) or the current span. An exception ends it with
    an error status. When tracing is off this costs one call and no allocation."""
    installed = _installed
    if installed is None:
        return _OFF
    return installed.tracer.start_as_current_span(name, parent, attributes=_clean(attributes))


def annotate(target: Span, **attributes: Any) -> None:
    """Set attributes known only later (a request's version, status); None values are skipped."""
    if target.is_recording():
        target.set_attributes(_clean(attributes))


def carrier() -> dict[str, str]:
    """The current trace context as a small dict of strings (W3C `traceparent`), to carry in a
    request across a Ray handle call; empty when tracing is off or no span is current."""
    if _installed is None:
        return {}
    found: dict[str, str] = {}
    _PROPAGATOR.inject(found)
    return found


def context_of(found: Mapping[str, str] | None) -> Context | None:
    """The context a `carrier()` holds, to pass as `parent` on the other side; None (the
    current context) when it is empty or tracing is off here."""
    if not found or _installed is None:
        return None
    return _PROPAGATOR.extract(found)


def _epoch_ns(monotonic_s: float, now_ns: int, now_mono: float) -> int:
    return now_ns - int((now_mono - monotonic_s) * 1e9)


def record_span(
    name: str,
    start: float,
    end: float,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
    events: Sequence[tuple[str, float, Mapping[str, Any]]] = (),
) -> None:
    """A span for work already done, from two `time.monotonic()` readings (e.g. the engine's
    queue wait: enqueued → admitted); `events` are (name, monotonic time, attributes)."""
    installed = _installed
    if installed is None:
        return
    now_ns, now_mono = time.time_ns(), time.monotonic()
    done = installed.tracer.start_span(
        name,
        parent,
        attributes=_clean(attributes),
        start_time=_epoch_ns(start, now_ns, now_mono),
    )
    for event, at, values in events:
        done.add_event(event, _clean(values), _epoch_ns(at, now_ns, now_mono))
    done.end(_epoch_ns(end, now_ns, now_mono))


def decode_attributes(
    first_token: float,
    end: float,
    tokens: int,
    first_token_ms: float | None,
    steps: int | None = None,
) -> dict[str, Any]:
    """The decode's totals: `steps` (forward passes after the first id, which the prefill
    emits; by default one per later id), `tokens` (ids emitted, the first included),
    `tokens_per_s` (ids after the first per second from the first id to `end`, as the request
    log's `decode_tokens_per_s`; absent below two ids) and `first_token_ms`."""
    later = max(tokens - 1, 0)
    steps = later if steps is None else steps
    rate = later / max(end - first_token, 1e-9) if later else None
    return _clean(
        {"steps": steps, "tokens": tokens, "tokens_per_s": rate, "first_token_ms": first_token_ms}
    )


def record_decode(
    first_token: float,
    end: float,
    tokens: int,
    first_token_ms: float | None,
    parent: Context | None = None,
    marks: Sequence[tuple[float, int]] = (),
    steps: int | None = None,
) -> None:
    """One "decode" span from the first id to `end` (monotonic times) with the totals of
    `decode_attributes`; `marks` (monotonic time, ids so far) become "tokens" events."""
    if _installed is None:
        return
    events = [("tokens", at, {"tokens": n}) for at, n in marks]
    attributes = decode_attributes(first_token, end, tokens, first_token_ms, steps)
    record_span("decode", first_token, end, attributes, parent, events)
