"""The document lake: accepted documents, quarantine, snapshots (parquet under LLMOPS_HOME)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.sequences import is_held_out
from tasks.core.text import content_id
from tasks.shared import lake
from tasks.shared.settings import Settings

DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("source_root", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("n_chars", pa.int64()),
        ("language", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("quarantine_id", pa.string()),
        ("run_id", pa.string()),
        ("source_root", pa.string()),
        ("source", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("text", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)
SNAPSHOT_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("source", pa.string()), ("source_root", pa.string())]
)


def _encodable(text: str | None) -> str | None:
    # Lone surrogates cannot be written as UTF-8; keep them visible as escapes.
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _write_table(path: Path, frame: pd.DataFrame, schema: pa.Schema) -> None:
    """`frame`'s `schema` columns as one parquet file, whole: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _write_part(folder: Path, frame: pd.DataFrame, schema: pa.Schema) -> Path:
    path = folder / f"part-{uuid.uuid4().hex}.parquet"
    _write_table(path, frame, schema)
    return path


def _column(folder: Path, column: str) -> set[str]:
    if not folder.exists() or not any(folder.glob("*.parquet")):
        return set()
    return set(ds.dataset(folder, format="parquet").to_table(columns=[column])[column].to_pylist())


def document_ids(folder: Path) -> set[str]:
    return _column(folder, "doc_id")


def quarantine_ids(folder: Path) -> set[str]:
    return _column(folder, "quarantine_id")


def append_documents(folder: Path, frame: pd.DataFrame) -> int:
    if frame.empty:
        return 0
    _write_part(folder, frame, DOCUMENT_SCHEMA)
    return len(frame)


def append_quarantine(folder: Path, rows: list[dict]) -> int:
    if not rows:
        return 0
    frame = pd.DataFrame(rows)
    frame["text"] = frame["text"].map(_encodable)
    frame["source"] = frame["source"].map(_encodable)
    _write_part(folder, frame, QUARANTINE_SCHEMA)
    return len(frame)


def read_quarantine(folder: Path, run_id: str | None = None) -> pd.DataFrame:
    """The quarantine, or one run's rows of it (read with a filter, not the whole history)."""
    if not folder.exists() or not any(folder.glob("*.parquet")):
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    where = ds.field("run_id") == run_id if run_id else None
    return ds.dataset(folder, format="parquet").to_table(filter=where).to_pandas()


def write_snapshot(folder: Path, members: pd.DataFrame) -> str:
    """Record which documents a run accepted; the id is a hash of the members."""
    members = members[SNAPSHOT_SCHEMA.names].sort_values(["source", "doc_id"], ignore_index=True)
    snapshot_id = content_id("\n".join(members["doc_id"] + "\t" + members["source"]))[:16]
    path = folder / f"{snapshot_id}.parquet"
    if not path.exists():
        _write_table(path, members, SNAPSHOT_SCHEMA)
    (folder / "LATEST").write_text(snapshot_id)
    return snapshot_id


LISTING_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("version", pa.string()),
        ("policy", pa.string()),
        ("doc_id", pa.string()),  # null: the item gave no accepted document
        ("source", pa.string()),
    ]
)


def _listing_path(folder: Path, source_root: str) -> Path:
    return folder / f"{content_id(source_root)[:16]}.parquet"


def read_listing(folder: Path, source_root: str) -> pd.DataFrame:
    """What the last run over `source_root` listed: item versions and their documents."""
    path = _listing_path(folder, source_root)
    if not path.exists():
        return LISTING_SCHEMA.empty_table().to_pandas()
    return pq.read_table(path, schema=LISTING_SCHEMA).to_pandas()


def write_listing(folder: Path, source_root: str, listing: pd.DataFrame) -> None:
    """Replace the root's listing (whole, atomically): written after the run's snapshot, so a
    run that fails midway reads everything again next time rather than skip what it lost."""
    frame = listing.assign(source=listing["source"].map(_encodable))
    _write_table(_listing_path(folder, source_root), frame, LISTING_SCHEMA)


def latest_snapshot(folder: Path) -> str:
    marker = folder / "LATEST"
    if not marker.exists():
        raise FileNotFoundError(f"no snapshot under {folder}: run the ingest_documents flow first")
    return marker.read_text().strip()


def read_snapshot(folder: Path, snapshot_id: str) -> pd.DataFrame:
    path = folder / f"{snapshot_id}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"snapshot {snapshot_id} not found under {folder}")
    return pq.read_table(path).to_pandas()


def iter_documents(
    folder: Path, doc_ids: set[str], batch_rows: int = 256
) -> Iterator[pd.DataFrame]:
    """Stream the documents with the given ids, a bounded batch at a time."""
    if not doc_ids:
        return
    wanted = pa.array(sorted(doc_ids))
    dataset = ds.dataset(folder, format="parquet", schema=DOCUMENT_SCHEMA)
    seen: set[str] = set()
    for batch in dataset.to_batches(filter=ds.field("doc_id").isin(wanted), batch_size=batch_rows):
        frame = batch.to_pandas()
        frame = frame[~frame["doc_id"].isin(seen)]  # a document may sit in two parts
        seen.update(frame["doc_id"])
        if not frame.empty:
            yield frame


CHUNK_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("chunk_index", pa.int64()),
        ("text", pa.string()),
        ("n_tokens", pa.int64()),
        ("language", pa.string()),
        ("vector", pa.list_(pa.float32())),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
MANIFEST_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("source_root", pa.string()),
        ("chunker", pa.string()),
    ]
)


def append_chunks(folder: Path, frame: pd.DataFrame) -> None:
    if not frame.empty:
        _write_part(folder, frame, CHUNK_SCHEMA)


def read_manifest(path: Path) -> pd.DataFrame:
    if not path.exists():
        return MANIFEST_SCHEMA.empty_table().to_pandas()
    return pq.read_table(path).to_pandas()


def write_manifest(path: Path, frame: pd.DataFrame) -> None:
    _write_table(path, frame, MANIFEST_SCHEMA)


def _snapshot_texts(
    settings: Settings, snapshot_id: str, columns: tuple[str, ...] = ("doc_id", "text")
) -> pd.DataFrame:
    members = lake.read_snapshot(settings.snapshots_dir, snapshot_id)
    frames = list(lake.iter_documents(settings.documents_dir, set(members["doc_id"])))
    if not frames:
        raise ValueError(
            f"snapshot {snapshot_id} has no documents to train on: ingest some documents first"
        )
    docs = pd.concat(frames, ignore_index=True)[list(columns)]
    return docs.sort_values("doc_id", ignore_index=True)  # the same split on every run


def split_snapshot(
    settings: Settings,
    snapshot_id: str | None,
    eval_fraction: float,
    columns: tuple[str, ...] = ("doc_id", "text"),
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The snapshot's documents split into training and held-out, the same way on every run
    (so later stages evaluate on exactly the documents training never saw). `columns`: the
    document fields carried, doc_id among them (add "title", say); the split never depends on
    them."""
    if "doc_id" not in columns:
        raise ValueError(f"columns must include doc_id, got {columns}")
    snapshot_id = snapshot_id or lake.latest_snapshot(settings.snapshots_dir)
    docs = _snapshot_texts(settings, snapshot_id, columns)
    held_out = docs["doc_id"].map(lambda d: is_held_out(d, eval_fraction))
    if held_out.all() or not held_out.any():  # too few documents for the hash split
        if len(docs) < 2:
            raise ValueError(
                f"snapshot {snapshot_id} has 1 document: at least 2 are needed, one of them "
                "held out for evaluation"
            )
        position = np.arange(len(docs))
        held_out = pd.Series((position % 10 == 9) | (position == len(docs) - 1))
    return snapshot_id, docs[~held_out], docs[held_out]
