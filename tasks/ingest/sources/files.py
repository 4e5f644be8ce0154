"""Files under a folder or an object-store prefix (any fsspec filesystem): listed with their
versions, then read a few at a time, each through its format's reader.

Every listed file yields at least one record: a readable one, or one that says why it could
not be read (an object gone between listing and reading included), so that counts reconcile.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.clients.object_store import is_url, open_filesystem
from tasks.core.iterables import ordered_map
from tasks.ingest.formats import STREAMED, read_file, suffix
from tasks.ingest.params import IngestParams
from tasks.ingest.records import Item, RawRecord
from tasks.shared.settings import Settings

GONE = "disappeared between listing and reading"


def version_of(info: dict[str, Any]) -> str | None:
    """What changes when an object's content does: its ETag (S3, GCS, Azure), else its size
    and modification time; None when the filesystem tells neither."""
    for key in ("ETag", "etag", "md5Hash"):
        if info.get(key):
            return str(info[key]).strip('"')
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated")
    if mtime is None:
        return None
    if isinstance(mtime, datetime):
        mtime = mtime.isoformat()
    return f"{info.get('size')}@{mtime}"


@dataclass
class FileSource:
    """`fs` and `path` from `tasks.clients.object_store.open_filesystem`; `root` names the
    source as the user gave it (a folder or a URL)."""

    fs: Any
    path: str
    root: str
    max_file_bytes: int
    text_field: str = "text"
    batch_rows: int = 1024
    concurrency: int = 8
    retries: int = 2

    def list(self) -> Iterator[Item]:
        if not self.fs.isdir(self.path):
            raise FileNotFoundError(f"source folder {self.root} does not exist or is not a folder")
        base = self.path.rstrip("/") + "/"
        found = self.fs.find(self.path, detail=True)
        for name in sorted(found):
            info = found[name]
            if info.get("type", "file") != "file":
                continue
            key = name[len(base) :] if name.startswith(base) else name
            yield Item(key, version_of(info), info.get("size"))

    def read(self, items: Iterable[Item]) -> Iterator[RawRecord]:
        """Files a few at a time (an object store's latency is per request: requests in flight
        together hide it); records in listing order."""
        for records in ordered_map(self._records, items, self.concurrency):
            yield from records

    def _records(self, item: Item) -> Iterable[RawRecord]:
        if suffix(item.key) in STREAMED:  # any size: its rows stream on the reading thread
            return self._stream(item)
        for attempt in range(self.retries + 1):
            try:
                return list(self._read(item))
            except (FileNotFoundError, PermissionError) as e:
                return [RawRecord(item.key, problem=problem_of(e))]
            except OSError as e:  # a dropped connection, a throttled request: again, then say
                if attempt == self.retries:
                    return [RawRecord(item.key, problem=problem_of(e))]
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def _stream(self, item: Item) -> Iterator[RawRecord]:
        try:
            yield from self._read(item)
        except OSError as e:  # the rows read so far stay; the rest is this record
            yield RawRecord(item.key, problem=problem_of(e))

    def _read(self, item: Item) -> Iterator[RawRecord]:
        path = f"{self.path.rstrip('/')}/{item.key}"
        return read_file(
            item.key,
            lambda: self.fs.open(path, "rb"),
            item.size,
            max_file_bytes=self.max_file_bytes,
            text_field=self.text_field,
            batch_rows=self.batch_rows,
        )


def problem_of(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return GONE
    return f"unreadable file: {error.strerror or error}"


def file_source(location: str, params: IngestParams, settings: Settings) -> FileSource:
    """The files under a folder (named by its absolute path) or an object-store URL."""
    root = location if is_url(location) else str(Path(location).resolve())
    fs, path = open_filesystem(root, settings)
    return FileSource(
        fs,
        path,
        root,
        max_file_bytes=params.max_file_bytes,
        text_field=params.text_field,
        concurrency=params.read_concurrency,
    )


def iter_records(
    root: Path, *, max_file_bytes: int, text_field: str = "text", batch_rows: int = 1024
) -> Iterator[RawRecord]:
    """Every record of a local folder, in path order (all of it read: no listing kept)."""
    from fsspec.implementations.local import LocalFileSystem

    source = FileSource(
        LocalFileSystem(),
        str(Path(root).resolve()),
        str(root),
        max_file_bytes=max_file_bytes,
        text_field=text_field,
        batch_rows=batch_rows,
    )
    return source.read(source.list())
