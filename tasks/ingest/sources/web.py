"""Web pages from a list of URLs and a sitemap, read politely: robots.txt honoured per host
(its Disallow and its Crawl-delay), a user agent that says who we are, a few requests at a
time. Every listed page yields one record: its main text, or why it could not be read.

A sitemap that cannot be fetched or parsed raises `SitemapError` from `list()`: it is the
source's configuration, not a document, and listing nothing would hide the mistake.
"""

from __future__ import annotations

import gzip
import io
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from tasks.core.iterables import ordered_map
from tasks.core.text import html_to_text
from tasks.ingest.records import Item, RawRecord

DISALLOWED = "disallowed by robots.txt"
PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
MAX_RETRY_AFTER_S = 5.0  # a longer Retry-After is capped: one page is not worth more
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: crawlers parse at least the first 500 KiB
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


class SitemapError(RuntimeError):
    """A sitemap (the source's own or one its index lists) could not be fetched or parsed."""


class _Failed(Exception):
    """A fetch that did not succeed: `problem` is the record's reason."""

    def __init__(self, problem: str, status: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.status = problem, status


@dataclass(frozen=True)
class _Body:
    ctype: str  # the media type, lower case, without parameters
    charset: str | None  # from the Content-Type header
    data: bytes


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
        """One record per item, in item order; one client (and connection pool) per call."""
        with self._client() as client:
            yield from ordered_map(_Crawl(self, client).record, items, self.concurrency)

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
            data = self._get(client, url, None, self.max_bytes).data
            if data[:2] == b"\x1f\x8b":  # .xml.gz served as is (not as Content-Encoding)
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                    data = f.read(self.max_bytes + 1)
                if len(data) > self.max_bytes:
                    raise _Failed(f"too large: over the {self.max_bytes} byte limit")
            root = ET.fromstring(data)
        except _Failed as e:
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

    def _get(
        self,
        client: httpx.Client,
        url: str,
        types: frozenset[str] | None,
        limit: int,
        pace: Callable[[], None] | None = None,
        truncate: bool = False,
    ) -> _Body:
        """GET `url`, again after a timeout, a dropped connection, a 5xx or a 429 (backing off
        0.5 s, 1 s, …); raises `_Failed` with the reason when it gives up."""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            wait, last = 0.5 * 2 ** (attempt - 1), attempt == attempts
            if pace:
                pace()
            try:
                with client.stream("GET", url) as r:
                    status = r.status_code
                    if status == 429 or status >= 500:
                        if last:
                            raise _Failed(f"HTTP {status} after {attempts} attempts", status)
                        wait = max(wait, _retry_after(r))
                    elif not r.is_success:
                        raise _Failed(f"HTTP {status}", status)
                    else:
                        return _body(r, types, limit, truncate)
            except httpx.TimeoutException:
                if last:
                    raise _Failed(
                        f"timed out after {self.timeout_s:g} s ({attempts} attempts)"
                    ) from None
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
                raise _Failed(f"invalid URL: {e}") from None
            except httpx.TooManyRedirects:
                raise _Failed("too many redirects") from None
            except httpx.DecodingError as e:
                raise _Failed(f"undecodable response: {e}") from None
            except httpx.TransportError as e:
                if last:
                    raise _Failed(f"unreachable: {e or type(e).__name__}") from None
            time.sleep(wait)
        raise AssertionError("unreachable")


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

    def record(self, item: Item) -> RawRecord:
        url = item.key
        if not _is_http(url):
            return RawRecord(url, problem=f"invalid URL: {url!r} is not an http(s) URL")
        host = self._host(url)
        if host.unreachable:
            return RawRecord(url, problem=host.unreachable)
        if host.robots is None or not host.robots.can_fetch(self.source.user_agent, url):
            return RawRecord(url, problem=DISALLOWED)
        try:
            body = self.source._get(self.client, url, PAGE_TYPES, self.source.max_bytes, host.pace)
        except _Failed as e:
            return RawRecord(url, problem=e.problem)
        text = _decode(body)
        if body.ctype == "text/plain":
            return RawRecord(url, url, text)
        title, main = html_to_text(text)
        return RawRecord(url, title or url, main)

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
            body = self.source._get(
                self.client, f"{base}/robots.txt", None, ROBOTS_MAX_BYTES, truncate=True
            )
        except _Failed as e:
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


def _body(r: httpx.Response, types: frozenset[str] | None, limit: int, truncate: bool) -> _Body:
    """The body, refused before it is read when its type or its declared length is wrong,
    and while it streams when it grows over `limit` (then cut there when `truncate`)."""
    ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
    if types is not None and ctype not in types:
        raise _Failed(f"unsupported content type: {ctype or '(none)'}")
    too_large = _Failed(f"too large: over the {limit} byte limit")
    length = r.headers.get("content-length", "")
    if not truncate and length.isdigit() and int(length) > limit:
        raise too_large
    data = bytearray()
    for chunk in r.iter_bytes():
        data += chunk
        if len(data) > limit:
            if not truncate:
                raise too_large
            del data[limit:]
            break
    return _Body(ctype, r.charset_encoding, bytes(data))


def _decode(body: _Body) -> str:
    """The header's charset, else a `<meta charset>` of an HTML page, else UTF-8 when the bytes
    are UTF-8, else windows-1252 (what browsers assume for unlabelled Western pages)."""
    meta = _META_CHARSET.search(body.data[:2048]) if body.ctype != "text/plain" else None
    for charset in (body.charset, meta and meta.group(1).decode("ascii")):
        if charset:
            try:
                return body.data.decode(charset, "replace")
            except LookupError:  # a charset Python does not know: try the next way
                pass
    try:
        return body.data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.data.decode("cp1252", "replace")


def _retry_after(r: httpx.Response) -> float:
    """A Retry-After in seconds, at most `MAX_RETRY_AFTER_S`; 0 when absent or an HTTP date."""
    try:
        return min(max(float(r.headers.get("retry-after", "")), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


def _local(tag: str) -> str:
    """An XML tag without its namespace: `{http://www.sitemaps.org/…}url` is `url`."""
    return tag.rsplit("}", 1)[-1]


def _is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
