"""Feedback stored and surfaced, on the real Serve app (`worlds.serving_app`: two registered
versions, a RAG index, an API key): answers rated through HTTP, stored durably beside the
request log, bad feedback refused with nothing stored, the monitor's per-version summary, and a
correction turned into a golden-set row through the CLI."""

import json
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from llmops.cli import main
from tasks.clients.request_log import read_feedback, read_requests
from tasks.core.drift import TimeRange
from tasks.monitor.feedback import UNKNOWN, feedback_markdown, feedback_summary

from worlds import WEIGHTS, Service, complete, post

pytestmark = pytest.mark.integration

CORRECTION = "try runs its block; except clauses catch the exceptions raised in it."


def flushed(service: Service, feedback_ids: set[str], request_ids: set[str]) -> pd.DataFrame:
    """The feedback log once these ratings and requests are in parquet (the router flushes
    both logs every 0.5 s)."""
    settings = service.settings
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        feedback = read_feedback(settings.feedback_dir)
        logged = set(read_requests(settings.requests_dir, request_ids=request_ids)["request_id"])
        if feedback_ids <= set(feedback["feedback_id"]) and request_ids <= logged:
            return feedback
        time.sleep(0.25)
    raise AssertionError("the logs were not flushed within 15 s")


def cli(capsys: pytest.CaptureFixture, *argv: str) -> str:
    main(list(argv))
    return capsys.readouterr().out


def test_feedback_is_stored_and_surfaced(
    service: Service, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = datetime.now(UTC)
    question = "How do I handle exceptions with try and except?"
    with service.client() as c:
        rag = complete(c, question, rag=True, max_tokens=4, top_k=3)
        plain = complete(c, "What does a for loop do?", max_tokens=4)
        assert rag["sources"] and all(s["text"] for s in rag["sources"])
        good = [
            {"request_id": rag["id"], "rating": -1, "correction": CORRECTION, "user": "ann"},
            {"request_id": plain["id"], "rating": 1, "comment": "short and right"},
            {"request_id": plain["id"], "rating": -1, "correction": "It repeats a block."},
            {"request_id": "cmpl-never-served", "rating": 1},
        ]
        stored = []
        for body in good:
            r = post(c, "/v1/feedback", body)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["request_id"] == body["request_id"] and answer["stored"] is True
            assert answer["id"].startswith("fb-")
            stored.append(answer["id"])

        refused = [
            ({"request_id": rag["id"], "rating": 1, "corection": "typo"}, "corection"),
            ({"request_id": rag["id"], "rating": 3}, "rating"),
            ({"request_id": rag["id"], "rating": True}, "rating"),
            ({"rating": 1, "correction": "to no request"}, "request_id"),
            ({"request_id": "  ", "rating": 1}, "request_id"),
        ]
        for body, field in refused:
            r = post(c, "/v1/feedback", body)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["code"] == "invalid_request" and field in error["message"]
            assert error["type"] == "invalid_request_error"
        r = c.post(
            "/v1/feedback", content=b'{"request_id": ', headers={"content-type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    for key in (None, "wrong-key"):
        with service.client(key) as anonymous:
            r = post(anonymous, "/v1/feedback", {"request_id": rag["id"], "rating": 1})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

    # Stored durably with the request log: exactly the accepted ones, nothing refused.
    feedback = flushed(service, set(stored), {rag["id"], plain["id"]})
    assert list(feedback["feedback_id"]) == stored
    first = feedback.iloc[0]
    assert (first["request_id"], first["rating"], first["correction"], first["user"]) == (
        rag["id"],
        -1,
        CORRECTION,
        "ann",
    )
    assert feedback.iloc[1]["comment"] == "short and right" and feedback.iloc[1]["user"] is None
    assert service.settings.feedback_dir.parent == service.settings.requests_dir

    # The request log holds the passages' text, as the answer's sources did.
    row = read_requests(service.settings.requests_dir, request_ids=[rag["id"]]).iloc[0]
    assert json.loads(row["sources"]) == rag["sources"]

    # The monitor's summary: per served version, and the unknown request counted, not dropped.
    window = TimeRange(started - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1))
    summary = feedback_summary(service.settings, window)
    assert summary.ratings == 4 and summary.reconciles
    by = {v.version: v for v in summary.versions}
    assert set(by) <= set(WEIGHTS) and sum(v.ratings for v in by.values()) == 3
    assert by[rag["version"]].corrections >= 1
    assert sum(v.positive for v in by.values()) == 1
    assert (summary.unknown.ratings, summary.unknown_request_ids) == (1, ["cmpl-never-served"])
    table = feedback_markdown(summary)
    assert "| version | ratings | positive | share positive | corrections |" in table
    assert f"| {UNKNOWN} | 1 | 1 | 100% | 0 |" in table and "`cmpl-never-served`" in table

    # The CLI: recent feedback with its question and answer; corrections as golden candidates.
    monkeypatch.setenv("LLMOPS_HOME", str(service.settings.home))
    shown = cli(capsys, "feedback", "--width", "1000")
    assert question in shown and CORRECTION in shown and "request not in the log" in shown
    candidates = cli(capsys, "golden", "candidates", "--width", "1000")
    assert rag["id"] in candidates and plain["id"] in candidates
    assert "2 candidate(s)" in candidates and "cannot be approved: no passages" in candidates

    assert "approved" in cli(capsys, "golden", "approve", rag["id"], "--by", "reviewer")
    lines = service.settings.golden_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "question": question,
            "reference": CORRECTION,
            "source_ids": list(dict.fromkeys(s["doc_id"] for s in rag["sources"])),
            "approved_by": "reviewer",
            "request_id": rag["id"],
        }
    ]
    for argv, message in [
        (("golden", "approve", rag["id"]), "already in the golden set (by reviewer)"),
        (("golden", "approve", plain["id"]), "retrieved no passages"),
        (("golden", "approve", "cmpl-never-served"), "no correction to approve"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        assert exited.value.code == 1 and message in capsys.readouterr().err, argv
    assert len(service.settings.golden_path.read_text().splitlines()) == 1
    assert rag["id"] not in cli(capsys, "golden", "candidates")
