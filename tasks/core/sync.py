"""What an embed run must do: which documents to chunk and embed, which chunks to delete."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tasks.core.text import content_id

MANIFEST_COLUMNS = ["chunk_id", "doc_id", "source", "source_root", "chunker"]


def chunker_key(model: str, size: int, overlap: int) -> str:
    """Chunks made with other settings are other chunks."""
    return f"{model}|{size}|{overlap}"


def chunk_id(chunker: str, doc_id: str, index: int) -> str:
    return content_id(f"{chunker}\x1f{doc_id}\x1f{index}")


@dataclass(frozen=True)
class SyncPlan:
    embed_doc_ids: set[str]
    stale_chunk_ids: list[str]
    kept_chunks: int


def plan_sync(
    manifest: pd.DataFrame, snapshot: pd.DataFrame, chunker: str, full_sync: bool
) -> SyncPlan:
    """Compare what the index holds (`manifest`) with what the snapshot says should be there.

    A document is embedded unless its chunks for this `chunker` are indexed already. A chunk is
    stale when its source now holds another document (changed at source), when it was made with
    another chunker, or, on a full sync, when its document left a source root being synced.
    """
    wanted = set(snapshot["doc_id"])
    current = manifest[manifest["chunker"] == chunker]
    embedded_docs = set(current["doc_id"])
    touched = manifest["doc_id"].isin(wanted) | manifest["source"].isin(set(snapshot["source"]))
    if full_sync:
        touched |= manifest["source_root"].isin(set(snapshot["source_root"]))
    stale = touched & ~(manifest["doc_id"].isin(wanted) & (manifest["chunker"] == chunker))
    return SyncPlan(
        embed_doc_ids=wanted - embedded_docs,
        stale_chunk_ids=manifest.loc[stale, "chunk_id"].tolist(),
        kept_chunks=int((~stale).sum()),
    )
