"""Where a durable log's parquet parts live: a local folder, or an object store.

A location is a path, or a URL that Arrow's filesystems open (`s3://bucket/prefix`; the
endpoint and credentials come from the standard `AWS_*` variables, `AWS_ENDPOINT_URL` for an
S3-compatible server). A part is `<location>/date=YYYY-MM-DD/part-<stem>.parquet` and appears
whole or not at all: locally it is written to a dot file, fsynced and renamed; on an object
store it is one upload, which the store makes visible only once complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


class Parts:
    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        if is_url(location):
            self.fs, self.base = pafs.FileSystem.from_uri(self.location)
        else:
            self.fs, self.base = pafs.LocalFileSystem(), str(Path(location))

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, day: str, stem: str) -> str:
        return f"{self.base}/date={day}/part-{stem}.parquet"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def write(self, path: str, table: pa.Table) -> None:
        """Put one part in place, whole: after this returns it survives a crash."""
        if not self.local:
            with self.fs.open_output_stream(path) as stream:
                pq.write_table(table, stream)
            return
        target = Path(path)
        if not target.parent.exists():
            target.parent.mkdir(parents=True)
            fsync_dir(target.parent.parent)
        tmp = target.with_name(f".{target.name}.tmp")  # readers skip it: not named part-*
        with open(tmp, "wb") as file:
            pq.write_table(table, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)

    def list(self) -> list[str]:
        """Every complete part, in name order (the name starts with the sealing time)."""
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            day, _, name = info.path.removeprefix(self.base).strip("/").partition("/")
            if (
                info.is_file
                and day.startswith("date=")
                and name.startswith("part-")
                and name.endswith(".parquet")
            ):
                found.append(info.path)
        return sorted(found)

    def read(self, schema: pa.Schema, condition: ds.Expression | None = None) -> pa.Table:
        parts = self.list()
        if not parts:
            return schema.empty_table()
        dataset = ds.dataset(parts, schema=schema, format="parquet", filesystem=self.fs)
        return dataset.to_table(filter=condition)
