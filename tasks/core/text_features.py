"""Per-request text features for drift monitoring: words, vocabulary rates, non-ASCII share,
and the retrieval score a request's answer was built on."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

# Runs of letters (any script), apostrophes inside words kept; digits and code symbols are not
# words, so identifiers like `__init__` give `init`. Lower-cased, at least two letters: single
# letters are mostly variables and list markers, whose rates say nothing about the language.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÄÖÜ0-9\"'(])")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, of two letters or more."""
    return [w for w in (m.lower() for m in _WORD.findall(text)) if len(w) > 1]


def non_ascii_share(text: str) -> float:
    """Share of the letters that are not ASCII (accents, umlauts, other scripts); 0.0 when
    there is no letter. Typographic quotes and dashes do not count: they say nothing about the
    language."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(ord(c) > 127 for c in letters) / len(letters)


def oov_rate(tokens: Iterable[str], vocabulary: Collection[str]) -> float:
    """Share of `tokens` not in `vocabulary`; NaN when there is no token to judge."""
    tokens = list(tokens)
    if not tokens:
        return math.nan
    return sum(t not in vocabulary for t in tokens) / len(tokens)


def document_frequency(texts: Iterable[str]) -> Counter[str]:
    """In how many of `texts` each word occurs."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(words(text)))
    return counts


def vocabulary(frequency: Counter[str], min_documents: int = 1) -> frozenset[str]:
    """The words found in at least `min_documents` documents. With 2, a passage of one of the
    documents is judged as if its own document had been left out (leave-one-out): the honest
    baseline for text the vocabulary was built from."""
    return frozenset(w for w, n in frequency.items() if n >= min_documents)


def unseen_share(counts: Counter[str], known: Collection[str]) -> float:
    """Share of all word occurrences in `counts` that are not in `known`; NaN when empty."""
    total = sum(counts.values())
    if not total:
        return math.nan
    return sum(n for w, n in counts.items() if w not in known) / total


def new_terms(counts: Counter[str], known: Collection[str], top: int = 10) -> list[tuple[str, int]]:
    """The most frequent words of `counts` that are not in `known`."""
    return Counter({w: n for w, n in counts.items() if w not in known}).most_common(top)


def best_score(sources: str | None) -> float:
    """The best retrieval score of a request's `sources` JSON ([{doc_id, score, ...}, ...]);
    NaN when no retrieval ran (null or "[]"). ValueError for text that is not such a list."""
    if sources is None:
        return math.nan
    try:
        hits: Any = json.loads(sources)
    except json.JSONDecodeError as error:
        raise ValueError(f"sources is not JSON: {error}") from None
    if not isinstance(hits, list):
        raise ValueError(f"sources must be a JSON list, got {type(hits).__name__}")
    scores = [float(h["score"]) for h in hits if isinstance(h, dict) and "score" in h]
    if len(scores) != len(hits):
        raise ValueError("every source needs a score")
    return max(scores) if scores else math.nan


def sentences(text: str, min_words: int = 6, max_words: int = 40) -> list[str]:
    """Sentences of prose with `min_words`..`max_words` words, mostly letters (no code)."""
    out = []
    for paragraph in text.split("\n\n"):
        for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
            words = sentence.split()
            letters = sum(c.isalpha() for c in sentence)
            if min_words <= len(words) <= max_words and letters >= 0.7 * len(sentence):
                out.append(sentence)
    return out
