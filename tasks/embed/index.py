"""Embed stage: documents of a snapshot → token chunks → vectors → Milvus, through Feast."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sentence_transformers import SentenceTransformer
from tqdm import tqdm

from tasks.clients.embedder import max_content_tokens
from tasks.clients.feature_store import ChunkIndex
from tasks.core.chunking import check_chunk_size, chunk_tokens
from tasks.core.language import LanguageTokens, tokens_by_language
from tasks.core.sync import chunk_id, chunker_key, plan_sync
from tasks.embed.params import EmbedParams, EmbedReport
from tasks.embed.ray_encoder import RayEncoder
from tasks.shared import lake
from tasks.shared.settings import Settings

Encode = Callable[[list[str]], np.ndarray]


def chunk_documents(
    docs: pd.DataFrame, embedder: SentenceTransformer, params: EmbedParams, chunker: str
) -> pd.DataFrame:
    """One row per chunk, cut with the embedding model's own tokenizer."""
    tokenizer = embedder.tokenizer
    encoded = tokenizer(
        docs["text"].tolist(), add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    rows = []
    for doc, offsets in zip(docs.itertuples(), encoded["offset_mapping"], strict=True):
        for c in chunk_tokens(doc.text, offsets, params.chunk_tokens, params.overlap_tokens, count):
            rows.append(
                {
                    "chunk_id": chunk_id(chunker, doc.doc_id, c.index),
                    "doc_id": doc.doc_id,
                    "source": doc.source,
                    "source_root": doc.source_root,
                    "chunk_index": c.index,
                    "text": c.text,
                    "n_tokens": c.n_tokens,
                    "language": doc.language,
                    "chunker": chunker,
                }
            )
    return pd.DataFrame(rows)


def local_encoder(embedder: SentenceTransformer, batch_size: int) -> Encode:
    def encode(texts: list[str]) -> np.ndarray:
        return embedder.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )

    return encode


def embed_snapshot(
    params: EmbedParams,
    settings: Settings,
    index: ChunkIndex,
    embedder: SentenceTransformer,
    encode: Encode | None = None,
) -> EmbedReport:
    """Sync the snapshot into the index. `embedder` cuts the chunks (its tokenizer); `encode`
    computes the vectors: the same model in this process unless given (e.g. a `RayEncoder`)."""
    encode = encode or local_encoder(embedder, params.encode_batch_size)
    started = time.perf_counter()
    check_chunk_size(params.chunk_tokens, params.overlap_tokens, max_content_tokens(embedder))
    snapshot_id = params.snapshot_id or lake.latest_snapshot(settings.snapshots_dir)
    snapshot = lake.read_snapshot(settings.snapshots_dir, snapshot_id)
    chunker = chunker_key(params.model, params.chunk_tokens, params.overlap_tokens)
    manifest = lake.read_manifest(settings.index_manifest)
    plan = plan_sync(manifest, snapshot, chunker, params.full_sync)

    members = snapshot.set_index("doc_id")
    written: list[pd.DataFrame] = []
    language_rows: list[tuple[str, int, int]] = []
    embed_seconds = 0.0
    progress = tqdm(total=len(plan.embed_doc_ids), desc="embed", unit="doc")
    for docs in lake.iter_documents(
        settings.documents_dir, plan.embed_doc_ids, params.documents_per_batch
    ):
        # The snapshot says where each document sits now; the lake keeps its first source.
        docs = docs.drop(columns=["source", "source_root"]).join(members, on="doc_id")
        chunks = chunk_documents(docs, embedder, params, chunker)
        progress.update(len(docs))
        if chunks.empty:
            continue
        t0 = time.perf_counter()
        vectors = encode(chunks["text"].tolist())
        embed_seconds += time.perf_counter() - t0
        chunks["vector"] = list(vectors.astype("float32"))
        chunks["event_timestamp"] = datetime.now(UTC)
        index.write(chunks.drop(columns=["source_root", "chunker"]))
        lake.append_chunks(settings.chunks_dir, chunks)
        written.append(chunks[lake.MANIFEST_SCHEMA.names])
        lengths = chunks["text"].str.len()
        language_rows += zip(chunks["language"], chunks["n_tokens"], lengths, strict=True)
    progress.close()

    index.delete(plan.stale_chunk_ids)
    index.flush()
    kept = manifest[~manifest["chunk_id"].isin(set(plan.stale_chunk_ids))]
    new_manifest = pd.concat([kept, *written], ignore_index=True)
    lake.write_manifest(settings.index_manifest, new_manifest)
    n_embedded = sum(len(w) for w in written)
    return EmbedReport(
        snapshot_id=snapshot_id,
        documents=len(snapshot),
        documents_embedded=len(plan.embed_doc_ids),
        chunks_embedded=n_embedded,
        chunks_skipped=plan.kept_chunks,
        chunks_deleted=len(plan.stale_chunk_ids),
        collection_rows=index.count(),
        embed_seconds=round(embed_seconds, 3),
        seconds=round(time.perf_counter() - started, 3),
        languages=[_language_row(t) for t in tokens_by_language(language_rows)],
        on_ray=isinstance(encode, RayEncoder),
        placement=encode.placement() if isinstance(encode, RayEncoder) else [],
    )


def _language_row(t: LanguageTokens) -> dict:
    return {
        "language": t.language,
        "chunks": t.chunks,
        "tokens": t.tokens,
        "chars": t.chars,
        "tokens_per_100_chars": round(t.tokens_per_100_chars, 1),
    }
