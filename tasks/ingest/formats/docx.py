"""Word (.docx) files: a record per section, its source citing the heading that starts it
(`guide.docx#section=Install`); the text before the first heading is a record of its own.

The body is read in document order, paragraphs and tables interleaved; a table becomes one
line per row, its cells joined with " | ". A heading with nothing under it before the next one
(a title over a first chapter) is not a record of its own: it opens the next section's text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from io import BytesIO
from urllib.parse import quote
from zipfile import BadZipFile

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree

from tasks.ingest.records import RawRecord, stem

NOT_WORD = "not a Word document"
CELL_SEPARATOR = " | "

_HEADING_STYLE = re.compile(r"Title|Heading \d")
# What python-docx and the zip and XML layers under it raise for a file that is not a valid
# .docx; anything else is a bug here and propagates.
_BAD_FILE = (
    BadZipFile, KeyError, ValueError, PackageNotFoundError, etree.LxmlError, zlib.error,
    EOFError, NotImplementedError,
)  # fmt: skip


def read_docx(source: str, data: bytes) -> Iterator[RawRecord]:
    """The records of one Word file, or one quarantined record saying why it is not one.
    Never raises for bad input; a file with no text is one empty record (validation says so)."""
    try:
        document = docx.Document(BytesIO(data))
        doc_title = " ".join((document.core_properties.title or "").split()) or stem(source)
        records = list(_sections(source, doc_title, document.iter_inner_content()))
    except _BAD_FILE as e:
        yield RawRecord(source, problem=f"{NOT_WORD}: {_reason(e)}")
        return
    yield from records or [RawRecord(source, doc_title, "")]


def _sections(
    source: str, doc_title: str, blocks: Iterator[Paragraph | Table]
) -> Iterator[RawRecord]:
    heading: str | None = None
    parts: list[str] = []  # the section's text: its heading(s), then paragraphs and tables
    has_body = False
    for block in blocks:
        if isinstance(block, Table):
            text = _table_text(block)
        elif _is_heading(block):
            title = " ".join(block.text.split())
            if not title:
                continue
            if has_body:
                yield _record(source, doc_title, heading, parts)
                parts, has_body = [], False
            parts.append(title)
            heading = title
            continue
        else:
            text = block.text.strip()
        if text:
            parts.append(text)
            has_body = True
    if parts:  # a last heading with nothing under it is still recorded: nothing vanishes
        yield _record(source, doc_title, heading, parts)


def _record(source: str, doc_title: str, heading: str | None, parts: list[str]) -> RawRecord:
    text = "\n\n".join(parts)
    if heading is None:
        return RawRecord(source, doc_title, text)
    return RawRecord(
        f"{source}#section={quote(heading, safe='')}", f"{doc_title} — {heading}", text
    )


def _is_heading(paragraph: Paragraph) -> bool:
    style = paragraph.style
    return style is not None and _HEADING_STYLE.fullmatch(style.name or "") is not None


def _table_text(table: Table) -> str:
    """One line per row, cells joined with " | "; a merged cell once, not once per column."""
    lines = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) not in seen:  # a merged cell is the same <w:tc> in each column
                seen.add(id(cell._tc))
                cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append(CELL_SEPARATOR.join(cells))
    return "\n".join(lines)


def _reason(e: Exception) -> str:
    message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, etree.LxmlError):
        return f"damaged XML: {message}"
    # python-docx names the stream by its repr (a memory address): keep only what varies
    found = re.search(r"content type is '([^']*)'", message)
    if found:
        return f"its main part is {found.group(1)}"
    return message or type(e).__name__
