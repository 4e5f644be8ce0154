import gc
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tasks.clients.log_parts import Parts
from tasks.clients.request_log import (
    LOCK_NAME,
    WAL_DIR,
    WAL_NAME,
    FeedbackLog,
    RequestLog,
    _segment_to_parquet,
    read_feedback,
    read_requests,
)
from tasks.clients.request_schema import REQUESTS, TIMINGS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def record(i: int, **overrides) -> dict:
    base = {
        "request_id": f"req-{i}",
        "at": T0 + timedelta(seconds=i),
        "version": "challenger" if i % 2 else "champion",
        "route": "/v1/generate",
        "status": 200,
        "latency_ms": 10.0 + i,
        "prompt_tokens": 30 + i,
        "completion_tokens": 5,
        "prompt": f"question {i}\nwith a newline",
        "response": f"answer {i} ✓",
    }
    return {**base, **overrides}


def ids(folder: Path) -> list[str]:
    return list(read_requests(folder)["request_id"])


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("date=*/part-*.parquet"))


def wal_dirs(folder: Path) -> list[Path]:
    return sorted((folder / WAL_DIR).iterdir())


def test_round_trip_keeps_every_field_and_type(tmp_path: Path) -> None:
    with RequestLog(tmp_path) as log:
        log.append(record(0))
        log.append(
            record(
                1,
                at=datetime(2026, 1, 2, 5, 4, 6, tzinfo=timezone(timedelta(hours=2))),
                status=500,
                error="CUDA out of memory",
                session="s-1",
                sources=[{"doc_id": "d1", "score": 0.9}],
            )
        )
        log.append(record(2, sources='["d2"]', latency_ms=7))
        assert log.flush() is not None
        assert log.flush() is None  # nothing new
    frame = read_requests(tmp_path)
    assert list(frame["request_id"]) == ["req-0", "req-1", "req-2"]  # oldest first
    first = frame.iloc[0]
    assert first["at"] == pd.Timestamp(T0)
    assert first["prompt"] == "question 0\nwith a newline" and first["response"] == "answer 0 ✓"
    assert first["error"] is None and first["session"] is None and first["sources"] is None
    second = frame.iloc[1]
    assert second["at"] == pd.Timestamp("2026-01-02T03:04:06Z")  # stored in UTC
    assert (second["status"], second["error"], second["session"]) == (
        500,
        "CUDA out of memory",
        "s-1",
    )
    assert json.loads(second["sources"]) == [{"doc_id": "d1", "score": 0.9}]
    assert frame.iloc[2]["latency_ms"] == 7.0
    assert str(frame["status"].dtype) == "int32" and str(frame["at"].dtype) == "datetime64[us, UTC]"
    # The part sits in its day's partition; the WAL directory is given up on close.
    assert [p.parent.name for p in parts(tmp_path)] == [f"date={datetime.now(UTC):%Y-%m-%d}"]
    assert wal_dirs(tmp_path) == []


def test_rails_decisions_round_trip_and_old_parts_read_them_as_null(tmp_path: Path) -> None:
    # A part written before the rails column existed: the schema without it.
    old = REQUESTS.schema.remove(REQUESTS.schema.get_field_index("rails"))
    row = {k: v for k, v in REQUESTS.validate(record(0)).items() if k != "rails"}
    Parts(tmp_path).write(
        Parts(tmp_path).path("2026-01-02", "20260102T000000000000Z-old"),
        pa.Table.from_pylist([row], schema=old),
    )
    blocked = [{"rail": "input", "action": "block", "reason": "injection:system_prompt_request"}]
    with RequestLog(tmp_path) as log:
        log.append(record(1, rails=blocked))
        log.append(record(2, rails="[]"))
    frame = read_requests(tmp_path)
    assert list(frame["request_id"]) == ["req-0", "req-1", "req-2"]
    assert frame.iloc[0]["rails"] is None  # the old part
    assert json.loads(frame.iloc[1]["rails"]) == blocked
    assert frame.iloc[2]["rails"] == "[]"


def test_replica_timings_round_trip_and_old_parts_read_them_as_null(tmp_path: Path) -> None:
    # A part written before the timing columns (and rails) existed.
    old_names = [n for n in REQUESTS.schema.names if n not in (*TIMINGS, "rails")]
    old = pa.schema([REQUESTS.schema.field(n) for n in old_names])
    row = {k: v for k, v in REQUESTS.validate(record(0)).items() if k in old_names}
    Parts(tmp_path).write(
        Parts(tmp_path).path("2026-01-02", "20260102T000000000000Z-old"),
        pa.Table.from_pylist([row], schema=old),
    )
    timed = {"queue_ms": 1.5, "ttft_ms": 42.25, "decode_tokens_per_s": 17}
    with RequestLog(tmp_path) as log:
        log.append(record(1, **timed))
        log.append(record(2, status=503, queue_ms=3000.0))  # refused in the queue: no tokens
    frame = read_requests(tmp_path)
    assert list(frame["request_id"]) == ["req-0", "req-1", "req-2"]
    assert frame.iloc[0][list(TIMINGS)].isna().all()  # the old part
    assert frame.iloc[1][list(TIMINGS)].to_dict() == {**timed, "decode_tokens_per_s": 17.0}
    assert frame.iloc[2]["queue_ms"] == 3000.0 and frame.iloc[2][["ttft_ms"]].isna().all()
    assert all(str(frame[c].dtype) == "float64" for c in TIMINGS)


def test_read_requests_since(tmp_path: Path) -> None:
    with RequestLog(tmp_path) as log:
        for i in range(10):
            log.append(record(i))
    since = T0 + timedelta(seconds=7)
    assert list(read_requests(tmp_path, since)["request_id"]) == ["req-7", "req-8", "req-9"]
    assert read_requests(tmp_path, T0 + timedelta(days=1)).empty
    with pytest.raises(ValueError, match="timezone-aware"):
        read_requests(tmp_path, datetime(2026, 1, 1))


def test_an_empty_folder_reads_as_an_empty_frame_with_the_columns(tmp_path: Path) -> None:
    frame = read_requests(tmp_path / "nothing-yet")
    assert frame.empty and list(frame.columns) == REQUESTS.schema.names and "rails" in frame


def test_automatic_flush_every_n_records(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_every=5)
    for i in range(12):
        log.append(record(i))
    assert len(parts(tmp_path)) == 2
    assert ids(tmp_path) == [f"req-{i}" for i in range(10)]  # the last 2 wait in the WAL
    log.close()
    assert ids(tmp_path) == [f"req-{i}" for i in range(12)]
    log.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        log.append(record(99))


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_dropped_log_is_recovered_exactly_once(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_every=4)
    for i in range(10):
        log.append(record(i))
    del log  # no close: 8 records are parquet, 2 only in the WAL
    gc.collect()
    assert len(ids(tmp_path)) == 8
    again = RequestLog(tmp_path)
    assert len(again.recovered) == 1
    again.close()
    assert ids(tmp_path) == [f"req-{i}" for i in range(10)]


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_crash_after_the_rename_does_not_duplicate(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_every=100)
    for i in range(3):
        log.append(record(i))
    with log._lock:
        log._rotate()
    (segment,) = log._dir.glob("sealed-*.jsonl")
    _segment_to_parquet(segment, tmp_path, REQUESTS, Parts(tmp_path))  # then the crash
    del log
    gc.collect()
    RequestLog(tmp_path).close()
    assert ids(tmp_path) == ["req-0", "req-1", "req-2"]


def test_a_torn_last_line_is_quarantined_and_the_rest_recovered(tmp_path: Path) -> None:
    dead = tmp_path / WAL_DIR / "dead-writer"
    dead.mkdir(parents=True)
    (dead / LOCK_NAME).touch()
    good = json.dumps({**record(0), "at": T0.isoformat()})
    (dead / WAL_NAME).write_text(good + "\n" + good.replace("req-0", "req-1")[:40])
    with RequestLog(tmp_path) as log:
        assert len(log.recovered) == 1
    assert ids(tmp_path) == ["req-0"]
    (torn,) = (tmp_path / "_quarantine").glob("torn-*.jsonl")
    assert "req-1" in torn.read_text()
    assert not dead.exists()


def test_a_live_writer_is_not_taken_over(tmp_path: Path) -> None:
    first = RequestLog(tmp_path)
    for i in range(3):
        first.append(record(i))
    second = RequestLog(tmp_path)  # another replica on the same folder
    assert second.recovered == [] and ids(tmp_path) == []
    second.append(record(3))
    first.append(record(4))
    first.close()
    second.close()
    assert sorted(ids(tmp_path)) == [f"req-{i}" for i in range(5)]


CHILD = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from tasks.clients.request_log import RequestLog
log = RequestLog(Path(sys.argv[1]), flush_every=7)
i = 0
while True:
    log.append(dict(request_id=f"req-{i}", at=datetime.now(UTC), version="champion", route="/",
                    status=200, latency_ms=1.0, prompt_tokens=1, completion_tokens=1,
                    prompt="p" * 2000, response="r"))
    print(f"acked {i}", flush=True)
    i += 1
"""


@pytest.mark.parametrize("kill_after", [1, 40, 157])
def test_sigkill_loses_no_acknowledged_record(tmp_path: Path, kill_after: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked = []
    for line in child.stdout:
        acked.append(int(line.split()[1]))
        if len(acked) == kill_after:
            os.kill(child.pid, signal.SIGKILL)  # mid-stream, maybe mid-write or mid-flush
            break
    acked += [int(line.split()[1]) for line in child.stdout if line.startswith("acked")]
    assert child.wait() == -signal.SIGKILL
    RequestLog(tmp_path).close()
    got = [int(i.removeprefix("req-")) for i in ids(tmp_path)]
    assert len(got) == len(set(got)), "a record was recovered twice"
    assert set(acked) <= set(got), "an acknowledged record was lost"
    assert set(got) <= set(acked) | {max(acked) + 1}  # at most the one in flight beyond


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_every=37)
    stop = threading.Event()

    def writer(t: int) -> None:
        for i in range(150):
            log.append(record(t * 1000 + i))

    def flusher() -> None:
        while not stop.is_set():
            log.flush()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    background = threading.Thread(target=flusher)
    background.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    background.join()
    log.close()
    got = ids(tmp_path)
    assert len(got) == 900 and len(set(got)) == 900


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"request_id": None}, r"missing required fields \['request_id'\]"),
        ({"status": "200"}, "status must be an int"),
        ({"status": True}, "status must be an int"),
        ({"status": 99}, "status must be an int"),
        ({"prompt_tokens": -1}, "prompt_tokens must be an int"),
        ({"completion_tokens": 2**31}, "completion_tokens must be an int"),
        ({"latency_ms": float("nan")}, "latency_ms must be finite"),
        ({"latency_ms": "12"}, "latency_ms must be a number"),
        ({"queue_ms": -1.0}, "queue_ms must be finite and >= 0"),
        ({"ttft_ms": float("inf")}, "ttft_ms must be finite"),
        ({"decode_tokens_per_s": "9"}, "decode_tokens_per_s must be a number"),
        ({"at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"at": "2026-01-01T00:00:00Z"}, "timezone-aware datetime"),
        ({"version": 3}, "version must be a string"),
        ({"error": 500}, "error must be a string"),
        ({"sources": "not json"}, "sources must be JSON"),
        ({"sources": 5}, "sources must be a string"),
        ({"rails": "not json"}, "rails must be JSON"),
        ({"rails": {"rail": "input"}}, "rails must be a list"),
        ({"rails": [{"rail": "input", "action": "block"}]}, "rails must be a list"),
        ({"latency": 5.0}, r"unknown fields \['latency'\]"),
        ({"prompt": "lone \ud800 surrogate"}, "surrogate"),
    ],
)
def test_bad_records_are_refused_and_nothing_is_written(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    with RequestLog(tmp_path) as log:
        bad = record(0, **overrides)
        if overrides.get("request_id", "") is None:
            del bad["request_id"]
        with pytest.raises(ValueError, match=message):
            log.append(bad)
        assert (log._dir / WAL_NAME).stat().st_size == 0
        log.append(record(1))  # the log still works
    assert ids(tmp_path) == ["req-1"]


def test_flush_every_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_every"):
        RequestLog(tmp_path, flush_every=0)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_the_feedback_log_is_kept_the_same_way_beside_the_requests(tmp_path: Path) -> None:
    """Its own schema and checks, the same WAL, parquet and recovery; the request log's readers
    do not see it in its subfolder."""
    folder = tmp_path / "feedback"

    def rating(i: int, **overrides) -> dict:
        base = {"feedback_id": f"fb-{i}", "request_id": f"req-{i}", "at": T0, "rating": 1}
        return {**base, **overrides}

    with RequestLog(tmp_path) as requests:
        requests.append(record(0))
    log = FeedbackLog(folder, flush_every=2)
    log.append(rating(0, correction="a better answer", user="ann"))
    log.append(rating(1, rating=-1, at=T0 + timedelta(seconds=1)))
    log.append(rating(2, at=T0 + timedelta(seconds=2)))
    for bad, message in [
        (rating(3, rating=3), "rating"),
        (record(3), "unknown fields"),
        (rating(3, correction=" "), "blank"),
    ]:
        with pytest.raises(ValueError, match=message):
            log.append(bad)
    del log  # no close: 2 ratings in parquet, 1 only in the WAL
    gc.collect()
    again = FeedbackLog(folder)
    assert len(again.recovered) == 1
    again.close()
    frame = read_feedback(folder)
    assert list(frame["feedback_id"]) == ["fb-0", "fb-1", "fb-2"]
    assert list(frame["rating"]) == [1, -1, 1] and str(frame["rating"].dtype) == "int8"
    assert (frame.loc[0, "correction"], frame.loc[0, "user"]) == ("a better answer", "ann")
    assert frame.loc[1, "correction"] is None
    assert list(read_feedback(folder, T0 + timedelta(seconds=1))["feedback_id"]) == ["fb-1", "fb-2"]
    assert ids(tmp_path) == ["req-0"]
    assert list(read_requests(tmp_path, request_ids=["req-0", "req-9"])["request_id"]) == ["req-0"]
    assert read_requests(tmp_path, request_ids=[]).empty


def test_monitoring_leaves_shadow_copies_out_of_served_traffic(tmp_path: Path) -> None:
    from tasks.core.drift import TimeRange
    from tasks.core.routing import SHADOW
    from tasks.monitor.windows import requests_in

    log = RequestLog(tmp_path)
    log.append(record(1))
    log.append(record(2, route=SHADOW + "/v1/generate", version="challenger"))
    log.close()
    window = TimeRange(T0, T0 + timedelta(minutes=1))
    assert len(read_requests(tmp_path)) == 2  # the log keeps both: the canary judges copies
    assert list(requests_in(tmp_path, window)["request_id"]) == ["req-1"]
