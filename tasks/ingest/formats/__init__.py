"""File formats: what a file's bytes hold, as records. Chosen by the name's suffix.

Text-like files are read whole (under the size limit); JSON Lines and Parquet are streamed,
a record per line or row, at any size. PDF and Word files are read whole and yield a record
per page or per section, their `source` carrying the fragment that locates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import PurePosixPath
from typing import BinaryIO
from urllib.parse import urlsplit

from tasks.ingest.formats.docx import read_docx
from tasks.ingest.formats.pdf import read_pdf
from tasks.ingest.formats.tables import read_jsonl, read_parquet
from tasks.ingest.formats.text import read_html, read_text
from tasks.ingest.records import RawRecord, stem

Opener = Callable[[], AbstractContextManager[BinaryIO]]

_WHOLE: dict[str, Callable[[str, bytes, str], Iterator[RawRecord]]] = {
    ".txt": lambda s, data, title: iter([read_text(s, data, title)]),
    ".md": lambda s, data, title: iter([read_text(s, data, title)]),
    ".markdown": lambda s, data, title: iter([read_text(s, data, title)]),
    ".html": lambda s, data, title: iter([read_html(s, data, title)]),
    ".htm": lambda s, data, title: iter([read_html(s, data, title)]),
    ".pdf": lambda s, data, title: read_pdf(s, data),
    ".docx": lambda s, data, title: read_docx(s, data),
}
STREAMED = (".jsonl", ".parquet")
SUPPORTED = (*_WHOLE, *STREAMED)


def suffix(source: str) -> str:
    return PurePosixPath(urlsplit(source).path).suffix.lower()


def read_file(
    source: str,
    open_file: Opener,
    size: int | None,
    *,
    max_file_bytes: int,
    text_field: str = "text",
    batch_rows: int = 1024,
) -> Iterator[RawRecord]:
    """The records of one file. I/O errors propagate: the source says what they mean."""
    kind, title = suffix(source), stem(source)
    if kind == ".jsonl":
        with open_file() as f:
            yield from read_jsonl(source, f, title, text_field)
    elif kind == ".parquet":
        with open_file() as f:
            yield from read_parquet(source, f, title, text_field, batch_rows)
    elif kind not in _WHOLE:
        name = PurePosixPath(source).name
        yield RawRecord(source, problem=f"unsupported file type: '{kind or name}'")
    elif size is not None and size > max_file_bytes:
        yield RawRecord(source, problem=_too_large(size, max_file_bytes))
    else:
        with open_file() as f:
            data = _read_at_most(f, max_file_bytes + 1)  # a wrong listed size is caught too
        if len(data) > max_file_bytes:
            yield RawRecord(source, problem=f"too large: over the {max_file_bytes} byte limit")
        else:
            yield from read_whole(source, kind, data)


def read_whole(source: str, kind: str, data: bytes) -> Iterator[RawRecord]:
    """The records of a whole file's bytes, read as a file with the suffix `kind` is."""
    return _WHOLE[kind](source, data, stem(source))


def _read_at_most(f: BinaryIO, limit: int, block: int = 1 << 20) -> bytes:
    # Not f.read(limit): that reserves `limit` bytes up front for every small file.
    parts: list[bytes] = []
    size = 0
    while size < limit and (part := f.read(min(block, limit - size))):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> str:
    return f"too large: file is {size} bytes, over the {limit} limit"
