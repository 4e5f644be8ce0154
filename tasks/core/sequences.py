"""Training data: a held-out split by document, and token ids packed into fixed-length rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def is_held_out(doc_id: str, eval_fraction: float) -> bool:
    """Stable per document: a document is in the evaluation split on every run or on none."""
    bucket = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < eval_fraction


def pack(token_lists: Iterable[list[int]], seq_len: int, eos_id: int) -> np.ndarray:
    """Concatenate documents (each ended by EOS) and cut rows of `seq_len` tokens; the tail that
    does not fill a row is dropped."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    rows = len(stream) // seq_len
    return np.asarray(stream[: rows * seq_len], dtype=np.int64).reshape(rows, seq_len)
