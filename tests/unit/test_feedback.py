"""Feedback: the request body's checks, the feedback record's, the join with the request log,
the per-version summary and its table, and corrections as golden-set candidates."""

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from serving.api import ApiError, FeedbackRequest, parse_request
from tasks.clients.request_schema import FEEDBACK_SCHEMA, SCHEMA, validate_feedback
from tasks.monitor.feedback import (
    UNKNOWN,
    feedback_markdown,
    golden_candidates,
    join_feedback,
    source_doc_ids,
    summarize_feedback,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def sources(*doc_ids: str) -> str:
    return json.dumps(
        [{"doc_id": d, "source": f"{d}.txt", "score": 0.5, "text": "a passage"} for d in doc_ids]
    )


def requests() -> pd.DataFrame:
    rows = [
        ("r1", "1", "What does try do?", "It tries.", sources("d-try", "d-with", "d-try")),
        ("r2", "2", "What is a for loop?", "A loop.", sources("d-for")),
        ("r3", "2", "Hello", "Hi.", "[]"),
    ]
    frame = pd.DataFrame(rows, columns=["request_id", "version", "prompt", "response", "sources"])
    frame["at"] = [T0 + timedelta(minutes=i) for i in range(len(frame))]
    frame["route"] = "/v1/completions"
    return frame.reindex(columns=SCHEMA.names)


def feedback(*rows: tuple) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["request_id", "rating", "correction"])
    frame["feedback_id"] = [f"fb-{i}" for i in range(len(frame))]
    frame["at"] = [T0 + timedelta(hours=1, minutes=i) for i in range(len(frame))]
    frame["user"] = "ann"
    return frame.reindex(columns=FEEDBACK_SCHEMA.names)


FEEDBACK = (
    ("r1", 1, None),
    ("r1", -1, "try runs a block and catches its exceptions"),
    ("r2", 1, None),
    ("r2", -1, None),
    ("r3", -1, "Hello to you."),
    ("r-missing", -1, "a correction with nowhere to go"),
    ("r-missing", 1, None),
    ("r-gone", 1, None),
)


def test_the_join_keeps_every_feedback_row_and_marks_unknown_requests() -> None:
    joined = join_feedback(feedback(*FEEDBACK), requests())
    assert list(joined["feedback_id"]) == [f"fb-{i}" for i in range(len(FEEDBACK))]
    assert list(joined["known"]) == [True] * 5 + [False] * 3
    assert list(joined["version"]) == ["1", "1", "2", "2", "2", UNKNOWN, UNKNOWN, UNKNOWN]
    assert joined.loc[0, "prompt"] == "What does try do?" and joined.loc[2, "response"] == "A loop."
    assert joined.loc[0, "requested_at"] == T0


def test_a_request_logged_twice_does_not_double_its_feedback() -> None:
    twice = pd.concat([requests(), requests().iloc[[0]]], ignore_index=True)
    assert len(join_feedback(feedback(*FEEDBACK), twice)) == len(FEEDBACK)


def test_the_summary_counts_per_version_and_reconciles() -> None:
    summary = summarize_feedback(join_feedback(feedback(*FEEDBACK), requests()), "the window")
    by = {v.version: v for v in summary.versions}
    assert list(by) == ["1", "2"]
    assert (by["1"].ratings, by["1"].positive, by["1"].negative, by["1"].corrections) == (
        2,
        1,
        1,
        1,
    )
    assert (by["2"].ratings, by["2"].positive, by["2"].corrections) == (3, 1, 1)
    assert by["2"].share_positive == pytest.approx(1 / 3)
    assert (summary.unknown.ratings, summary.unknown.corrections) == (3, 1)
    assert summary.unknown_request_ids == ["r-missing", "r-gone"]  # each once, in order
    assert summary.ratings == len(FEEDBACK) and summary.reconciles


def test_no_feedback_is_a_summary_of_nothing() -> None:
    summary = summarize_feedback(join_feedback(feedback(), requests()), "w")
    assert summary.ratings == 0 and summary.versions == [] and summary.unknown.ratings == 0
    assert summary.unknown.share_positive is None and summary.reconciles
    assert feedback_markdown(summary) == "Feedback (w): none.\n"


def test_the_table_shows_each_version_and_lists_unknown_request_ids() -> None:
    summary = summarize_feedback(join_feedback(feedback(*FEEDBACK), requests()), "the window")
    text = feedback_markdown(summary)
    assert "Feedback (the window): 8 rating(s)" in text
    assert "| 1 | 2 | 1 | 50% | 1 |" in text and "| 2 | 3 | 1 | 33% | 1 |" in text
    assert f"| {UNKNOWN} | 3 | 2 | 67% | 1 |" in text
    assert "`r-missing`, `r-gone`" in text
    many = summary.model_copy(update={"unknown_request_ids": [f"x{i}" for i in range(13)]})
    assert "`x9`, and 3 more" in feedback_markdown(many) and "x10" not in feedback_markdown(many)


def test_corrections_on_known_requests_are_golden_candidates_until_approved() -> None:
    rows = (*FEEDBACK, ("r1", -1, "try: the latest correction wins"))
    joined = join_feedback(feedback(*rows), requests())
    got = golden_candidates(joined, approved=[])
    assert list(got["request_id"]) == ["r3", "r1"]  # by the time of the latest correction
    r1 = got.set_index("request_id").loc["r1"]
    assert (r1["question"], r1["reference"]) == (
        "What does try do?",
        "try: the latest correction wins",
    )
    assert r1["source_ids"] == ["d-try", "d-with"] and r1["answer"] == "It tries."
    assert got.set_index("request_id").loc["r3", "source_ids"] == []
    assert list(golden_candidates(joined, approved={"r1"})["request_id"]) == ["r3"]
    assert golden_candidates(join_feedback(feedback(), requests()), []).empty


def test_source_doc_ids() -> None:
    assert source_doc_ids(None) == [] and source_doc_ids("[]") == []
    assert source_doc_ids(sources("b", "a", "b")) == ["b", "a"]


def body(**fields) -> bytes:
    return json.dumps({"request_id": "cmpl-1", "rating": 1, **fields}).encode()


def test_the_feedback_body_is_checked() -> None:
    ok = parse_request(FeedbackRequest, body(correction="  ", comment="fine", user=""))
    assert (ok.rating, ok.correction, ok.comment, ok.user) == (1, None, "fine", None)
    assert parse_request(FeedbackRequest, body(rating=-1)).rating == -1
    bad = [
        body(corection="typo"),  # an unknown field is refused, not dropped
        body(rating=0),
        body(rating=5),
        body(rating=True),
        body(rating=1.0),
        body(rating="1"),
        body(request_id=" "),
        json.dumps({"rating": 1}).encode(),
        body(correction="x" * 20_001),
    ]
    for raw in bad:
        with pytest.raises(ApiError) as refused:
            parse_request(FeedbackRequest, raw)
        assert refused.value.status == 422 and refused.value.code == "invalid_request", raw
    with pytest.raises(ApiError) as refused:
        parse_request(FeedbackRequest, b'{"request_id": ')
    assert refused.value.status == 400


def test_the_feedback_record_is_checked() -> None:
    record = {"feedback_id": "fb-1", "request_id": "cmpl-1", "at": T0, "rating": -1}
    assert validate_feedback(record) == {
        **record,
        "correction": None,
        "comment": None,
        "user": None,
    }
    for change, message in [
        ({"rating": 2}, "rating"),
        ({"rating": True}, "rating"),
        ({"request_id": " "}, "request_id must not be blank"),
        ({"correction": ""}, "correction must not be blank"),
        ({"at": datetime(2026, 3, 1)}, "timezone-aware"),
        ({"version": "1"}, "unknown fields"),
        ({"request_id": None}, "missing required fields"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_feedback({**record, **change})


def test_approving_appends_one_line_after_hand_written_rows(settings) -> None:
    from tasks.clients.request_log import FeedbackLog, RequestLog
    from tasks.monitor.feedback import approve_candidate, golden_rows

    frame = requests()
    frame.loc[2, ["prompt", "sources"]] = [frame.loc[0, "prompt"], sources("d-x")]  # r1's question
    with RequestLog(settings.requests_dir) as log:
        for row in frame.itertuples():
            log.append(
                {
                    "request_id": row.request_id,
                    "at": row.at.to_pydatetime(),
                    "version": row.version,
                    "route": row.route,
                    "status": 200,
                    "latency_ms": 1.0,
                    "prompt_tokens": 1,
                    "completion_tokens": 1,
                    "prompt": row.prompt,
                    "response": row.response,
                    "sources": row.sources,
                }
            )
    with FeedbackLog(settings.feedback_dir) as log:
        for i, (request_id, correction) in enumerate([("r1", "try: fixed"), ("r3", "again")]):
            at = T0 + timedelta(hours=1, minutes=i)
            ids = {"feedback_id": f"fb-{i}", "request_id": request_id}
            log.append({**ids, "at": at, "rating": -1, "correction": correction})
    hand = {"question": "A hand-written one?", "reference": "Yes.", "source_ids": ["d-x"]}
    settings.golden_path.parent.mkdir(parents=True)
    settings.golden_path.write_text(json.dumps(hand))  # no newline at the end
    row = approve_candidate(settings, "r1", " ann ")
    assert row == {
        "question": "What does try do?",
        "reference": "try: fixed",
        "source_ids": ["d-try", "d-with"],
        "approved_by": "ann",
        "request_id": "r1",
    }
    assert golden_rows(settings.golden_path) == [hand, row]
    with pytest.raises(ValueError, match="already asks"):
        approve_candidate(settings, "r3", "ann")
    with pytest.raises(ValueError, match="already in the golden set"):
        approve_candidate(settings, "r1", "bob")
    with pytest.raises(ValueError, match="--by"):
        approve_candidate(settings, "r3", " ")
    assert len(settings.golden_path.read_text().splitlines()) == 2
