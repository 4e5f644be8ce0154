"""Serving traces end to end on a real OTLP/HTTP exporter: spans made in the "router", carried
across a handle call (here a thread: no current span of its own, like a replica), recorded in
the "replica", exported and decoded by a local receiver (`tests/otlp_receiver.py`)."""

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.trace import INVALID_SPAN, NoOpTracer

from serving import tracing
from serving.tracing import (
    annotate,
    carrier,
    context_of,
    otlp_endpoint,
    record_decode,
    record_span,
    span,
    tracer,
)
from tasks.shared.settings import get_settings

from otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "LLMOPS_OTLP_ENDPOINT",
)


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    tracing.shutdown_tracing()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def replica(found: dict[str, str]) -> None:
    """What a model replica does with the carrier its request brought."""
    parent = context_of(found)
    with span("retrieve", {"top_k": 4}, parent=parent):
        pass
    arrived = time.monotonic()
    record_span("queue", arrived, arrived + 0.005, {"waiting": 1}, parent)
    # The prefill's id at 10 ms, then four steps 2 ms apart; a mark every second step.
    first, marks = arrived + 0.010, [(arrived + 0.014, 3), (arrived + 0.018, 5)]
    record_decode(first, arrived + 0.020, 5, 10.0, parent, marks, steps=4)


def test_spans_carried_to_the_replica_arrive_with_their_parents(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_OTLP_ENDPOINT", receiver.endpoint)  # the platform's setting
    assert not isinstance(tracer(get_settings(), "router"), NoOpTracer)
    with span("request", {"route": "/v1/completions", "request_id": "r-1"}) as root:
        with span("model") as call:
            found = carrier()
            worker = threading.Thread(target=replica, args=(found,))
            worker.start()
            worker.join()
        annotate(root, version="champion", status=200, error=None)
    assert set(found) == {"traceparent"} and call.get_span_context().trace_id
    assert tracing.flush()

    spans = {s.name: s for s in receiver.wait_for(5)}
    assert sorted(spans) == ["decode", "model", "queue", "request", "retrieve"]
    assert len({s.trace_id for s in spans.values()}) == 1  # one trace across the carrier
    assert spans["request"].parent_span_id is None
    assert spans["model"].parent_span_id == spans["request"].span_id
    for name in ("retrieve", "queue", "decode"):
        assert spans[name].parent_span_id == spans["model"].span_id, name
    assert spans["request"].attributes == {
        "route": "/v1/completions",
        "request_id": "r-1",
        "version": "champion",
        "status": 200,
    }
    assert spans["request"].service_name == "router"
    assert spans["retrieve"].attributes == {"top_k": 4}

    decode = spans["decode"]
    assert {k: decode.attributes[k] for k in ("steps", "tokens")} == {"steps": 4, "tokens": 5}
    assert decode.attributes["tokens_per_s"] == pytest.approx(4 / 0.010, rel=1e-3)
    assert decode.attributes["first_token_ms"] == pytest.approx(10, rel=1e-3)
    assert decode.events == [("tokens", {"tokens": 3}), ("tokens", {"tokens": 5})]
    assert decode.end_ns - decode.start_ns == pytest.approx(10_000_000, abs=10_000)
    queue = spans["queue"]
    assert queue.end_ns - queue.start_ns == pytest.approx(5_000_000, abs=10_000)
    assert queue.end_ns <= decode.start_ns  # laid out on the request's own timeline


def test_an_error_in_a_span_marks_it(receiver: OtlpReceiver) -> None:
    tracer(receiver.traces_url)
    with pytest.raises(ValueError), span("prompt"):
        raise ValueError("too long")
    assert tracing.flush()
    [failed] = receiver.wait_for(1)
    assert failed.name == "prompt" and failed.status_code == 2  # ERROR


def test_without_an_endpoint_nothing_is_exported_and_spans_cost_nothing(
    receiver: OtlpReceiver,
) -> None:
    assert isinstance(tracer(None), NoOpTracer) and not tracing.enabled()
    with span("request", {"route": "/v1/completions"}) as root, span("model"):
        assert root is INVALID_SPAN and not root.is_recording()
        annotate(root, status=200)
        assert carrier() == {}
    assert context_of({"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}) is None
    now = time.monotonic()
    record_span("queue", now, now)
    record_decode(now, now, 1, None)
    assert tracing.flush()

    started = time.perf_counter()
    for _ in range(10_000):
        with span("decode", {"tokens": 1}):
            pass
    assert time.perf_counter() - started < 0.5  # ~0.2 µs each; generous for a busy machine
    time.sleep(0.2)
    assert receiver.spans == [] and receiver.requests == 0


def test_the_endpoint_comes_from_the_setting_else_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert otlp_endpoint(None) is None
    assert otlp_endpoint("http://c:4318/") == "http://c:4318/v1/traces"
    assert otlp_endpoint("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318")
    assert otlp_endpoint(None) == "http://base:4318/v1/traces"
    assert otlp_endpoint("http://mine:4318") == "http://mine:4318/v1/traces"  # the setting wins
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://full:4318/traces")
    assert otlp_endpoint(None) == "http://full:4318/traces"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert otlp_endpoint("http://mine:4318") is None


def test_importing_the_module_sets_nothing_up() -> None:
    code = (
        "import sys, serving.tracing as t; "
        "print(t.enabled(), any(m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))"
        " for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
