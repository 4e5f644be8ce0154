"""The text of laid-out pages, as sentences: running headers and footers removed, words broken
across lines joined and the lines of a paragraph rejoined.

Text read from a PDF keeps the page's lines: every line ends where the layout wrapped it, a
word may be split with a hyphen, and each page repeats the same header and footer. All of it
harms search and chunking; these functions undo it from the text alone (lines end in "\\n").
"""

from __future__ import annotations

import re
from collections import Counter

EDGE_LINES = 2  # the lines at each end of a page where headers and footers sit
MIN_RUNNING_PAGES = 3  # fewer pages than this cannot tell a running line from chance
SHORT_LINE = 0.6  # a line shorter than this share of the longest ends its block

_DIGITS = re.compile(r"\d+")
# A hyphen at a line's end between a letter or digit and the next line's letter or digit.
_BROKEN_WORD = re.compile(r"([^\W_])-[ \t]*\n[ \t]*(?=([^\W_]))")
_SOFT_BREAK = re.compile(r"\u00ad[ \t]*\n[ \t]*")
_SENTENCE_END = tuple(".!?:;")
_LIST_ITEM = re.compile(r"(?:[•◦▪‣●○■□]|[-*+–]\s|\(?\d{1,3}[.)]\s)")


def strip_running_lines(pages: list[str]) -> list[str]:
    """The pages without the headers and footers that repeat on many of them.

    A line is running when its shape (digits as `#`, so "Page 3 of 10" matches "Page 4 of 10")
    is among the first or last two non-empty lines of at least half the pages with text, and
    of at least three; it is removed wherever it stands there, never from the middle of a page.
    """
    lines = [page.split("\n") for page in pages]
    edges = [_edge_indexes(page_lines) for page_lines in lines]
    counts: Counter[str] = Counter()
    for page_lines, idx in zip(lines, edges, strict=True):
        counts.update({_shape(page_lines[i]) for i in idx})
    with_text = sum(1 for idx in edges if idx)
    needed = max(MIN_RUNNING_PAGES, (with_text + 1) // 2)
    running = {shape for shape, n in counts.items() if n >= needed}
    if not running:
        return list(pages)
    out = []
    for page_lines, idx in zip(lines, edges, strict=True):
        drop = {i for i in idx if _shape(page_lines[i]) in running}
        out.append("\n".join(line for i, line in enumerate(page_lines) if i not in drop))
    return out


def join_hyphenated(text: str) -> str:
    """Words broken across lines made whole: "exam-\\nple" -> "example". Before an uppercase
    letter or a digit, or after a digit, the hyphen is real and stays ("co-\\nOperation" ->
    "co-Operation", "2023-\\n2024" -> "2023-2024"). Soft hyphens (U+00AD) are removed."""
    text = _SOFT_BREAK.sub("", text).replace("\u00ad", "")
    return _BROKEN_WORD.sub(_join_word, text)


def reflow(text: str) -> str:
    """The lines of each paragraph joined with a space, so that the text reads as sentences.

    A break stays after a blank line (kept, as one blank line), before a list item ("•", "-",
    "*", "1.", "2)"), after a short line (a heading, a table row or a paragraph's last line)
    and between a line that ends a sentence and a short heading-like line. Short means under
    `SHORT_LINE` of the text's longest line: wrapped lines fill the width, these do not.
    """
    lines = [line.strip() for line in text.split("\n")]
    short = SHORT_LINE * max((len(line) for line in lines), default=0)
    blocks: list[str] = []  # "" marks a paragraph break
    prev = ""
    for line in lines:
        if not line:
            if blocks and blocks[-1]:
                blocks.append("")
        elif not prev or _keeps_break(prev, line, short):
            blocks.append(line)
        else:
            blocks[-1] = f"{blocks[-1]} {line}"
        prev = line
    return "\n".join(blocks).strip("\n")


def clean_pages(pages: list[str]) -> list[str]:
    """Each page's text as sentences: running lines removed (across all the pages), broken
    words joined, paragraphs reflowed."""
    stripped = strip_running_lines(pages)
    if not any(page.strip() for page in stripped):  # all template: the lines are the content
        stripped = pages
    return [reflow(join_hyphenated(page)) for page in stripped]


def _shape(line: str) -> str:
    return _DIGITS.sub("#", " ".join(line.split())).casefold()


def _edge_indexes(lines: list[str]) -> set[int]:
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return set(filled[:EDGE_LINES] + filled[-EDGE_LINES:])


def _join_word(match: re.Match[str]) -> str:
    before, after = match.group(1), match.group(2)
    return before if before.isalpha() and after.islower() else f"{before}-"


def _keeps_break(prev: str, line: str, short: float) -> bool:
    if _LIST_ITEM.match(line):
        return True
    if len(prev) < short and not line[0].islower():
        return True
    return prev.endswith(_SENTENCE_END) and _heading_like(line, short)


def _heading_like(line: str, short: float) -> bool:
    return len(line) < short and not line.endswith(_SENTENCE_END) and not line[0].islower()
