"""From raw records to candidate document rows and quarantine rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tasks.core.language import detect_language
from tasks.core.text import content_id, is_valid_unicode, normalize_text

DOCUMENT_COLUMNS = ("doc_id", "source", "title", "text", "n_chars", "language")


class Record(Protocol):
    source: str
    title: str
    text: str | None
    problem: str | None


@dataclass
class Batch:
    """Rows ready for validation and the records already known to be bad."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def quarantine_row(
    run_id: str, source: str, reasons: list[str], text: str | None, at: datetime
) -> dict:
    """A quarantine entry at time `at`; its id makes re-running the same bad input idempotent."""
    key = "\x1f".join([source, *reasons, text or ""])
    return {
        "quarantine_id": content_id(key),
        "run_id": run_id,
        "source": source,
        "reasons": reasons,
        "text": text,
        "quarantined_at": at,
    }


def reason_kind(reason: str) -> str:
    """What a reason counts as: the words before its first colon (the detail after it, such as
    the source a duplicate repeats, varies row by row)."""
    return reason.split(":")[0]


def prepare_batch(
    records: Iterable[Record], seen: dict[str, str], run_id: str, at: datetime
) -> Batch:
    """Normalise each readable record and give it its content id.

    `seen` maps ids to the first source that had them in this run; a later copy is marked in
    `duplicate_of` (validation quarantines it) instead of being dropped.
    """
    batch = Batch()
    for rec in records:
        if rec.problem is not None:
            batch.quarantined.append(quarantine_row(run_id, rec.source, [rec.problem], None, at))
            continue
        text = normalize_text(rec.text) if rec.text is not None else None
        doc_id = content_id(text) if text is not None else None
        duplicate_of = seen.get(doc_id) if doc_id else None
        if doc_id and duplicate_of is None:
            seen[doc_id] = rec.source
        batch.rows.append(
            {
                "doc_id": doc_id,
                "source": rec.source,
                "title": rec.title,
                "text": text,
                "n_chars": len(text) if text is not None else 0,
                "language": detect_language(text) if text else "und",
                "utf8_valid": text is None or is_valid_unicode(text),
                "duplicate_of": duplicate_of,
            }
        )
    return batch
