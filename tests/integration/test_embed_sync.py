from pathlib import Path
from pydoc_data.topics import topics

import pytest

from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared import lake
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration


def sync(root: Path, settings: Settings, index: ChunkIndex, embedder, **embed):
    ingest = ingest_folder(root, IngestParams(source_dir=str(root)), settings)
    params = EmbedParams(snapshot_id=ingest.snapshot_id, chunk_tokens=128, **embed)
    return embed_snapshot(params, settings, index, embedder)


def indexed_doc_ids(index: ChunkIndex) -> set[str]:
    rows = index._client.query(index.collection, filter="", output_fields=["doc_id"], limit=10_000)
    return {r["doc_id"] for r in rows}


def test_incremental_idempotent_sync_with_changes_and_removals(
    tmp_path: Path, settings: Settings, embedder
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for name in ("try", "with", "for"):
        (root / f"{name}.txt").write_text(topics[name])
    index = ChunkIndex(settings)
    index.apply()

    first = sync(root, settings, index, embedder)
    assert first.documents == 3 and first.chunks_embedded > 3
    assert first.collection_rows == first.chunks_embedded == index.count()
    assert first.languages[0]["language"] == "en"
    hits = search("How do I handle exceptions?", top_k=3, settings=settings, index=index)
    assert hits[0].source == "try.txt" and "except" in hits[0].text
    assert [h.rank for h in hits] == [1, 2, 3]

    again = sync(root, settings, index, embedder)
    assert (again.chunks_embedded, again.chunks_deleted) == (0, 0)
    assert again.chunks_skipped == first.chunks_embedded
    assert index.count() == first.collection_rows

    old_with = set(lake.read_snapshot(settings.snapshots_dir, first.snapshot_id)["doc_id"])
    (root / "with.txt").write_text(
        topics["with"] + "\n\nThe zebra protocol requires every context manager to be striped."
    )
    changed = sync(root, settings, index, embedder)
    assert changed.documents_embedded == 1 and changed.chunks_deleted > 0
    now = indexed_doc_ids(index)
    assert len(now) == 3 and len(now - old_with) == 1  # the old version of with.txt is gone
    hit = search("zebra protocol striped", top_k=1, settings=settings, index=index)[0]
    assert hit.source == "with.txt" and "zebra" in hit.text

    (root / "for.txt").unlink()
    removed = sync(root, settings, index, embedder)
    assert removed.chunks_embedded == 0 and removed.chunks_deleted > 0
    assert len(indexed_doc_ids(index)) == 2
    assert all(
        h.source != "for.txt" for h in search("for loop", 10, settings=settings, index=index)
    )
    assert (
        index.count() == removed.collection_rows == len(lake.read_manifest(settings.index_manifest))
    )


def test_chunks_beyond_the_model_limit_are_refused(
    tmp_path: Path, settings: Settings, embedder
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "try.txt").write_text(topics["try"])
    index = ChunkIndex(settings)
    with pytest.raises(ValueError, match="maximum of 254 tokens"):
        embed_snapshot(
            EmbedParams(chunk_tokens=400),
            settings,
            index,
            embedder,
        )


def test_searching_before_anything_is_indexed_says_what_to_do(settings: Settings) -> None:
    with pytest.raises(LookupError, match="run the nightly pipeline"):
        search("anything", settings=settings)
    with pytest.raises(ValueError, match="empty"):
        search("   ", settings=settings)
