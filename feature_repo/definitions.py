"""Feast definitions for retrieval: documents and their embedded chunks.

Source paths are relative to the state folder (LLMOPS_HOME), which the platform's adapter
sets as the repository path.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, Int64, String
from feast.value_type import ValueType

TAGS = {"team": "llmops", "pipeline": "rag"}

document = Entity(
    name="document",
    join_keys=["doc_id"],
    value_type=ValueType.STRING,
    description="A validated document; its id is the SHA-256 of its normalised text.",
    tags=TAGS,
)
chunk = Entity(
    name="chunk",
    join_keys=["chunk_id"],
    value_type=ValueType.STRING,
    description="A token window of a document; its id hashes the document, window and model.",
    tags=TAGS,
)

documents_source = FileSource(
    name="documents_source",
    path="lake/documents",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Documents accepted by the ingest stage (the offline lake).",
    tags=TAGS,
)
chunks_source = FileSource(
    name="chunks_source",
    path="lake/chunks",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Every chunk the embed stage wrote, with its vector (offline history).",
    tags=TAGS,
)
chunks_push = PushSource(
    name="chunks_push",
    batch_source=chunks_source,
    description="Where the embed stage pushes new chunks and their vectors.",
    tags=TAGS,
)

documents = FeatureView(
    name="documents",
    entities=[document],
    ttl=timedelta(0),
    schema=[
        Field(name="title", dtype=String, description="Title or file name."),
        Field(name="text", dtype=String, description="Normalised document text."),
        Field(name="source", dtype=String, description="Path of the source, relative to it."),
        Field(name="language", dtype=String, description="ISO 639-1 language code."),
        Field(name="n_chars", dtype=Int64, description="Length in characters."),
    ],
    source=documents_source,
    online=False,
    description="Accepted documents, for training sets and point-in-time lookups.",
    tags={**TAGS, "type": "documents"},
)

document_chunks = FeatureView(
    name="document_chunks",
    entities=[chunk],
    ttl=timedelta(0),
    schema=[
        Field(name="chunk_id", dtype=String, description="Chunk id (entity key)."),
        Field(
            name="vector",
            dtype=Array(Float32),
            description="Normalised sentence embedding (all-MiniLM-L6-v2 by default, 384-d).",
            vector_index=True,
            vector_search_metric="COSINE",
        ),
        Field(name="text", dtype=String, description="The chunk's text."),
        Field(name="doc_id", dtype=String, description="Document the chunk comes from."),
        Field(name="source", dtype=String, description="Source path of that document."),
        Field(name="chunk_index", dtype=Int64, description="Position in the document."),
        Field(name="n_tokens", dtype=Int64, description="Tokens, by the embedding tokenizer."),
        Field(name="language", dtype=String, description="ISO 639-1 language of the document."),
    ],
    source=chunks_push,
    online=True,
    description="Embedded chunks with a vector index, searched for retrieval (RAG).",
    tags={**TAGS, "type": "vector"},
)

rag_retrieval = FeatureService(
    name="rag_retrieval",
    features=[document_chunks],
    description="What a RAG request reads: chunk text, vector and provenance.",
    tags=TAGS,
)
