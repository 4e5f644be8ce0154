import pandas as pd
import pytest

from tasks.core.sync import chunk_id, chunker_key, plan_sync

pytestmark = pytest.mark.unit

K = chunker_key("m", 200, 32)
OTHER = chunker_key("m", 100, 16)


def manifest(*rows: tuple[str, str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["chunk_id", "doc_id", "source", "source_root", "chunker"])


def snapshot(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["doc_id", "source", "source_root"])


CASES = {
    "empty index embeds everything": (
        manifest(),
        snapshot(("d1", "a.txt", "/r"), ("d2", "b.txt", "/r")),
        True,
        {"d1", "d2"},
        [],
    ),
    "second run over the same snapshot does nothing": (
        manifest(("c1", "d1", "a.txt", "/r", K), ("c2", "d1", "a.txt", "/r", K)),
        snapshot(("d1", "a.txt", "/r")),
        True,
        set(),
        [],
    ),
    "changed document replaces its chunks": (
        manifest(("c1", "d1", "a.txt", "/r", K)),
        snapshot(("d1b", "a.txt", "/r")),
        False,
        {"d1b"},
        ["c1"],
    ),
    "full sync removes documents that left the folder": (
        manifest(("c1", "d1", "a.txt", "/r", K), ("c2", "d2", "b.txt", "/r", K)),
        snapshot(("d1", "a.txt", "/r")),
        True,
        set(),
        ["c2"],
    ),
    "incremental sync keeps documents it did not see": (
        manifest(("c1", "d1", "a.txt", "/r", K), ("c2", "d2", "b.txt", "/r", K)),
        snapshot(("d1", "a.txt", "/r")),
        False,
        set(),
        [],
    ),
    "other source roots are never touched": (
        manifest(("c1", "d1", "a.txt", "/r", K), ("c9", "d9", "z.txt", "/other", K)),
        snapshot(("d1", "a.txt", "/r")),
        True,
        set(),
        [],
    ),
    "new chunking settings re-embed and drop the old chunks": (
        manifest(("c1", "d1", "a.txt", "/r", OTHER)),
        snapshot(("d1", "a.txt", "/r")),
        True,
        {"d1"},
        ["c1"],
    ),
}


@pytest.mark.parametrize(("index", "snap", "full", "embed", "stale"), CASES.values(), ids=CASES)
def test_plan_sync(index, snap, full, embed, stale) -> None:
    plan = plan_sync(index, snap, K, full)
    assert plan.embed_doc_ids == embed
    assert sorted(plan.stale_chunk_ids) == sorted(stale)
    assert plan.kept_chunks == len(index) - len(stale)


def test_chunk_ids_depend_on_document_position_and_chunker() -> None:
    assert chunk_id(K, "d1", 0) == chunk_id(K, "d1", 0)
    assert len({chunk_id(K, "d1", 0), chunk_id(K, "d1", 1), chunk_id(K, "d2", 0)}) == 3
    assert chunk_id(K, "d1", 0) != chunk_id(OTHER, "d1", 0)
