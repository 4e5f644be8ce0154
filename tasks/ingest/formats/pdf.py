"""PDF files: a record per page with text, its source citing the page (`handbook.pdf#page=3`,
the RFC 8118 fragment that opens the file at that page).

Read with pypdfium2, bindings to PDFium, Chrome's PDF engine: Apache-2.0/BSD licensed, binary
wheels for every platform, fast, robust on damaged files, and nothing to download at run time.
PyMuPDF is AGPL; pdfminer.six and pypdf are pure Python and several times slower.

A page without a text layer but with images is a scan: it is quarantined as needing OCR, as is
a file where no page has text. Running headers and footers are removed across the pages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from tasks.core.pages import EDGE_LINES, clean_pages
from tasks.ingest.records import RawRecord, stem

NEEDS_OCR = "no text layer: needs OCR"
NEEDS_PASSWORD = "encrypted PDF: needs a password"
NO_PAGES = "unreadable PDF: no pages"

# PDFium keeps global state and is not thread-safe: one call into it at a time, process-wide
# (sources may read files from a thread pool). Held while a file is read, never across a yield.
_LOCK = threading.Lock()

_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_PASSWORD: NEEDS_PASSWORD,
    pdfium_c.FPDF_ERR_SECURITY: "encrypted PDF: unsupported security handler",
    pdfium_c.FPDF_ERR_FORMAT: "unreadable PDF: damaged or not a PDF",
    pdfium_c.FPDF_ERR_FILE: "unreadable PDF: file access error",
    pdfium_c.FPDF_ERR_PAGE: "unreadable PDF: page not found or content error",
}
# Titles some writers put in every file (reportlab's default): no better than the file's name.
_PLACEHOLDER_TITLES = {"", "untitled"}
# PDFium replaces a hyphen that ends a line after a letter with one of these markers and drops
# the line break (get_text_bounded gives U+0002, get_text_range U+FFFE); restored as "-\n" so
# that `join_hyphenated` decides whether the hyphen is real.
_HYPHEN_MARKERS = ("\x02", "\ufffe")


@dataclass(frozen=True)
class _Page:
    text: str
    has_images: bool
    problem: str | None = None


def read_pdf(source: str, data: bytes) -> Iterator[RawRecord]:
    """One record per page with text, a quarantined one per scanned page; one record for the
    whole file when it cannot be opened or no page has text. Never raises for bad input."""
    with _LOCK:
        opened = _read_pages(data)
    if isinstance(opened, str):
        yield RawRecord(source, problem=opened)
        return
    meta_title, pages = opened
    if not any(page.text.strip() or page.problem for page in pages):
        yield RawRecord(source, problem=NEEDS_OCR)
        return
    texts = clean_pages([page.text for page in pages])
    title = meta_title if meta_title.casefold() not in _PLACEHOLDER_TITLES else stem(source)
    for n, (page, text) in enumerate(zip(pages, texts, strict=True), 1):
        cited = f"{source}#page={n}"
        if page.problem:
            yield RawRecord(cited, problem=page.problem)
        elif text:
            yield RawRecord(cited, title, text)
        elif page.has_images:
            yield RawRecord(cited, problem=NEEDS_OCR)
        # a blank page (no text, no image) has nothing to record


def _read_pages(data: bytes) -> tuple[str, list[_Page]] | str:
    """(the metadata title, each page's raw text), or why the file cannot be read.

    Loaded through the raw API: pypdfium2's PdfDocument raises for a file with no pages with
    whatever error an earlier load left behind (PDFium does not reset it on success)."""
    handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if not handle:
        code = pdfium_c.FPDF_GetLastError()
        return _LOAD_ERRORS.get(code, f"unreadable PDF: PDFium error {code}")
    doc = pdfium.PdfDocument(handle)  # `data` outlives it: PDFium reads from that buffer
    try:
        if len(doc) == 0:
            return NO_PAGES
        title = " ".join(doc.get_metadata_value("Title").split())
        return title, [_read_page(doc, i) for i in range(len(doc))]
    finally:
        doc.close()


def _read_page(doc: pdfium.PdfDocument, index: int) -> _Page:
    try:
        page = doc[index]
    except pdfium.PdfiumError as e:
        return _Page("", False, f"unreadable PDF: {e}")
    try:
        textpage = page.get_textpage()
        try:
            # In content order, which for single-column pages and tables is reading order;
            # unlike get_text_range it is not limited to UCS-2.
            text = textpage.get_text_bounded()
        finally:
            textpage.close()
        # Only a page that cleaning may leave empty (no more lines than the running lines it
        # removes) needs its images looked for: walking every object is slow on busy pages.
        has_images = _lines(text) <= 2 * EDGE_LINES and _has_images(page)
    except pdfium.PdfiumError as e:
        return _Page("", False, f"unreadable PDF: {e}")
    finally:
        page.close()
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    for marker in _HYPHEN_MARKERS:
        text = text.replace(marker, "-\n")
    return _Page(text, has_images)


def _lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def _has_images(page: pdfium.PdfPage) -> bool:
    images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])  # inside forms too
    return next(images, None) is not None
