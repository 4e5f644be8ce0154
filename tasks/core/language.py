"""Language identification and per-language token accounting."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language (py3langid's packaged model), 'und' if empty."""
    sample = text[:2000].strip()
    if not sample:
        return "und"
    from py3langid.langid import classify  # the model loads on first use

    return classify(sample)[0]


@dataclass
class LanguageTokens:
    language: str
    chunks: int = 0
    tokens: int = 0
    chars: int = 0

    @property
    def tokens_per_100_chars(self) -> float:
        return 100 * self.tokens / self.chars if self.chars else 0.0


def tokens_by_language(rows: Iterable[tuple[str, int, int]]) -> list[LanguageTokens]:
    """Sum (language, tokens, chars) rows per language, most tokens first."""
    totals: dict[str, LanguageTokens] = {}
    for language, tokens, chars in rows:
        t = totals.setdefault(language, LanguageTokens(language))
        t.chunks += 1
        t.tokens += tokens
        t.chars += chars
    return sorted(totals.values(), key=lambda t: -t.tokens)
