"""The request log: every request and its response, durable once `append` returns; and the
feedback log beside it (ratings and corrections of answers, by request id), kept the same way.

Both are a `DurableLog` of one `LogKind` (`request_schema`: the record's schema and checks).
Layout under `folder` (the request log's; the feedback log's is its `feedback/` subfolder):

    _wal/<writer>/lock                         flock-held by the live log owning the dir
    _wal/<writer>/wal.jsonl                    appended records, one JSON line each, fsynced
    _wal/<writer>/sealed-<stamp>-<id>.jsonl    a rotated WAL on its way to parquet
    _quarantine/torn-<stamp>-<id>.jsonl        unreadable WAL lines (a write cut by a crash)
    date=YYYY-MM-DD/part-<stamp>-<id>.parquet  what monitoring reads (day the batch was sealed)

The parts may live elsewhere (`parts`: an object-store URL, `log_parts`); the WAL is always
this local folder, so a record is acknowledged by a local fsync, and a writer that died is
recovered into the parts by the next log started on the same folder.

Each writer (one per process or replica) has its own WAL directory, so several replicas can
share one folder; a directory whose lock nobody holds belongs to a writer that died, and the
next log of its kind to start turns its records into parquet. A sealed segment's parquet name comes
from the segment's own name and is written to a temporary file, fsynced and renamed before the
segment is deleted, so a crash at any point leaves each record in exactly one place afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from tasks.clients.log_parts import Parts, fsync_dir
from tasks.clients.request_schema import FEEDBACK, REQUESTS, SCHEMA, LogKind

logger = logging.getLogger(__name__)

WAL_DIR, WAL_NAME, LOCK_NAME = "_wal", "wal.jsonl", "lock"


def _encode(row: dict[str, Any]) -> bytes:
    line = json.dumps({**row, "at": row["at"].isoformat()}, ensure_ascii=False, allow_nan=False)
    return line.encode("utf-8") + b"\n"  # utf-8 refuses lone surrogates: ValueError, unwritten


def _decode(line: bytes, kind: LogKind) -> dict[str, Any]:
    raw = json.loads(line)
    return kind.validate({**raw, "at": datetime.fromisoformat(raw["at"])})


def _seal(wal_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    sealed = wal_dir / f"sealed-{stamp}-{uuid.uuid4().hex[:12]}.jsonl"
    os.rename(wal_dir / WAL_NAME, sealed)
    fsync_dir(wal_dir)
    return sealed


def _read_segment(segment: Path, folder: Path, kind: LogKind) -> list[dict[str, Any]]:
    rows, torn = [], []
    for line in segment.read_bytes().split(b"\n"):
        if line.strip():
            try:
                rows.append(_decode(line, kind))
            except (ValueError, KeyError, TypeError):
                torn.append(line)
    if torn:  # only a write cut by a crash, never acknowledged; kept for a person to see
        quarantine = folder / "_quarantine"
        quarantine.mkdir(exist_ok=True)
        (quarantine / f"torn-{segment.stem.removeprefix('sealed-')}.jsonl").write_bytes(
            b"\n".join(torn) + b"\n"
        )
        logger.warning("%s: %d unreadable line(s) in %s quarantined", kind.name, len(torn), segment)
    return rows


def _segment_to_parquet(segment: Path, folder: Path, kind: LogKind, parts: Parts) -> str | None:
    stem = segment.stem.removeprefix("sealed-")
    target = parts.path(f"{stem[:4]}-{stem[4:6]}-{stem[6:8]}", stem)
    if parts.exists(target):  # put in place before a crash kept the segment from deletion
        return target
    rows = _read_segment(segment, folder, kind)
    if not rows:
        return None
    parts.write(target, pa.Table.from_pylist(rows, schema=kind.schema))
    return target


def _drain(wal_dir: Path, folder: Path, kind: LogKind, parts: Parts) -> list[str]:
    """Turn every sealed segment of `wal_dir` into parquet parts, oldest first."""
    written = []
    for segment in sorted(wal_dir.glob("sealed-*.jsonl")):
        path = _segment_to_parquet(segment, folder, kind, parts)
        if path is not None:
            written.append(path)
        segment.unlink()
        fsync_dir(wal_dir)
    return written


def _remove_writer_dir(wal_dir: Path) -> None:
    for name in (WAL_NAME, LOCK_NAME):
        (wal_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):  # another process recovered it first
        wal_dir.rmdir()


def recover(folder: Path, kind: LogKind = REQUESTS, parts: str | Path | None = None) -> list[str]:
    """Flush the WALs of writers that died (their lock is free) into parquet parts (under
    `parts`, by default `folder`); the parts' paths."""
    store = Parts(parts if parts is not None else folder)
    written: list[str] = []
    for wal_dir in sorted((folder / WAL_DIR).glob("[!.]*")):
        try:
            lock = open(wal_dir / LOCK_NAME, "rb")  # noqa: SIM115 - held across the steps
        except (FileNotFoundError, NotADirectoryError):
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer
            wal = wal_dir / WAL_NAME
            if wal.exists() and wal.stat().st_size > 0:
                _seal(wal_dir)
            done = _drain(wal_dir, folder, kind, store)
            _remove_writer_dir(wal_dir)
            logger.info("%s: recovered %s into %d part(s)", kind.name, wal_dir.name, len(done))
            written += done
    return written


class DurableLog:
    """Appends records of its `kind` durably and moves them into parquet every `flush_every`
    records, on `flush()` and on `close()`. Thread-safe. Recovers dead writers on start."""

    kind: LogKind

    def __init__(
        self, folder: Path, flush_every: int = 256, parts: str | Path | None = None
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.folder, self.flush_every = Path(folder), flush_every
        self.parts = Parts(parts if parts is not None else folder)
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        (self.folder / WAL_DIR).mkdir(parents=True, exist_ok=True)
        self.recovered = recover(self.folder, self.kind, self.parts.location)
        # Built under a dot name that recovery skips, locked, then renamed: no other process can
        # take an unlocked directory of ours for a dead writer's.
        name = uuid.uuid4().hex
        building = self.folder / WAL_DIR / f".{name}"
        building.mkdir()
        self._lock_file = open(building / LOCK_NAME, "wb")  # noqa: SIM115 - held until close
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._wal = open(building / WAL_NAME, "ab", buffering=0)  # noqa: SIM115
        self._dir = self.folder / WAL_DIR / name
        os.rename(building, self._dir)
        fsync_dir(self._dir.parent)
        self._pending = 0
        self._closed = False

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record; when this returns it survives a crash (fsynced). Raises ValueError
        for a bad record, with nothing written."""
        line = _encode(self.kind.validate(record))
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.kind.name} is closed")
            start = os.fstat(self._wal.fileno()).st_size
            try:
                view = memoryview(line)
                while view:
                    view = view[self._wal.write(view) :]
                os.fsync(self._wal.fileno())
            except BaseException:
                os.ftruncate(self._wal.fileno(), start)  # no half line for the next to follow
                raise
            self._pending += 1
            due = self._pending >= self.flush_every
            if due:
                self._rotate()
        if due:
            try:
                self._drain()
            except Exception:  # the record is acknowledged; its segment waits for the next flush
                logger.exception("%s: automatic flush failed; will retry", self.kind.name)

    def flush(self) -> str | None:
        """Move the records appended so far into parquet; the last part written, or None."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.kind.name} is closed")
            if self._pending:
                self._rotate()
        written = self._drain()
        return written[-1] if written else None

    def close(self) -> None:
        """Flush and give the WAL directory up. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pending:
                self._rotate()
            self._wal.close()
        try:
            self._drain()
            _remove_writer_dir(self._dir)
        finally:
            self._lock_file.close()  # on a failed drain, the next start recovers the segments

    def __enter__(self) -> DurableLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rotate(self) -> None:
        # Called with self._lock held: seal the WAL and start an empty one. Sealing first keeps
        # the old handle usable if the rename fails.
        _seal(self._dir)
        self._wal.close()
        self._wal = open(self._dir / WAL_NAME, "ab", buffering=0)  # noqa: SIM115
        fsync_dir(self._dir)
        self._pending = 0

    def _drain(self) -> list[str]:
        with self._flush_lock:
            return _drain(self._dir, self.folder, self.kind, self.parts)


class RequestLog(DurableLog):
    """The request log (`settings.requests_dir`): one record per request, answered or not."""

    kind = REQUESTS


class FeedbackLog(DurableLog):
    """The feedback log (`settings.feedback_dir`): one record per rating of an answer."""

    kind = FEEDBACK


def read_log(
    location: str | Path,
    kind: LogKind,
    since: datetime | None = None,
    ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """All flushed records of `kind` (parquet parts, not the WAL) at `location` (a folder or
    an object-store URL), from `since` on, only those whose key is in `ids` when given, oldest
    first."""
    condition = None
    if since is not None:
        if since.utcoffset() is None:
            raise ValueError(f"since must be a timezone-aware datetime, got {since!r}")
        condition = ds.field("at") >= pa.scalar(since.astimezone(UTC), kind.schema.field("at").type)
    if ids is not None:
        wanted = ds.field(kind.key).isin(pa.array(sorted(set(ids)), pa.string()))
        condition = wanted if condition is None else condition & wanted
    frame = Parts(location).read(kind.schema, condition).to_pandas()
    return frame.sort_values("at", kind="stable").reset_index(drop=True)


def read_requests(
    location: str | Path,
    since: datetime | None = None,
    request_ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """All flushed requests (parquet parts, not the WAL), from `since` on (and only those of
    `request_ids` when given), oldest first."""
    return read_log(location, REQUESTS, since, request_ids)


def read_feedback(location: str | Path, since: datetime | None = None) -> pd.DataFrame:
    """All flushed feedback (parquet parts of the feedback folder), from `since` on, oldest
    first."""
    return read_log(location, FEEDBACK, since)


def read_acknowledged(
    folder: Path, since: datetime, parts: str | Path | None = None
) -> pd.DataFrame:
    """Every acknowledged request from `since` on, flushed to parquet (under `parts`, by
    default `folder`) or still in a WAL of a writer sharing `folder` (what a canary step needs
    within seconds). WAL segments are read first, then parquet: a
    record moved between the two reads is then seen twice, not missed; duplicates go by id."""
    rows = []
    for segment in sorted((folder / WAL_DIR).glob("[!.]*/*.jsonl")):
        try:
            lines = segment.read_bytes().split(b"\n")
        except FileNotFoundError:  # sealed and drained meanwhile: parquet has it
            continue
        for line in lines:
            try:
                row = json.loads(line)
                rows.append({**row, "at": datetime.fromisoformat(row["at"])})
            except (ValueError, KeyError, TypeError):
                continue  # the line being written, or torn
    wal = pd.DataFrame(rows, columns=SCHEMA.names)
    parquet = read_requests(parts if parts is not None else folder, since)
    frame = pd.concat([wal, parquet]) if len(wal) else parquet
    frame = frame[pd.to_datetime(frame["at"], utc=True) >= pd.Timestamp(since)]
    return frame.drop_duplicates("request_id")
