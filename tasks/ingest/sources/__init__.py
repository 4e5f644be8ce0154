"""Where documents come from. A source lists what it holds (with versions, when it can tell)
and reads the items it is given, a record at least per item:

    class Source(Protocol):
        root: str                                    # names it in the lake and the report
        def list(self) -> Iterator[Item]: ...
        def read(self, items: Iterable[Item]) -> Iterator[RawRecord]: ...

Files under a folder or an object-store prefix (`files.FileSource`) and web pages from a list
of URLs or a sitemap (`web.WebSource`) are built in; `llmops new-flow --kind source` writes a
new one in the same shape. Ingest skips the items whose version has not changed since the
last run over the same root, so a source that knows versions is read incrementally.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from tasks.ingest.params import IngestParams
from tasks.ingest.records import Item, RawRecord
from tasks.ingest.sources.files import file_source
from tasks.ingest.sources.web import WebSource
from tasks.shared.settings import Settings


class Source(Protocol):
    root: str

    def list(self) -> Iterator[Item]: ...

    def read(self, items: Iterable[Item]) -> Iterator[RawRecord]: ...


def open_source(root: str | None, params: IngestParams, settings: Settings) -> Source:
    """The built-in source `params` names: web pages, or the files under `root`."""
    if params.is_web:
        return WebSource(
            urls=params.urls or [],
            sitemap=params.sitemap,
            concurrency=params.read_concurrency,
            timeout_s=params.fetch_timeout_s,
            max_bytes=params.max_file_bytes,
        )
    if root is None:
        raise ValueError("no source: give source_dir, urls or a sitemap")
    return file_source(root, params, settings)
