"""Text normalisation, markup stripping and content-hash ids."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from html.parser import HTMLParser

# C0/C1 control characters except tab and newline, which normalisation turns into spaces and breaks.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unicode NFC, control characters dropped, runs of spaces collapsed, paragraphs kept."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def is_valid_unicode(text: str) -> bool:
    """False for text holding lone surrogates, which cannot be encoded as UTF-8."""
    return _SURROGATE.search(text) is None


def content_id(text: str) -> str:
    """Stable id of a piece of content: the first 32 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def looks_binary(head: bytes) -> bool:
    """A NUL byte in the first bytes is what `git` and `grep` take as binary too."""
    return b"\x00" in head


_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)


class _Out:
    """Text with pending breaks: a block boundary becomes a line break (1) or a paragraph
    break (2) only when more text follows, so empty blocks leave no blank lines."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = 0

    def brk(self, level: int) -> None:
        self.pending = max(self.pending, level)

    def add(self, data: str) -> None:
        if not data.strip():
            if self.parts and not self.pending:
                self.parts.append(" ")  # the space between two inline words
            return
        if self.pending and self.parts:
            self.parts.append("\n" * self.pending)
        self.pending = 0
        self.parts.append(data)

    def text(self) -> str:
        lines = (_SPACES.sub(" ", line).strip() for line in "".join(self.parts).split("\n"))
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class _TextExtractor(HTMLParser):
    """Visible text with the page's chrome left out. Elements are skipped whole (the parser
    counts nested tags of the skipped one's name to find its end); text inside `<main>` or
    `<article>` is also collected apart, and is the result when there is any. A `<header>`
    inside main, article or section is that section's heading (ARIA maps only the page-level
    one to `banner`), so it stays."""

    _SKIP = frozenset(
        {"nav", "aside", "form", "script", "style", "noscript", "svg", "iframe", "template"}
        | {"footer", "button", "select", "dialog"}
    )
    _SKIP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
    _MAIN = frozenset({"main", "article"})
    _SECTIONING = frozenset({"main", "article", "section"})
    _PARAGRAPH = frozenset(
        {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol"}
        | {"dl", "section", "article", "main", "header", "figure", "hr", "address", "details"}
    )
    _LINE = frozenset({"br", "div", "li", "tr", "dt", "dd", "figcaption", "summary", "caption"})
    _CELL = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.all = _Out()
        self.main = _Out()
        self._skip_tag: str | None = None  # the element being skipped, and how deep in it
        self._skip_depth = 0
        self._main_tag: str | None = None  # the <main>/<article> being collected
        self._main_depth = 0
        self._sectioning = 0
        self._in_title = False
        self._pre = 0

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:  # `<![foo[ …`: the stdlib gives up; skip it like a comment
            end = self.rawdata.find(">", i + 3)
            return end + 1 if end >= 0 else -1

    def _skips(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in _VOID:
            return False  # no end tag would ever close the skip
        if tag in self._SKIP:
            return True
        if tag == "header" and not self._sectioning:  # the page's banner, not a section's head
            return True
        found = dict(attrs)
        return (
            (found.get("role") or "").strip().lower() in self._SKIP_ROLES
            or "hidden" in found
            or (found.get("aria-hidden") or "").strip().lower() == "true"
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            self._skip_depth += tag == self._skip_tag
            return
        if self._skips(tag, attrs):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag == "title" and not self.title:
            self._in_title = True
        elif tag in self._MAIN:
            if self._main_tag is None:
                self._main_tag, self._main_depth = tag, 0
            self._main_depth += tag == self._main_tag
        self._sectioning += tag in self._SECTIONING
        self._pre += tag == "pre"
        self._boundary(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if not self._skip_depth:
                    self._skip_tag = None
            return
        if tag == "title":
            self._in_title = False
        self._boundary(tag)
        if tag == self._main_tag:
            self._main_depth -= 1
            if not self._main_depth:
                self._main_tag = None
        if tag in self._SECTIONING and self._sectioning:
            self._sectioning -= 1
        if tag == "pre" and self._pre:
            self._pre -= 1

    def _boundary(self, tag: str) -> None:
        if tag in self._CELL:
            self._emit(" ")
            return
        level = 2 if tag in self._PARAGRAPH else 1 if tag in self._LINE else 0
        if level:
            self.all.brk(level)
            if self._main_tag is not None:
                self.main.brk(level)

    def _emit(self, data: str) -> None:
        self.all.add(data)
        if self._main_tag is not None:
            self.main.add(data)

    def handle_data(self, data: str) -> None:
        if self._skip_tag is not None:
            return
        if self._in_title:
            self.title.append(data)
        elif self._pre:
            for n, line in enumerate(data.split("\n")):
                if n:
                    self._boundary("br")
                self._emit(line)
        else:  # outside <pre> a line break in the source is only a space
            self._emit(_WHITESPACE.sub(" ", data))


def html_to_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page: markup, scripts and styles removed, and the
    page's chrome too (navigation, banner, footer, sidebars, forms; only `<main>` or
    `<article>` when the page marks its content so). Blocks become lines and paragraphs,
    runs of spaces one space."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    main = parser.main.text()
    return _WHITESPACE.sub(" ", "".join(parser.title)).strip(), main or parser.all.text()
