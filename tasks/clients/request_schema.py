"""What one request-log record holds, and the checks a record passes before it is written."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
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
        pa.field("sources", pa.string()),  # JSON text: the passages the answer was built on
    ]
)
REQUIRED = tuple(f.name for f in SCHEMA if not f.nullable)
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


def _check_sources(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | dict):  # structured sources are stored as their JSON text
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    text = _check_str("sources", value, nullable=True)
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"sources must be JSON text, a list or a dict: {error}") from None
    return text


def validate_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record checked against SCHEMA, `at` in UTC; ValueError names what is wrong."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a request record must be a mapping, got {type(record).__name__}")
    unknown = sorted(set(record) - set(SCHEMA.names))
    if unknown:  # refused, not dropped: a field would vanish silently otherwise
        raise ValueError(f"unknown fields {unknown}; the log holds {SCHEMA.names}")
    missing = [name for name in REQUIRED if record.get(name) is None]
    if missing:
        raise ValueError(f"missing required fields {missing}")
    at = record["at"]
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
    latency = record["latency_ms"]
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise ValueError(f"latency_ms must be a number, got {latency!r}")
    if not (math.isfinite(latency) and latency >= 0):
        raise ValueError(f"latency_ms must be finite and >= 0, got {latency}")
    row: dict[str, Any] = {
        name: _check_str(name, record.get(name), SCHEMA.field(name).nullable)
        for name in ("request_id", "version", "route", "prompt", "response", "error", "session")
    }
    row["at"] = at.astimezone(UTC)
    row["status"] = _check_int("status", record["status"], 100, 599)
    row["latency_ms"] = float(latency)
    for name in ("prompt_tokens", "completion_tokens"):
        row[name] = _check_int(name, record[name], 0, _INT32_MAX)
    row["sources"] = _check_sources(record.get("sources"))
    return {name: row[name] for name in SCHEMA.names}
