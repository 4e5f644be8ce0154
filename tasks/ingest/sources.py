"""Reading a folder of source files into raw records, one or more per file.

Every file yields at least one record: a readable one, or one that says why it could not be read,
so that counts reconcile and nothing vanishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from tasks.core.text import html_to_text, looks_binary

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".parquet")


@dataclass(frozen=True)
class RawRecord:
    """One document as read, or the reason it could not be read (`problem`)."""

    source: str
    title: str = ""
    text: str | None = None
    problem: str | None = None


def _decode(data: bytes) -> tuple[str | None, str | None]:
    if looks_binary(data[:8192]):
        return None, "binary file: NUL bytes in the first 8 KiB"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8: {e.reason} at byte {e.start}"


def _read_single(path: Path, source: str, max_file_bytes: int) -> RawRecord:
    size = path.stat().st_size
    if size > max_file_bytes:
        return RawRecord(
            source, problem=f"too large: file is {size} bytes, over the {max_file_bytes} limit"
        )
    text, problem = _decode(path.read_bytes())
    if text is None:
        return RawRecord(source, problem=problem)
    if path.suffix.lower() in (".html", ".htm"):
        title, body = html_to_text(text)
        return RawRecord(source, title or path.stem, body)
    return RawRecord(source, path.stem, text)


def _read_jsonl(path: Path, source: str, text_field: str) -> Iterator[RawRecord]:
    with path.open("rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{source}#L{n}"
            raw, problem = _decode(line)
            if raw is None:
                yield RawRecord(where, problem=problem)
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                yield RawRecord(where, problem=f"invalid JSON: {e.msg}")
                continue
            text = obj.get(text_field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                yield RawRecord(where, problem=f"missing text: no string field '{text_field}'")
                continue
            yield RawRecord(where, str(obj.get("title") or path.stem), text)


def _read_parquet(path: Path, source: str, text_field: str, batch_rows: int) -> Iterator[RawRecord]:
    row = 0
    try:
        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            yield RawRecord(source, problem=f"missing text: no '{text_field}' column")
            return
        columns = [c for c in (text_field, "title") if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            data = batch.to_pydict()
            titles = data.get("title") or [None] * batch.num_rows
            for text, title in zip(data[text_field], titles, strict=True):
                row += 1
                yield RawRecord(f"{source}#R{row}", str(title or path.stem), text)
    except Exception as e:  # pyarrow raises several types for damaged files
        yield RawRecord(source, problem=f"unreadable parquet: after {row} rows: {e}")


def iter_records(
    root: Path, *, max_file_bytes: int, text_field: str = "text", batch_rows: int = 1024
) -> Iterator[RawRecord]:
    """Stream the records of every file under `root`, in path order."""
    if not root.is_dir():
        raise FileNotFoundError(f"source folder {root} does not exist or is not a folder")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        source = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        try:
            if suffix == ".jsonl":
                yield from _read_jsonl(path, source, text_field)
            elif suffix == ".parquet":
                yield from _read_parquet(path, source, text_field, batch_rows)
            elif suffix in SUPPORTED:
                yield _read_single(path, source, max_file_bytes)
            else:
                yield RawRecord(source, problem=f"unsupported file type: '{suffix or path.name}'")
        except OSError as e:
            yield RawRecord(source, problem=f"unreadable file: {e.strerror or e}")
