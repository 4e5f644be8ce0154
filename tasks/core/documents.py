"""From raw records to candidate document rows and quarantine rows."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tasks.core.language import detect_language
from tasks.core.rails import IngestRails, screen_document
from tasks.core.text import content_id, is_valid_unicode, normalize_text

DOCUMENT_COLUMNS = ("doc_id", "source", "title", "text", "n_chars", "language")
DEFAULT_RAILS = IngestRails()  # secrets quarantined, personal data redacted


class Record(Protocol):
    source: str
    title: str
    text: str | None
    problem: str | None


@dataclass
class Batch:
    """Rows ready for validation, the records already known to be bad, and what the rails
    found in them: each finding's (kind, action) count."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    findings: Counter[tuple[str, str]] = field(default_factory=Counter)


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


# A rail's reason: "secret: private_key at line 3" (" of the title" when found there).
_RAIL_REASON = re.compile(r"^((?:secret|personal_data): \w+) at line \d+(?: of the title)?$")


def reason_kind(reason: str) -> str:
    """What a reason counts as: the words before its first colon (the detail after it, such as
    the source a duplicate repeats, varies row by row); for a rail, its category and kind."""
    rail = _RAIL_REASON.match(reason)
    return rail.group(1) if rail else reason.split(":")[0]


def screen_record(
    title: str, text: str, rails: IngestRails, findings: Counter[tuple[str, str]]
) -> tuple[str, str, list[str]]:
    """The title and text with what `rails` redacts replaced by typed placeholders, and why
    the record is quarantined (empty: it is kept); each finding is counted in `findings`."""
    body = screen_document(text, rails)
    head = screen_document(title, rails) if title else None
    findings.update(body.counts)
    if head is None:
        return title, body.text, body.quarantine
    findings.update(head.counts)
    return head.text, body.text, body.quarantine + [f"{r} of the title" for r in head.quarantine]


def prepare_batch(
    records: Iterable[Record],
    seen: dict[str, str],
    run_id: str,
    at: datetime,
    rails: IngestRails = DEFAULT_RAILS,
) -> Batch:
    """Normalise each readable record, screen it with `rails` and give it its content id: the
    hash of the text as kept, so a redacted document's id is that of its redacted text. A
    record the rails quarantine goes to `batch.quarantined` with its text redacted (the
    quarantine keeps the document, never the secret).

    `seen` maps ids to the first source that had them in this run; a later copy is marked in
    `duplicate_of` (validation quarantines it) instead of being dropped.
    """
    batch = Batch()
    for rec in records:
        if rec.problem is not None:
            batch.quarantined.append(quarantine_row(run_id, rec.source, [rec.problem], None, at))
            continue
        title, text = rec.title, normalize_text(rec.text) if rec.text is not None else None
        if text is not None:
            title, text, reasons = screen_record(title, text, rails, batch.findings)
            if reasons:
                batch.quarantined.append(quarantine_row(run_id, rec.source, reasons, text, at))
                continue
        doc_id = content_id(text) if text is not None else None
        duplicate_of = seen.get(doc_id) if doc_id else None
        if doc_id and duplicate_of is None:
            seen[doc_id] = rec.source
        batch.rows.append(
            {
                "doc_id": doc_id,
                "source": rec.source,
                "title": title,
                "text": text,
                "n_chars": len(text) if text is not None else 0,
                "language": detect_language(text) if text else "und",
                "utf8_valid": text is None or is_valid_unicode(text),
                "duplicate_of": duplicate_of,
            }
        )
    return batch
