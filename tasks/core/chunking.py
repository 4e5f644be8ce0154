"""Token-window chunking with the embedding model's own tokenizer.

The tokenizer is passed in as offsets (what `tokenizer(..., return_offsets_mapping=True)` gives)
and an optional token counter, so this stays pure and works with any tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Offsets = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    text: str
    n_tokens: int


def check_chunk_size(size: int, overlap: int, model_max_tokens: int) -> None:
    """Refuse windows the model would truncate, or an overlap that would never advance."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1 token, got {size}")
    if size > model_max_tokens:
        raise ValueError(
            f"chunk size {size} tokens exceeds the embedding model's maximum of "
            f"{model_max_tokens} tokens (special tokens excluded)"
        )
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}) tokens, got {overlap}")


def _word_start(offsets: Offsets, i: int) -> bool:
    # A gap before the token means whitespace: cutting there re-tokenizes to the same tokens.
    return i == 0 or i >= len(offsets) or offsets[i][0] > offsets[i - 1][1]


def chunk_tokens(
    text: str,
    offsets: Offsets,
    size: int,
    overlap: int,
    count_tokens: Callable[[str], int] | None = None,
) -> list[Chunk]:
    """Split `text` into windows of at most `size` tokens that overlap by about `overlap`.

    Windows end on word boundaries where one exists; `count_tokens`, when given, re-checks each
    window's text so that a cut inside a word can never produce more than `size` tokens.
    """
    offsets = [o for o in offsets if o[1] > o[0]]
    n = len(offsets)
    chunks: list[Chunk] = []
    start = 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            boundary = next(
                (b for b in range(end, start + overlap, -1) if _word_start(offsets, b)), end
            )
            end = boundary
        while True:
            piece = text[offsets[start][0] : offsets[end - 1][1]]
            n_tokens = count_tokens(piece) if count_tokens else end - start
            if n_tokens <= size or end - start == 1:
                break
            end -= 1
        chunks.append(Chunk(len(chunks), offsets[start][0], offsets[end - 1][1], piece, n_tokens))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        while nxt > start + 1 and not _word_start(offsets, nxt):
            nxt -= 1
        start = nxt if _word_start(offsets, nxt) else max(end - overlap, start + 1)
    return chunks
