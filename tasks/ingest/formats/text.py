"""Plain text, Markdown and HTML files: one record each."""

from __future__ import annotations

from tasks.core.text import html_to_text, looks_binary
from tasks.ingest.records import RawRecord


def decode(data: bytes) -> tuple[str | None, str | None]:
    """(text, None), or (None, why it is not UTF-8 text)."""
    if looks_binary(data[:8192]):
        return None, "binary file: NUL bytes in the first 8 KiB"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8: {e.reason} at byte {e.start}"


def read_text(source: str, data: bytes, title: str) -> RawRecord:
    text, problem = decode(data)
    if text is None:
        return RawRecord(source, problem=problem)
    return RawRecord(source, title, text)


def read_html(source: str, data: bytes, title: str) -> RawRecord:
    text, problem = decode(data)
    if text is None:
        return RawRecord(source, problem=problem)
    head, body = html_to_text(text)
    return RawRecord(source, head or title, body)
