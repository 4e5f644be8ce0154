"""The router's request record carries the replica's timings into the request log's row."""

import pytest

from serving.api import ApiError, Generation
from serving.record import Record
from tasks.clients.request_schema import TIMINGS, validate_record

pytestmark = pytest.mark.unit


def test_the_replica_timings_reach_the_log_row() -> None:
    out = Generation(
        text="It opens a context.",
        prompt_tokens=12,
        completion_tokens=5,
        finish_reason="stop",
        queue_ms=0.8,
        ttft_ms=35.5,
        decode_tokens_per_s=48.0,
    )
    rec = Record("cmpl-1", "/v1/completions", version="3")
    rec.answered(out)
    row = validate_record(rec.row(0.05))
    assert {k: row[k] for k in TIMINGS} == {
        "queue_ms": 0.8,
        "ttft_ms": 35.5,
        "decode_tokens_per_s": 48.0,
    }


def test_a_refused_request_has_no_timings() -> None:
    rec = Record("cmpl-2", "/v1/completions")
    rec.refused(ApiError(429, "the replica is busy", "overloaded"))
    row = validate_record(rec.row(0.001))
    assert [row[k] for k in TIMINGS] == [None, None, None]
