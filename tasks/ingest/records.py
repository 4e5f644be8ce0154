"""What every source and every file format yields: one document as read, or why it could not
be read. Nothing a source lists vanishes: an item that cannot be read is a record too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawRecord:
    """One document as read, or the reason it could not be read (`problem`).

    `source` names where it came from: a path relative to the source's root, an object key or
    a URL, with a fragment for a part of it (`handbook.pdf#page=12`, `notes.jsonl#L3`,
    `guide.docx#section=Install`)."""

    source: str
    title: str = ""
    text: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Item:
    """One thing a source lists: its `key` (what its records' sources start with), its
    `version` (an ETag, or size and modification time; None when the source cannot tell, and
    then it is always read) and its size in bytes when known."""

    key: str
    version: str | None = None
    size: int | None = None


def stem(source: str) -> str:
    """A file's name without its suffix, from a relative path or a URL (`dir/handbook.pdf` →
    `handbook`): the title of a document that names none."""
    return PurePosixPath(urlsplit(source).path).stem or source
