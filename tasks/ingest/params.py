"""Ingest stage: files → normalised, validated documents in the lake; bad rows → quarantine."""

from __future__ import annotations

from pydantic import BaseModel, Field


class IngestParams(BaseModel):
    """What to ingest and the rules a document must pass."""

    source_dir: str | None = Field(
        None, description="Folder of .txt/.md/.html/.jsonl/.parquet files; empty = demo corpus."
    )
    demo_topics: list[str] | None = Field(
        None, description="Demo corpus: pydoc topics to include (empty = all of them)."
    )
    demo_modules: list[str] | None = Field(
        None, description="Demo corpus: standard-library modules whose docs to include."
    )
    text_field: str = Field("text", description="Field holding the text in .jsonl/.parquet.")
    min_chars: int = Field(20, ge=1, description="Shortest accepted document, in characters.")
    max_chars: int = Field(2_000_000, ge=1, description="Longest accepted document.")
    max_file_bytes: int = Field(20_000_000, ge=1, description="Larger single files are refused.")
    batch_size: int = Field(500, ge=1, description="Documents validated and written at a time.")


class IngestReport(BaseModel):
    run_id: str
    source_root: str
    snapshot_id: str
    read: int
    accepted: int
    quarantined: int
    new_documents: int
    reasons: dict[str, int]
    seconds: float

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined
