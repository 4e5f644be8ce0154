"""The documents people have, through the ingest_documents and embed_documents flows under
Prefect: the pages of an internal site from its sitemap (robots.txt honoured, a failing page
quarantined with its reason after retries), then a folder of PDF and Word files (a scan
quarantined as needing OCR); each searchable with its URL, page or section as its source."""

from pathlib import Path
from pydoc_data.topics import topics

import pytest

from flows.embed import embed_documents
from flows.ingest import ingest_documents
from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.embed.params import EmbedParams
from tasks.ingest.params import IngestParams
from tasks.ingest.sources.web import DISALLOWED
from tasks.shared.settings import Settings

from document_files import guide_docx, handbook_pdf, scanned_pdf, unique_sentence
from web_site import Page, local_site, robots, sitemap

pytestmark = pytest.mark.e2e


def page(title: str, text: str) -> Page:
    return Page(
        f"<html><head><title>{title}</title><style>p{{color:red}}</style></head><body>"
        f"<nav><a href='/'>Home</a> | <a href='/faq'>FAQ</a></nav>"
        f"<main><h1>{title}</h1><p>{text}</p></main><footer>© Intranet team</footer></body></html>"
    )


def test_a_sites_pages_and_a_folder_of_pdf_and_word_are_ingested_and_found(
    prefect_harness, tmp_path: Path, settings: Settings
) -> None:
    pages = {
        "/robots.txt": robots(["/private/"]),
        "/sitemap.xml": sitemap(
            {
                "/docs/try": "2026-11-01",
                "/docs/with": None,
                "/private/salaries": None,
                "/down": None,
            }
        ),
        "/docs/try": page("The try statement", topics["try"][:1500]),
        "/docs/with": page("The with statement", topics["with"][:1500]),
        "/private/salaries": page("Salaries", "Nobody should index this page."),
        "/down": Page("oops", status=500),
    }
    with local_site(pages) as site:
        params = IngestParams(sitemap=site.url("/sitemap.xml"), fetch_timeout_s=5)
        web = ingest_documents(params)
        assert site.hits("/private/salaries") == 0 and site.hits("/down") == 3  # 1 + 2 retries
    assert (web.read, web.accepted, web.quarantined) == (4, 2, 2)
    reasons = {q.source.removeprefix(site.base): q.reasons for q in web.quarantined_rows}
    assert reasons == {"/private/salaries": [DISALLOWED], "/down": ["HTTP 500 after 3 attempts"]}
    embed_documents(EmbedParams(snapshot_id=web.snapshot_id, chunk_tokens=96))
    with ChunkIndex(settings) as index:
        hit = search("How do I handle an exception?", top_k=1, settings=settings, index=index)[0]
        assert hit.source == site.url("/docs/try") and "Intranet team" not in hit.text

    folder = tmp_path / "shared-drive"
    folder.mkdir()
    handbook_pdf(folder / "handbook.pdf", pages=5)
    guide_docx(folder / "guide.docx")
    scanned_pdf(folder / "scan.pdf")
    files = ingest_documents(IngestParams(source_dir=str(folder)))
    assert files.reconciles and files.reasons == {"no text layer": 1}
    embed_documents(EmbedParams(snapshot_id=files.snapshot_id, chunk_tokens=96))
    with ChunkIndex(settings) as index:
        hits = search(unique_sentence(2), top_k=5, settings=settings, index=index)
        assert next(h for h in hits if unique_sentence(2) in h.text).source == "handbook.pdf#page=2"
        hit = search("Which port must the firewall open?", top_k=1, settings=settings, index=index)
    assert hit[0].source == "guide.docx#section=Ports%20%26%20firewalls"
