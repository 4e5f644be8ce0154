"""Where in a document a passage is, from its source: a PDF page (`handbook.pdf#page=12`, the
RFC 8118 fragment that opens the file at that page) or a Word section
(`guide.docx#section=Install%20it`). The location travels in the source itself, so every
store on the way (lake, chunks, Milvus) keeps it without a field of its own."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class Location:
    document: str  # the source without the fragment
    page: int | None = None
    section: str | None = None

    @property
    def citation(self) -> str:
        """How an answer names it: "handbook.pdf, page 12", "guide.docx, section Install"."""
        if self.page is not None:
            return f"{self.document}, page {self.page}"
        if self.section is not None:
            return f"{self.document}, section {self.section}"
        return self.document


def locate(source: str) -> Location:
    document, _, fragment = source.rpartition("#")
    if not document:
        return Location(source)
    name, _, value = fragment.partition("=")
    if name == "page" and value.isdigit():
        return Location(document, page=int(value))
    if name == "section" and value:
        return Location(document, section=unquote(value))
    return Location(source)  # another fragment (`notes.jsonl#L3`) is part of the name


def cite(source: str) -> str:
    return locate(source).citation
