import math

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import LATENCY_BUCKETS, RAIL_ACTIONS, ServingMetrics

pytestmark = pytest.mark.unit

CHAT = "/v1/chat/completions"


def samples(metrics: ServingMetrics) -> dict[tuple[str, frozenset], float]:
    body, _ = metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_requests_errors_tokens_and_latency_per_version() -> None:
    metrics = ServingMetrics()
    metrics.observe("champion", CHAT, 200, 0.020, 100, 30)
    metrics.observe("champion", CHAT, 200, 0.300, 50, 10)
    metrics.observe("champion", "/v1/completions", 503, 12.0, 40, 0)
    metrics.observe("challenger", CHAT, 429, 0.004, 0, 0)
    found = samples(metrics)

    assert value(found, "llmops_requests_total", version="champion", route=CHAT, status="200") == 2
    assert (
        value(found, "llmops_requests_total", version="challenger", route=CHAT, status="429") == 1
    )
    # Errors are statuses >= 400; a version with none still has its series, at 0.
    assert value(found, "llmops_errors_total", version="champion", route="/v1/completions") == 1
    assert value(found, "llmops_errors_total", version="champion", route=CHAT) == 0
    assert value(found, "llmops_errors_total", version="challenger", route=CHAT) == 1
    assert value(found, "llmops_tokens_total", version="champion", direction="in") == 190
    assert value(found, "llmops_tokens_total", version="champion", direction="out") == 40
    assert value(found, "llmops_tokens_total", version="challenger", direction="in") == 0

    hist = "llmops_request_latency_seconds"
    assert value(found, f"{hist}_count", version="champion") == 3
    assert value(found, f"{hist}_sum", version="champion") == pytest.approx(12.32)
    assert value(found, f"{hist}_bucket", version="champion", le="0.025") == 1
    assert value(found, f"{hist}_bucket", version="champion", le="0.5") == 2
    assert value(found, f"{hist}_bucket", version="champion", le="15.0") == 3
    assert value(found, f"{hist}_bucket", version="challenger", le="0.005") == 1
    assert value(found, f"{hist}_bucket", version="challenger", le="+Inf") == 1


def test_buckets_span_5_ms_to_30_s() -> None:
    assert LATENCY_BUCKETS[0] == 0.005 and LATENCY_BUCKETS[-1] == 30
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    metrics = ServingMetrics()
    metrics.observe("v1", CHAT, 200, 1.0, 1, 1)
    bounds = {
        dict(labels)["le"]
        for name, labels in samples(metrics)
        if name == "llmops_request_latency_seconds_bucket"
    }
    assert bounds == {str(float(b)) for b in LATENCY_BUCKETS} | {"+Inf"}


def test_render_gives_the_text_format_and_its_content_type() -> None:
    metrics = ServingMetrics()
    metrics.observe("v1", CHAT, 200, 0.1, 1, 1)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert b"# TYPE llmops_requests_total counter" in body
    assert b"# TYPE llmops_request_latency_seconds histogram" in body


def test_instances_do_not_share_or_touch_the_global_registry() -> None:
    first, second = ServingMetrics(), ServingMetrics()  # no "duplicated timeseries" error
    first.observe("v1", CHAT, 200, 0.1, 1, 1)
    assert (
        "llmops_requests_total",
        frozenset({("version", "v1"), ("route", CHAT), ("status", "200")}),
    ) in samples(first)
    assert not any(name.startswith("llmops_") for name, _ in samples(second))
    assert (
        REGISTRY.get_sample_value(
            "llmops_requests_total", {"version": "v1", "route": CHAT, "status": "200"}
        )
        is None
    )


@pytest.mark.parametrize(
    ("latency", "tokens_in", "tokens_out", "message"),
    [
        (-0.1, 1, 1, "latency_s"),
        (math.nan, 1, 1, "latency_s"),
        (0.1, -1, 1, "token counts"),
        (0.1, 1, -1, "token counts"),
    ],
)
def test_bad_observations_are_refused(
    latency: float, tokens_in: int, tokens_out: int, message: str
) -> None:
    metrics = ServingMetrics()
    with pytest.raises(ValueError, match=message):
        metrics.observe("v1", CHAT, 200, latency, tokens_in, tokens_out)
    assert not any(name == "llmops_requests_total" for name, _ in samples(metrics))


def test_rail_decisions_per_version_rail_and_action() -> None:
    metrics = ServingMetrics()
    block = {"rail": "input", "action": "block", "reason": "injection:system_prompt_request"}
    jailbreak = {"rail": "input", "action": "block", "reason": "injection:role_override"}
    neutralised = {"rail": "retrieval", "action": "neutralise", "reason": "injection:x"}
    metrics.observe_rails("champion", [block, jailbreak])  # one request, two reasons: once
    metrics.observe_rails("champion", [neutralised, neutralised])
    metrics.observe_rails("champion", [])
    metrics.observe_rails("challenger", [])
    found = samples(metrics)
    name = "llmops_rail_decisions_total"
    assert value(found, name, version="champion", rail="input", action="block") == 1
    assert value(found, name, version="champion", rail="retrieval", action="neutralise") == 1
    # Every pair of a version that has been seen exists at 0: a rate exists before the first.
    for rail, action in RAIL_ACTIONS:
        assert value(found, name, version="challenger", rail=rail, action=action) == 0
    assert value(found, name, version="champion", rail="output", action="redact") == 0


def test_queue_wait_and_time_to_first_token_per_version() -> None:
    metrics = ServingMetrics()
    metrics.observe_engine("champion", queue_ms=3.0, ttft_ms=40.0)
    metrics.observe_engine("champion", queue_ms=None, ttft_ms=None)  # refused: nothing measured
    found = samples(metrics)
    assert value(found, "llmops_queue_seconds_count", version="champion") == 1
    assert value(found, "llmops_queue_seconds_bucket", version="champion", le="0.005") == 1
    assert value(found, "llmops_time_to_first_token_seconds_sum", version="champion") == 0.04
    assert (
        value(found, "llmops_time_to_first_token_seconds_bucket", version="champion", le="0.025")
        == 0
    )
