"""JSON Lines and Parquet files: one record per line or row, read as a stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow.parquet as pq

from tasks.ingest.formats.text import decode
from tasks.ingest.records import RawRecord


def read_jsonl(source: str, f: BinaryIO, title: str, text_field: str) -> Iterator[RawRecord]:
    for n, line in enumerate(f, start=1):
        if not line.strip():
            continue
        where = f"{source}#L{n}"
        raw, problem = decode(line)
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
        yield RawRecord(where, str(obj.get("title") or title), text)


def read_parquet(
    source: str, f: BinaryIO, title: str, text_field: str, batch_rows: int
) -> Iterator[RawRecord]:
    row = 0
    try:
        pf = pq.ParquetFile(f)
        if text_field not in pf.schema_arrow.names:
            yield RawRecord(source, problem=f"missing text: no '{text_field}' column")
            return
        columns = [c for c in (text_field, "title") if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            data = batch.to_pydict()
            titles = data.get("title") or [None] * batch.num_rows
            for text, head in zip(data[text_field], titles, strict=True):
                row += 1
                yield RawRecord(f"{source}#R{row}", str(head or title), text)
    except Exception as e:  # pyarrow raises several types for damaged files
        yield RawRecord(source, problem=f"unreadable parquet: after {row} rows: {e}")
