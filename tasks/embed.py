"""Embed stage: documents of a snapshot → token chunks → vectors → Milvus, through Feast."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field
from sentence_transformers import SentenceTransformer
from tqdm import tqdm

from tasks import lake
from tasks.caching import RETRIES, snapshot_key, stage_task
from tasks.clients.embedder import DEFAULT_MODEL, load_embedder, max_content_tokens
from tasks.clients.feature_store import ChunkIndex
from tasks.core.chunking import check_chunk_size, chunk_tokens
from tasks.core.language import LanguageTokens, tokens_by_language
from tasks.core.sync import chunk_id, chunker_key, plan_sync
from tasks.embed_ray import RayEncoder, use_ray
from tasks.settings import Settings, get_settings

Encode = Callable[[list[str]], np.ndarray]


class EmbedParams(BaseModel):
    """How documents are cut and embedded."""

    snapshot_id: str | None = Field(None, description="Ingest snapshot; empty = the latest.")
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model id or path.")
    chunk_tokens: int = Field(200, ge=1, description="Tokens per chunk (model tokenizer).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens shared by neighbouring chunks.")
    encode_batch_size: int = Field(64, ge=1, description="Chunks per forward pass.")
    documents_per_batch: int = Field(128, ge=1, description="Documents streamed at a time.")
    full_sync: bool = Field(
        True, description="Remove chunks of documents that left the synced source folders."
    )
    on_ray: bool | None = Field(
        None,
        description="Encode on Ray actors spread over the cluster's nodes; empty = when a Ray "
        "cluster is configured (LLMOPS_RAY_ADDRESS). Chunking and the writes stay here.",
    )
    ray_actors: int | None = Field(
        None, ge=1, description="Embedding actors on Ray; empty = as many as the CPUs allow."
    )
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs each embedding actor holds.")


class EmbedReport(BaseModel):
    snapshot_id: str
    documents: int
    documents_embedded: int
    chunks_embedded: int
    chunks_skipped: int
    chunks_deleted: int
    collection_rows: int
    embed_seconds: float
    seconds: float
    languages: list[dict]
    on_ray: bool = False
    placement: list[dict] = Field(
        default_factory=list, description="Chunks and batches each Ray node encoded."
    )

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_embedded / self.embed_seconds if self.embed_seconds else 0.0


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


@stage_task(snapshot_key, **RETRIES)  # upserts by content-hash id
def index_snapshot(params: EmbedParams) -> EmbedReport:
    settings = get_settings()
    with ChunkIndex(settings) as index:  # closed after: the serving app may read it next
        index.apply()
        embedder = load_embedder(params.model)  # here for its tokenizer at least
        if not use_ray(params.on_ray, settings.ray_address):
            return embed_snapshot(params, settings, index, embedder)
        encoder = RayEncoder(
            settings, params.model, params.encode_batch_size, params.ray_actors,
            params.cpus_per_actor,
        )  # fmt: skip
        with encoder:
            return embed_snapshot(params, settings, index, embedder, encoder)


@task
def publish_embed_report(report: EmbedReport) -> None:
    languages = "\n".join(
        f"| {r['language']} | {r['chunks']} | {r['tokens']} | {r['chars']} "
        f"| {r['tokens_per_100_chars']} |"
        for r in report.languages
    )
    markdown = (
        f"# Embed snapshot {report.snapshot_id}\n\n"
        "| documents | embedded docs | chunks embedded | chunks skipped | chunks deleted "
        "| rows in Milvus | chunks/s | seconds |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {report.documents} | {report.documents_embedded} | {report.chunks_embedded} "
        f"| {report.chunks_skipped} | {report.chunks_deleted} | {report.collection_rows} "
        f"| {report.chunks_per_second:.1f} | {report.seconds} |\n\n"
        "## Tokens per language (embedded this run)\n\n"
        "| language | chunks | tokens | chars | tokens per 100 chars |\n|---|---:|---:|---:|---:|\n"
        + languages
        + _placement_section(report.placement)
    )
    create_markdown_artifact(markdown, key="embed-report", description="Embed counts")


def _placement_section(placement: list[dict]) -> str:
    if not placement:
        return ""
    rows = "\n".join(f"| {p['node']} | {p['batches']} | {p['chunks']} |" for p in placement)
    return (
        "\n\n## Encoded on Ray (per node)\n\n| node | batches | chunks |\n|---|---:|---:|\n" + rows
    )
