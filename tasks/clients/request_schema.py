"""What the request log's records hold, and the checks a record passes before it is written:
a request (`SCHEMA`, the log proper) and feedback on one (`FEEDBACK_SCHEMA`, stored beside it).
`LogKind` ties a schema to its checks for the durable log machinery (`request_log`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("route", pa.string(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("prompt_tokens", pa.int32(), nullable=False),
        pa.field("completion_tokens", pa.int32(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("session", pa.string()),
        # JSON text: the passages the answer was built on, [{doc_id, source, score, text}, ...]
        pa.field("sources", pa.string()),
        # JSON text: the rails' decisions, [{rail, action, reason}, ...]; null or "[]": none.
        # Parts written before the column read it as null.
        pa.field("rails", pa.string()),
        # Where the time went in the model replica (ms, tokens/s); null when not measured (a
        # refusal, an error) and in parts written before the columns.
        pa.field("queue_ms", pa.float64()),  # waiting for a batch slot
        pa.field("ttft_ms", pa.float64()),  # time to the first token, in the replica
        pa.field("decode_tokens_per_s", pa.float64()),  # ids after the first, per second
    ]
)
TIMINGS = ("queue_ms", "ttft_ms", "decode_tokens_per_s")
REQUIRED = tuple(f.name for f in SCHEMA if not f.nullable)

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("feedback_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),  # the request log's key
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("rating", pa.int8(), nullable=False),  # -1 (bad) or 1 (good)
        pa.field("correction", pa.string()),  # what the answer should have been
        pa.field("comment", pa.string()),
        pa.field("user", pa.string()),
    ]
)
RATINGS = (-1, 1)
_INT32_MAX = 2**31 - 1


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return value


def _check_str(name: str, value: Any, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _check_number(name: str, value: Any, nullable: bool = False) -> float | None:
    """A finite, non-negative number (as a float); None when allowed."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def _check_json(name: str, value: Any) -> str | None:
    """A JSON column: null, JSON text, or a list or dict (stored as its JSON text)."""
    if value is None:
        return None
    if isinstance(value, list | dict):  # structured values are stored as their JSON text
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    text = _check_str(name, value, nullable=True)
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} must be JSON text, a list or a dict: {error}") from None
    return text


_RAIL_KEYS = ("rail", "action", "reason")


def _check_rails(value: Any) -> str | None:
    """The rails' decisions: a list of {rail, action, reason} strings (or its JSON text)."""
    text = _check_json("rails", value)
    if text is None:
        return None
    decisions = json.loads(text)
    if not isinstance(decisions, list) or not all(
        isinstance(d, dict) and all(isinstance(d.get(k), str) for k in _RAIL_KEYS)
        for d in decisions
    ):
        raise ValueError(f"rails must be a list of {{rail, action, reason}} strings: {text!r}")
    return text


def _checked(
    record: Mapping[str, Any], schema: pa.Schema, what: str, strings: tuple[str, ...]
) -> dict[str, Any]:
    """The checks every log shares: a mapping of the schema's fields only, the required ones
    present, `at` timezone-aware (returned in UTC), and `strings` strings (or null if allowed)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a {what} record must be a mapping, got {type(record).__name__}")
    unknown = sorted(set(record) - set(schema.names))
    if unknown:  # refused, not dropped: a field would vanish silently otherwise
        raise ValueError(f"unknown fields {unknown}; the log holds {schema.names}")
    missing = [f.name for f in schema if not f.nullable and record.get(f.name) is None]
    if missing:
        raise ValueError(f"missing required fields {missing}")
    at = record["at"]
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
    row = {
        name: _check_str(name, record.get(name), schema.field(name).nullable) for name in strings
    }
    return row | {"at": at.astimezone(UTC)}


def validate_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The request record checked against SCHEMA, `at` in UTC; ValueError names what is wrong."""
    strings = ("request_id", "version", "route", "prompt", "response", "error", "session")
    row = _checked(record, SCHEMA, "request", strings)
    row["status"] = _check_int("status", record["status"], 100, 599)
    row["latency_ms"] = _check_number("latency_ms", record["latency_ms"])
    for name in TIMINGS:
        row[name] = _check_number(name, record.get(name), nullable=True)
    for name in ("prompt_tokens", "completion_tokens"):
        row[name] = _check_int(name, record[name], 0, _INT32_MAX)
    row["sources"] = _check_json("sources", record.get("sources"))
    row["rails"] = _check_rails(record.get("rails"))
    return {name: row[name] for name in SCHEMA.names}


def validate_feedback(record: Mapping[str, Any]) -> dict[str, Any]:
    """The feedback record checked against FEEDBACK_SCHEMA: ids not blank, a rating of -1 or
    1, a correction (when given) not blank; `at` in UTC. ValueError names what is wrong."""
    strings = ("feedback_id", "request_id", "correction", "comment", "user")
    row = _checked(record, FEEDBACK_SCHEMA, "feedback", strings)
    for name in ("feedback_id", "request_id", "correction"):
        if row[name] is not None and not row[name].strip():
            raise ValueError(f"{name} must not be blank")
    rating = record["rating"]
    if isinstance(rating, bool) or not isinstance(rating, int) or rating not in RATINGS:
        raise ValueError(f"rating must be one of {RATINGS}, got {rating!r}")
    row["rating"] = rating
    return {name: row[name] for name in FEEDBACK_SCHEMA.names}


@dataclass(frozen=True)
class LogKind:
    """One kind of durable log: what its records are called, hold, and are checked with."""

    name: str  # in messages: "request log", "feedback log"
    schema: pa.Schema  # has a non-null "at" timestamp (UTC): parts are read by it
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    key: str  # each record's id


REQUESTS = LogKind("request log", SCHEMA, validate_record, "request_id")
FEEDBACK = LogKind("feedback log", FEEDBACK_SCHEMA, validate_feedback, "feedback_id")
