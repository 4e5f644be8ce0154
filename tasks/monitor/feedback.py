"""Feedback on answers, surfaced: each rating joined with its request (by request id) from the
request log, summed per served version, and corrections turned into golden-set candidates that
a person approves into the golden file (`settings.golden_path`, JSONL).

Every feedback row is counted: one whose request id the log does not hold (a mistyped id, or a
request not yet flushed to parquet) is counted and listed under UNKNOWN, never dropped, so the
counts reconcile (ratings = the versions' ratings + the unknown ones). Each rating counts, also
a second one by the same person on the same answer; a request's latest correction is its
candidate.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from tasks.clients.request_log import read_feedback, read_requests
from tasks.core.drift import TimeRange
from tasks.shared.settings import Settings

UNKNOWN = "unknown request"  # the version of feedback whose request the log does not hold
# What a feedback row gets from its request (renamed where the feedback has its own).
_REQUEST_COLUMNS = {
    "at": "requested_at",
    "version": "version",
    "route": "route",
    "prompt": "prompt",
    "response": "response",
    "sources": "sources",
}


def source_doc_ids(sources: str | None) -> list[str]:
    """The document ids of a request's `sources` JSON, in prompt order, each once."""
    if not sources:
        return []
    hits = json.loads(sources)
    return list(dict.fromkeys(h["doc_id"] for h in hits if isinstance(h, dict) and h.get("doc_id")))


def join_feedback(feedback: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """Every feedback row, in its order, with its request's version, time, route, prompt,
    response and sources; `known` is False (and the version UNKNOWN) where `requests` lacks the
    request id."""
    found = requests.drop_duplicates("request_id", keep="last")
    found = found[["request_id", *_REQUEST_COLUMNS]].rename(columns=_REQUEST_COLUMNS)
    joined = feedback.merge(found, on="request_id", how="left", validate="many_to_one")
    joined["known"] = joined["version"].notna()
    joined["version"] = joined["version"].where(joined["known"], UNKNOWN)
    return joined.reset_index(drop=True)


class VersionFeedback(BaseModel):
    """The feedback on one served version's answers (or on UNKNOWN requests)."""

    version: str
    ratings: int
    positive: int
    negative: int
    corrections: int

    @property
    def share_positive(self) -> float | None:
        return self.positive / self.ratings if self.ratings else None


class FeedbackSummary(BaseModel):
    window: str
    ratings: int
    versions: list[VersionFeedback]  # served versions with feedback, by version
    unknown: VersionFeedback  # feedback on requests the log does not hold
    unknown_request_ids: list[str]  # each once, in order of first feedback

    @property
    def reconciles(self) -> bool:
        return self.ratings == sum(v.ratings for v in self.versions) + self.unknown.ratings


def _tally(version: str, rows: pd.DataFrame) -> VersionFeedback:
    return VersionFeedback(
        version=version,
        ratings=len(rows),
        positive=int((rows["rating"] > 0).sum()),
        negative=int((rows["rating"] < 0).sum()),
        corrections=int(rows["correction"].notna().sum()),
    )


def summarize_feedback(joined: pd.DataFrame, window: str) -> FeedbackSummary:
    """Ratings, share positive and corrections per served version (`join_feedback`'s frame)."""
    known = joined[joined["known"]]
    unknown = joined[~joined["known"]]
    versions = [_tally(str(v), rows) for v, rows in known.groupby("version", sort=True)]
    return FeedbackSummary(
        window=window,
        ratings=len(joined),
        versions=versions,
        unknown=_tally(UNKNOWN, unknown),
        unknown_request_ids=list(dict.fromkeys(unknown["request_id"])),
    )


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def feedback_markdown(summary: FeedbackSummary, listed: int = 10) -> str:
    """A small table for the monitor's report: per version, and the unknown request ids."""
    if not summary.ratings:
        return f"Feedback ({summary.window}): none.\n"
    rows = [*summary.versions, *([summary.unknown] if summary.unknown.ratings else [])]
    table = "\n".join(
        f"| {r.version} | {r.ratings} | {r.positive} | {_share(r.share_positive)} | "
        f"{r.corrections} |"
        for r in rows
    )
    text = (
        f"Feedback ({summary.window}): {summary.ratings} rating(s)\n\n"
        "| version | ratings | positive | share positive | corrections |\n"
        "|---|---:|---:|---:|---:|\n" + table + "\n"
    )
    ids = summary.unknown_request_ids
    if ids:
        more = f", and {len(ids) - listed} more" if len(ids) > listed else ""
        shown = ", ".join(f"`{i}`" for i in ids[:listed])
        text += f"\nFeedback on requests the log does not hold: {shown}{more}\n"
    return text


def load_feedback(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The flushed feedback given in [since, until), joined with its requests (read by id from
    the whole request log: an answer may be rated long after it was given)."""
    feedback = read_feedback(settings.feedback_location, since)
    if until is not None:
        feedback = feedback[feedback["at"] < pd.Timestamp(until)]
    requests = read_requests(settings.requests_location, request_ids=set(feedback["request_id"]))
    return join_feedback(feedback, requests)


def feedback_summary(settings: Settings, window: TimeRange) -> FeedbackSummary:
    return summarize_feedback(load_feedback(settings, window.start, window.end), str(window))


# --- golden-set candidates ----------------------------------------------------------------


def golden_candidates(joined: pd.DataFrame, approved: Collection[str]) -> pd.DataFrame:
    """Corrections on known requests not yet in the golden set (`approved`: request ids), the
    latest per request: question (the request's prompt), reference (the correction),
    source_ids (the doc ids of its sources), answer (what the model said), and who and when."""
    rows = joined[joined["known"] & joined["correction"].notna()]
    rows = rows[~rows["request_id"].isin(list(approved))]
    rows = rows.sort_values("at", kind="stable").drop_duplicates("request_id", keep="last")
    return pd.DataFrame(
        {
            "request_id": rows["request_id"],
            "question": rows["prompt"],
            "reference": rows["correction"],
            "source_ids": [source_doc_ids(s) for s in rows["sources"]],
            "answer": rows["response"],
            "version": rows["version"],
            "feedback_id": rows["feedback_id"],
            "at": rows["at"],
            "user": rows["user"],
        }
    ).reset_index(drop=True)


def golden_rows(path: Path) -> list[dict[str, Any]]:
    """The golden file's rows that parse as JSON objects (the evaluation's validator judges
    the rest; approving only needs to know what is there)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def approved_request_ids(path: Path) -> dict[str, str]:
    """Request id -> who approved it, for the golden rows that came from feedback."""
    return {
        str(r["request_id"]): str(r.get("approved_by") or "?")
        for r in golden_rows(path)
        if r.get("request_id")
    }


def approve_candidate(settings: Settings, request_id: str, approved_by: str) -> dict[str, Any]:
    """Append the request's candidate to the golden file as one fsynced JSONL line
    {question, reference, source_ids, approved_by, request_id}; the row. ValueError when it is
    already there (or its question is), LookupError when there is no such candidate."""
    if not approved_by.strip():
        raise ValueError("say who approves: --by NAME")
    path = settings.golden_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as file:  # locked while checking and appending: one row per request
        fcntl.flock(file, fcntl.LOCK_EX)
        rows = golden_rows(path)
        by = {str(r["request_id"]): r for r in rows if r.get("request_id")}
        if request_id in by:
            who = by[request_id].get("approved_by") or "someone"
            raise ValueError(f"request {request_id} is already in the golden set (by {who})")
        candidates = golden_candidates(load_feedback(settings), by)
        match = candidates[candidates["request_id"] == request_id]
        if match.empty:
            raise LookupError(
                f"no correction to approve for request {request_id}: see `llmops golden "
                "candidates` (a correction on a request the log does not hold cannot be one)"
            )
        candidate = match.iloc[-1]
        if not candidate["source_ids"]:
            raise ValueError(
                f"request {request_id} retrieved no passages: a golden row needs the source ids "
                "of its answer (add it to the golden file by hand with them)"
            )
        question = candidate["question"].strip()
        if any(str(r.get("question", "")).strip() == question for r in rows):
            raise ValueError(f"the golden set already asks {question!r}")
        row = {
            "question": candidate["question"],
            "reference": candidate["reference"],
            "source_ids": list(candidate["source_ids"]),
            "approved_by": approved_by.strip(),
            "request_id": request_id,
        }
        file.seek(0, os.SEEK_END)
        if file.tell() and not _ends_with_newline(file):
            file.write(b"\n")  # a hand-edited last line without its newline
        file.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return row


def _ends_with_newline(file: Any) -> bool:
    file.seek(-1, os.SEEK_END)
    ends = file.read(1) == b"\n"
    file.seek(0, os.SEEK_END)
    return ends
