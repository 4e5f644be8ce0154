"""The canary reads the request log WAL included: a step is judged on records that the router
has fsynced but not yet flushed to parquet, and a record seen in both counts once."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.canary.rollout import step_stats
from tasks.clients.request_log import RequestLog, read_acknowledged

pytestmark = pytest.mark.unit


def record(i: int, version: str, status: int = 200, latency: float = 10.0) -> dict:
    return {
        "request_id": f"r{i}",
        "at": datetime.now(UTC),
        "version": version,
        "route": "/v1/completions",
        "status": status,
        "latency_ms": latency,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "prompt": "p",
        "response": "r",
    }


def test_unflushed_and_flushed_records_are_read_once(tmp_path: Path) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    with RequestLog(tmp_path, flush_every=1000) as log:
        for i in range(6):
            log.append(record(i, "1", latency=10.0 + i))
        assert len(read_acknowledged(tmp_path, since)) == 6  # all in the WAL still
        log.flush()
        for i in range(6, 10):
            log.append(record(i, "2", status=503 if i == 9 else 200))
        frame = read_acknowledged(tmp_path, since)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(10))
    stats = step_stats(frame, {"champion": "1", "challenger": "2"}, {"champion": 1.0})
    assert (stats["champion"].requests, stats["champion"].errors) == (6, 0)
    assert stats["champion"].p95_ms == pytest.approx(14.75) and stats["champion"].quality == 1.0
    assert (stats["challenger"].requests, stats["challenger"].errors) == (4, 1)
    assert stats["challenger"].quality is None
    assert len(read_acknowledged(tmp_path, datetime.now(UTC))) == 0  # nothing since now
