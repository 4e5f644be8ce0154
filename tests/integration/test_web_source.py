"""The web source against a real (local) web site: what it reads, what it refuses and why, and
how politely it asks, as the site saw it."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tasks.ingest.records import Item, RawRecord
from tasks.ingest.sources.web import SitemapError, WebSource

from document_files import HANDBOOK_TITLE, corrupt_pdf, guide_docx, handbook_pdf, unique_sentence
from web_site import Page, Site, local_site, redirect, robots, sitemap, sitemap_index

pytestmark = pytest.mark.integration

GUIDE = """<!doctype html><html><head><title>Loops guide</title>
<style>body { color: red }</style><script>trackVisitor()</script></head>
<body><header><a href="/">Site logo</a></header>
<nav><a href="/a">Menu entry</a></nav>
<main><h1>Loops</h1><p>A for loop iterates over
   the items of any sequence.</p><aside>Related posts</aside>
<p>A while loop runs while its condition holds.</p></main>
<footer>Copyright notice</footer><script>moreTracking()</script></body></html>"""

LATIN = "<p>Café crème</p>".encode("latin-1")
TROUBLED = {
    "/robots.txt": robots(["/private"]),
    "/sitemap.xml": sitemap({"/guide": "2026-01-02", "/plain": None, "/private/secret": None}),
    "/guide": Page(GUIDE),
    "/plain": Page("Just text.\n\nTwo paragraphs.", content_type="text/plain; charset=utf-8"),
    "/private/secret": Page("<title>Secret</title>"),
    "/old": redirect("/new"),
    "/new": Page("<title>New page</title><p>Moved here.</p>"),
    "/untitled": Page("<p>No title at all.</p>"),
    "/latin": Page(LATIN, content_type="text/html; charset=iso-8859-1"),
    "/meta": Page(b'<meta charset="iso-8859-1">' + LATIN, content_type="text/html"),
    "/slow": Page("<p>Too late</p>", delay_s=2.0),
    "/broken": Page("oops", status=500, content_type="text/plain"),
    "/busy": Page("later", status=503, content_type="text/plain", headers={"Retry-After": "1"}),
    "/archive.zip": Page(b"PK\x03\x04" + b"\x00" * 50, content_type="application/zip"),
    "/big": Page("<p>" + "x" * 2000 + "</p>"),
    "/big-stream": Page("<p>" + "x" * 2000 + "</p>", send_length=False),
}
EXTRA = ["/old", "/untitled", "/latin", "/meta", "/slow", "/broken", "/busy", "/missing"]
EXTRA += ["/archive.zip", "/big", "/big-stream"]


def crawl(**options: object) -> WebSource:
    defaults: dict = {"timeout_s": 0.5, "retries": 2, "concurrency": 4, "user_agent": "test-bot/1"}
    return WebSource(**{**defaults, **options})


@pytest.fixture(scope="module")
def troubled() -> Iterator[tuple[Site, list[Item], dict[str, RawRecord]]]:
    """One crawl of a site with every kind of trouble: its listing and a record per page."""
    with local_site(TROUBLED) as site:
        source = crawl(
            urls=[site.url(p) for p in EXTRA],
            sitemap=site.url("/sitemap.xml"),
            max_bytes=1000,
        )
        items = list(source.list())
        records = list(source.read(items))
        assert [r.source for r in records] == [i.key for i in items]  # one each, in order
        yield site, items, {r.source.removeprefix(site.base): r for r in records}


def test_the_listing_is_the_given_urls_then_the_sitemaps_with_its_lastmod_as_version(
    troubled,
) -> None:
    site, items, _ = troubled
    assert [i.key.removeprefix(site.base) for i in items] == [
        *EXTRA,
        "/guide",
        "/plain",
        "/private/secret",
    ]
    versions = {i.key.removeprefix(site.base): i.version for i in items}
    assert versions["/guide"] == "2026-01-02"
    assert versions["/plain"] is None and versions["/old"] is None


def test_a_page_gives_its_title_and_main_text_without_the_sites_chrome(troubled) -> None:
    _, _, records = troubled
    guide = records["/guide"]
    assert guide.problem is None and guide.title == "Loops guide"
    assert guide.text == (
        "Loops\n\nA for loop iterates over the items of any sequence.\n\n"
        "A while loop runs while its condition holds."
    )
    for chrome in ("logo", "Menu", "Copyright", "Related", "track", "color"):
        assert chrome not in guide.text


def test_plain_text_is_read_as_is_and_titled_with_its_url(troubled) -> None:
    site, _, records = troubled
    assert records["/plain"] == RawRecord(
        site.url("/plain"), site.url("/plain"), "Just text.\n\nTwo paragraphs."
    )


def test_a_redirected_page_keeps_its_listed_url_as_source(troubled) -> None:
    site, _, records = troubled
    assert records["/old"].source == site.url("/old")
    assert (records["/old"].title, records["/old"].text) == ("New page", "Moved here.")


def test_a_page_without_a_title_is_titled_with_its_url(troubled) -> None:
    site, _, records = troubled
    assert records["/untitled"].title == site.url("/untitled")


def test_the_charset_of_the_content_type_or_else_of_the_page_decodes_it(troubled) -> None:
    assert troubled[2]["/latin"].text == "Café crème"
    assert troubled[2]["/meta"].text == "Café crème"


def test_a_path_disallowed_by_robots_txt_is_never_fetched(troubled) -> None:
    site, _, records = troubled
    assert records["/private/secret"].problem == "disallowed by robots.txt"
    assert site.hits("/private/secret") == 0
    assert site.hits("/robots.txt") == 1  # once for the whole crawl


def test_a_slow_page_is_retried_then_quarantined_as_timed_out(troubled) -> None:
    site, _, records = troubled
    assert records["/slow"].problem == "timed out after 0.5 s (3 attempts)"
    assert site.hits("/slow") == 3


def test_a_server_error_is_retried_with_backoff_then_quarantined(troubled) -> None:
    site, _, records = troubled
    assert records["/broken"].problem == "HTTP 500 after 3 attempts"
    first, second, third = site.times("/broken")
    assert second - first >= 0.45 and third - second >= 0.95  # backoff 0.5 s, then 1 s


def test_a_retry_after_is_honoured(troubled) -> None:
    site, _, records = troubled
    assert records["/busy"].problem == "HTTP 503 after 3 attempts"
    first, second, _ = site.times("/busy")
    assert second - first >= 0.95  # Retry-After: 1 over the 0.5 s backoff


def test_a_missing_page_is_not_retried(troubled) -> None:
    site, _, records = troubled
    assert records["/missing"].problem == "HTTP 404"
    assert site.hits("/missing") == 1


def test_a_file_that_is_not_a_page_is_refused_by_its_content_type(troubled) -> None:
    assert troubled[2]["/archive.zip"].problem == "unsupported content type: application/zip"


def test_a_page_over_the_size_limit_is_refused_whether_declared_or_streamed(troubled) -> None:
    _, _, records = troubled
    for path in ("/big", "/big-stream"):
        assert records[path].problem == "too large: over the 1000 byte limit"


def test_every_request_names_the_crawler(troubled) -> None:
    site, _, _ = troubled
    assert {r.user_agent for r in site.requests} == {"test-bot/1"}


def test_no_more_requests_than_the_concurrency_are_in_flight_at_once() -> None:
    pages = {f"/p{n}": Page(f"<title>P{n}</title>", delay_s=0.3) for n in range(9)}
    with local_site(pages) as site:  # no robots.txt: a 404 there allows everything
        source = crawl(urls=[site.url(p) for p in pages], concurrency=3)
        records = list(source.read(source.list()))
    assert [r.title for r in records] == [f"P{n}" for n in range(9)]
    assert site.max_in_flight == 3
    assert site.hits("/robots.txt") == 1


def test_the_crawl_delay_of_robots_txt_spaces_requests_to_the_host() -> None:
    pages = {"/robots.txt": robots([], crawl_delay=1), "/a": Page("a"), "/b": Page("b")}
    with local_site(pages) as site:
        source = crawl(urls=[site.url("/a"), site.url("/b")], concurrency=2)
        assert all(r.problem is None for r in source.read(source.list()))
    times = [r.at for r in site.requests]
    assert len(times) == 3 and all(b - a >= 0.95 for a, b in pairwise(times))


def test_an_unreachable_robots_txt_disallows_the_whole_host() -> None:
    pages = {"/robots.txt": Page("down", status=503), "/a": Page("a")}
    with local_site(pages) as site:
        source = crawl(urls=[site.url("/a")], retries=0)
        [record] = source.read(source.list())
    assert record.problem == "disallowed: robots.txt unreachable (HTTP 503 after 1 attempts)"
    assert site.hits("/a") == 0


def test_a_sitemap_index_lists_the_pages_of_its_sitemaps_gzipped_or_not() -> None:
    pages = {
        "/index.xml": sitemap_index(["/one.xml", "/two.xml.gz", "/index.xml"]),
        "/one.xml": sitemap({"/a": "2026-03-01", "/b": None}),
        "/two.xml.gz": sitemap({"/c": "2026-03-02", "/a": None}, gzipped=True),
    }
    with local_site(pages) as site:
        source = crawl(urls=[site.url("/b")], sitemap=site.url("/index.xml"))
        items = list(source.list())
    assert source.root == site.url("/index.xml")
    assert [(i.key.removeprefix(site.base), i.version) for i in items] == [
        ("/b", None),
        ("/a", "2026-03-01"),
        ("/c", "2026-03-02"),
    ]


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        (Page(status=404), "HTTP 404"),
        (Page("<html>not a sitemap</html>"), "neither <urlset> nor <sitemapindex>"),
        (Page("<urlset><url>", content_type="application/xml"), "not a valid sitemap"),
    ],
)
def test_a_sitemap_that_cannot_be_read_is_a_configuration_error(page: Page, reason: str) -> None:
    with local_site({"/sitemap.xml": page}) as site:
        source = crawl(sitemap=site.url("/sitemap.xml"), retries=0)
        with pytest.raises(SitemapError, match=reason) as error:
            list(source.list())
    assert site.url("/sitemap.xml") in str(error.value)


PDF, DOCX = (
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
)


def test_pdf_and_word_files_on_a_site_are_read_per_page_and_section(tmp_path: Path) -> None:
    made = {
        "handbook": handbook_pdf(tmp_path / "handbook.pdf", pages=3).read_bytes(),
        "guide": guide_docx(tmp_path / "guide.docx").read_bytes(),
        "broken": corrupt_pdf(tmp_path / "broken.pdf").read_bytes(),
    }
    pages = {
        "/files/handbook.pdf": Page(made["handbook"], content_type=PDF),
        # a server that does not know the type: the URL's suffix decides
        "/files/guide.docx": Page(made["guide"], content_type="application/octet-stream"),
        "/files/broken.pdf": Page(made["broken"], content_type=PDF),
        "/files/blob.bin": Page(made["guide"], content_type="application/octet-stream"),
    }
    with local_site(pages) as site:
        source = crawl(urls=[site.url(p) for p in pages])
        records = list(source.read(source.list()))
    handbook = site.url("/files/handbook.pdf")
    by_source = {r.source.removeprefix(site.base): r for r in records}
    assert [r.source for r in records[:3]] == [f"{handbook}#page={n}" for n in (1, 2, 3)]
    for n, record in enumerate(records[:3], 1):
        assert record.title == HANDBOOK_TITLE and unique_sentence(n) in record.text
    ports = by_source["/files/guide.docx#section=Ports%20%26%20firewalls"]
    assert "Open the port in the firewall" in ports.text
    assert by_source["/files/broken.pdf"].problem.startswith("unreadable PDF")
    blob = by_source["/files/blob.bin"]
    assert blob.problem == "unsupported content type: application/octet-stream"
