"""Web pages from a list of URLs and a sitemap, read politely: robots.txt honoured per host
(its Disallow and its Crawl-delay), a user agent that says who we are, a few requests at a
time. Every listed page yields a record at least: its main text, or why it could not be read.
A PDF or Word file on the site is read as the same file in a folder is: a record per page or
section, its URL with the fragment as source (`https://intranet/handbook.pdf#page=3`).

A sitemap that cannot be fetched or parsed raises `SitemapError` from `list()`: it is the
source's configuration, not a document, and listing nothing would hide the mistake.
"""

from __future__ import annotations

import gzip
import io
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from tasks.core.iterables import ordered_map
from tasks.core.text import html_to_text
from tasks.ingest.formats import read_whole, suffix
from tasks.ingest.records import Item, RawRecord
from tasks.ingest.sources.fetch import Failed, decode, get

DISALLOWED = "disallowed by robots.txt"
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: crawlers parse at least the first 500 KiB
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DOCUMENT_TYPES = {
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}
# Servers that do not know a file's type send one of these: its URL's suffix decides.
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class SitemapError(RuntimeError):
    """A sitemap (the source's own or one its index lists) could not be fetched or parsed."""


@dataclass
class WebSource:
    """`urls` and the pages of `sitemap`, at most `concurrency` requests in flight."""

    urls: list[str] = field(default_factory=list)
    sitemap: str | None = None
    concurrency: int = 4
    timeout_s: float = 20.0  # per connect, read or write, as httpx counts it
    retries: int = 2
    user_agent: str = "llmops-ingest/0.1"
    max_bytes: int = 20_000_000
    root: str = field(init=False, default="web")

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0 or self.max_bytes < 1:
            raise ValueError("web source: concurrency, timeout_s, max_bytes > 0, retries >= 0")
        if not self.urls and not self.sitemap:
            raise ValueError("web source: give urls, a sitemap or both")
        for url in [*self.urls, *([self.sitemap] if self.sitemap else [])]:
            if not _is_http(url):
                raise ValueError(f"web source: {url!r} is not an http(s) URL")
        self.root = self.sitemap or "web"

    def list(self) -> Iterator[Item]:
        """The given URLs, then the sitemap's, each once; versions are the sitemap's lastmod."""
        seen: set[str] = set()
        for url in self.urls:
            if url not in seen:
                seen.add(url)
                yield Item(url)
        if self.sitemap:
            with self._client() as client:
                for item in self._sitemap(client, self.sitemap, set()):
                    if item.key not in seen:
                        seen.add(item.key)
                        yield item

    def read(self, items: Iterable[Item]) -> Iterator[RawRecord]:
        """The records of each item, in item order; one client (and connection pool) a call."""
        with self._client() as client:
            for records in ordered_map(_Crawl(self, client).records, items, self.concurrency):
                yield from records

    def _client(self) -> httpx.Client:
        return httpx.Client(
            follow_redirects=True,
            timeout=httpx.Timeout(self.timeout_s),
            headers={"User-Agent": self.user_agent},
            limits=httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            ),
        )

    def _sitemap(self, client: httpx.Client, url: str, visited: set[str]) -> Iterator[Item]:
        if url in visited:  # an index that lists itself, or a loop of indexes
            return
        visited.add(url)
        try:
            data = get(client, url, retries=self.retries, limit=self.max_bytes).data
            if data[:2] == b"\x1f\x8b":  # .xml.gz served as is (not as Content-Encoding)
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                    data = f.read(self.max_bytes + 1)
                if len(data) > self.max_bytes:
                    raise Failed(f"too large: over the {self.max_bytes} byte limit")
            root = ET.fromstring(data)
        except Failed as e:
            raise SitemapError(f"sitemap {url}: {e.problem}") from None
        except (OSError, EOFError, ET.ParseError) as e:
            raise SitemapError(f"sitemap {url}: not a valid sitemap: {e}") from None
        kind = _local(root.tag)
        if kind not in ("urlset", "sitemapindex"):
            raise SitemapError(f"sitemap {url}: <{kind}> is neither <urlset> nor <sitemapindex>")
        for entry in root:
            fields = {_local(child.tag): (child.text or "").strip() for child in entry}
            if not fields.get("loc"):
                continue
            loc = urljoin(url, fields["loc"])
            if kind == "sitemapindex":
                yield from self._sitemap(client, loc, visited)
            else:
                yield Item(loc, fields.get("lastmod") or None)


@dataclass
class _Host:
    """One scheme+host of a crawl: its robots.txt (read once) and when it may be asked next."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pacing: threading.Lock = field(default_factory=threading.Lock)
    robots: RobotFileParser | None = None
    unreachable: str | None = None  # set when robots.txt could not be read: nothing is fetched
    delay_s: float = 0.0
    next_at: float = 0.0

    def pace(self) -> None:
        """Wait for this request's turn: requests to one host start `delay_s` apart."""
        with self.pacing:
            at = max(time.monotonic(), self.next_at)
            self.next_at = at + self.delay_s
        time.sleep(max(0.0, at - time.monotonic()))


class _Crawl:
    """What one `read` call shares between its threads: the client and the hosts."""

    def __init__(self, source: WebSource, client: httpx.Client) -> None:
        self.source, self.client = source, client
        self.hosts: dict[str, _Host] = {}
        self.lock = threading.Lock()

    def records(self, item: Item) -> list[RawRecord]:
        url = item.key
        if not _is_http(url):
            return [RawRecord(url, problem=f"invalid URL: {url!r} is not an http(s) URL")]
        host = self._host(url)
        if host.unreachable:
            return [RawRecord(url, problem=host.unreachable)]
        if host.robots is None or not host.robots.can_fetch(self.source.user_agent, url):
            return [RawRecord(url, problem=DISALLOWED)]
        try:
            body = get(
                self.client,
                url,
                retries=self.source.retries,
                limit=self.source.max_bytes,
                accept=lambda ctype: _kind(url, ctype) is not None,
                pace=host.pace,
            )
        except Failed as e:
            return [RawRecord(url, problem=e.problem)]
        kind = _kind(url, body.ctype)
        if kind == "text":
            return [RawRecord(url, url, decode(body))]
        if kind == "html":
            title, main = html_to_text(decode(body))
            return [RawRecord(url, title or url, main)]
        return list(read_whole(url, str(kind), body.data))

    def _host(self, url: str) -> _Host:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}".lower()
        with self.lock:
            host = self.hosts.setdefault(base, _Host())
        with host.lock:  # the first thread to reach a host reads its robots.txt; others wait
            if host.robots is None and host.unreachable is None:
                self._robots(base, host)
        return host

    def _robots(self, base: str, host: _Host) -> None:
        robots = RobotFileParser()
        try:
            url = f"{base}/robots.txt"
            body = get(
                self.client, url, retries=self.source.retries, limit=ROBOTS_MAX_BYTES, truncate=True
            )
        except Failed as e:
            if e.status is not None and 400 <= e.status < 500 and e.status != 429:
                robots.parse([])  # RFC 9309 "unavailable": no rules, all allowed
            else:  # RFC 9309 "unreachable" (5xx, 429, timeout, no connection): all disallowed
                host.unreachable = f"disallowed: robots.txt unreachable ({e.problem})"
                return
        else:
            robots.parse(body.data.decode("utf-8", "replace").splitlines())
            host.delay_s = float(robots.crawl_delay(self.source.user_agent) or 0)
        host.next_at = time.monotonic() + host.delay_s  # the robots.txt request counts too
        host.robots = robots


def _kind(url: str, ctype: str) -> str | None:
    """How a response is read: "html", "text", or as a file of that suffix (".pdf"); None
    when it is none of these."""
    if ctype in HTML_TYPES:
        return "html"
    if ctype == "text/plain":
        return "text"
    if ctype in DOCUMENT_TYPES:
        return DOCUMENT_TYPES[ctype]
    if ctype in _UNTYPED and suffix(url) in DOCUMENT_TYPES.values():
        return suffix(url)
    return None


def _local(tag: str) -> str:
    """An XML tag without its namespace: `{http://www.sitemaps.org/…}url` is `url`."""
    return tag.rsplit("}", 1)[-1]


def _is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
