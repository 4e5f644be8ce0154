"""Embed stage: documents of a snapshot → token chunks → vectors → Milvus, through Feast."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasks.clients.embedder import EMBEDDING_MODEL


class EmbedParams(BaseModel):
    """How documents are cut and embedded."""

    snapshot_id: str | None = Field(None, description="Ingest snapshot; empty = the latest.")
    model: str = Field(EMBEDDING_MODEL, description="sentence-transformers model id or path.")
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
