"""A small web site on a free loopback port for the web source's tests: each path answers
what its `Page` says (status, content type, body, headers, a delay that provokes timeouts),
and every request is recorded (path, time, user agent) with the most that were in flight at
once, so tests can check the crawler's politeness as the site sees it.

    with local_site({"/": Page("<title>Home</title>"), "/robots.txt": robots(["/x"])}) as site:
        WebSource([site.url("/")]) ...
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Body = str | bytes | Callable[[str], str | bytes]  # a callable gets the site's base URL


@dataclass(frozen=True)
class Page:
    body: Body = ""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    delay_s: float = 0.0  # before answering
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True  # False: no Content-Length, the body ends when the connection does


@dataclass(frozen=True)
class Request:
    path: str
    at: float  # time.monotonic() when it arrived
    user_agent: str


class Site:
    def __init__(self, pages: dict[str, Page], base: str) -> None:
        self.pages, self.base = pages, base
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        return sum(r.path == path for r in self.requests)

    def times(self, path: str) -> list[float]:
        return [r.at for r in self.requests if r.path == path]

    def _arrive(self, path: str, user_agent: str) -> None:
        with self._lock:
            self.requests.append(Request(path, time.monotonic(), user_agent))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def robots(disallow: list[str], crawl_delay: int | None = None, agent: str = "*") -> Page:
    lines = [f"User-agent: {agent}", *(f"Disallow: {path}" for path in disallow)]
    if crawl_delay is not None:
        lines.append(f"Crawl-delay: {crawl_delay}")
    return Page("\n".join(lines) + "\n", content_type="text/plain")


def sitemap(paths: dict[str, str | None], gzipped: bool = False) -> Page:
    """A `<urlset>` of the site's `paths`, each with its lastmod (or none)."""

    def body(base: str) -> bytes:
        entries = "".join(
            f"<url><loc>{base}{path}</loc>{f'<lastmod>{mod}</lastmod>' if mod else ''}</url>"
            for path, mod in paths.items()
        )
        xml = _XML.format(kind="urlset", entries=entries).encode()
        return gzip.compress(xml) if gzipped else xml

    return Page(body, content_type="application/gzip" if gzipped else "application/xml")


def sitemap_index(paths: list[str]) -> Page:
    def body(base: str) -> str:
        entries = "".join(f"<sitemap><loc>{base}{path}</loc></sitemap>" for path in paths)
        return _XML.format(kind="sitemapindex", entries=entries)

    return Page(body, content_type="application/xml")


def redirect(to: str, status: int = 301) -> Page:
    return Page(status=status, headers={"Location": to})


_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<{kind} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{kind}>'
)


@contextmanager
def local_site(pages: dict[str, Page]) -> Iterator[Site]:
    """The site, served on threads (one per connection) until the block ends; a path not in
    `pages` answers 404."""
    server = _Server(("127.0.0.1", 0), _Handler)
    site = Site(pages, f"http://127.0.0.1:{server.server_address[1]}")
    server.site = site
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    block_on_close = False  # do not wait for a handler still sleeping out a page's delay
    site: Site


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        site = self.server.site
        path = self.path.split("?", 1)[0]
        site._arrive(path, self.headers.get("User-Agent", ""))
        page = site.pages.get(path, Page("not found", status=404, content_type="text/plain"))
        try:
            time.sleep(page.delay_s)
            body = page.body(site.base) if callable(page.body) else page.body
            data = body.encode() if isinstance(body, str) else body
        finally:  # counted out before answering: the client cannot send its next one sooner
            site._leave()
        try:
            self.send_response(page.status)
            self.send_header("Content-Type", page.content_type)
            if page.send_length:
                self.send_header("Content-Length", str(len(data)))
            for name, value in page.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting (a timeout under test)
            pass

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass
