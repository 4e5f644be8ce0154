"""Semantic search over the embedded chunks: the query is embedded, Feast asks Milvus."""

from __future__ import annotations

from feast.errors import FeatureViewNotFoundException
from pydantic import BaseModel

from tasks.clients.embedder import EMBEDDING_MODEL, load_embedder
from tasks.clients.feature_store import ChunkIndex
from tasks.shared.settings import Settings, get_settings

NOTHING_INDEXED = "nothing is indexed yet: run the nightly pipeline (`make nightly`)"
EMPTY_INDEX = (
    "the index holds no chunks: the last ingest accepted no document (its report and the "
    "lake's quarantine say why each was refused)"
)


class Hit(BaseModel):
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    source: str
    chunk_index: int
    n_tokens: int
    language: str
    text: str


def search(
    query: str,
    top_k: int = 5,
    model: str = EMBEDDING_MODEL,
    settings: Settings | None = None,
    index: ChunkIndex | None = None,
) -> list[Hit]:
    """The `top_k` chunks closest to `query` (cosine), best first, with their provenance."""
    if not query.strip():
        raise ValueError("the query is empty")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    index = index or ChunkIndex(settings or get_settings())
    vector = load_embedder(model).encode(query, normalize_embeddings=True).tolist()
    try:
        rows = index.search(vector, top_k)
    except FeatureViewNotFoundException:
        raise LookupError(NOTHING_INDEXED) from None
    if not rows and index.count() == 0:
        raise LookupError(EMPTY_INDEX)
    return [Hit(rank=i, **row) for i, row in enumerate(rows, start=1)]
