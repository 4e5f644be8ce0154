"""A tiny OTLP/HTTP trace receiver for tests: POST /v1/traces with a protobuf
`ExportTraceServiceRequest` (gzip or not), its spans decoded and kept in memory.

    with OtlpReceiver() as receiver:
        setup_tracing(receiver.traces_url)   # or LLMOPS_OTLP_ENDPOINT=receiver.endpoint
        ...
        spans = receiver.wait_for(3)
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # hex
    span_id: str  # hex
    parent_span_id: str | None  # hex; None for a root
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    service_name: str | None
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def decode(body: bytes) -> list[ReceivedSpan]:
    """Every span of one export request."""
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex() or None,
                        attributes=_attributes(s.attributes),
                        events=[(e.name, _attributes(e.attributes)) for e in s.events],
                        service_name=service,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        status_code=s.status.code,
                    )
                )
    return spans


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class OtlpReceiver:
    """An OTLP/HTTP collector on a free local port, in a background thread; a context manager.
    `endpoint` is its base URL (what OTEL_EXPORTER_OTLP_ENDPOINT takes), `traces_url` the full
    one. Anything but a decodable POST to /v1/traces is answered 404 or 400 and counted."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()
        self.requests = 0  # export requests accepted
        self.refused = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # polls for shutdown every 50 ms (the default 0.5 s slows every test's teardown)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def traces_url(self) -> str:
        return self.endpoint + PATH

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The spans once at least `count` have come (AssertionError after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self._spans) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [s.name for s in self._spans]
                    raise AssertionError(f"{len(names)} of {count} spans came: {names}")
                self._changed.wait(left)
            return list(self._spans)

    def _keep(self, spans: list[ReceivedSpan]) -> None:
        with self._changed:
            self._spans += spans
            self.requests += 1
            self._changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != PATH:
                    return self._answer(404, b"")
                try:
                    encoding = self.headers.get("Content-Encoding", "")
                    spans = decode(_inflate(body, encoding))
                except Exception:  # a test sees it as `refused`, the exporter as a 400
                    receiver.refused += 1
                    return self._answer(400, b"")
                receiver._keep(spans)
                self._answer(200, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet in test output
                pass

        return Handler

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
