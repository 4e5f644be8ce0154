"""Milvus by URI and token alone: the embed stage and retrieval, unchanged, against a real Milvus
server (standalone, authentication on) started on a loopback port, not the Milvus Lite file."""

from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

import pytest
from pymilvus import MilvusClient

from tasks.clients.feature_store import CHUNK_VIEW, ChunkIndex, MilvusUnavailable
from tasks.clients.retrieval import search
from tasks.embed.params import EmbedParams
from tasks.embed.tasks import index_snapshot
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.settings import get_settings

from services import Server, milvus_server
from worlds import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with milvus_server(tmp_path_factory.mktemp("milvus")) as server:
        print(f"Milvus server healthy after {server.start_s:.1f} s at {server.url}")
        yield server


def use_milvus(patch: pytest.MonkeyPatch, home: Path, uri: str, token: str | None) -> None:
    """What an operator does: set the variables, nothing else."""
    patch.setenv("LLMOPS_HOME", str(home))
    patch.setenv("LLMOPS_MILVUS_URI", uri)
    if token is None:
        patch.delenv("LLMOPS_MILVUS_TOKEN", raising=False)
    else:
        patch.setenv("LLMOPS_MILVUS_TOKEN", token)


def test_embed_and_search_through_a_milvus_server(
    milvus: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_milvus(monkeypatch, tmp_path / "state", milvus.url, milvus.token)
    settings = get_settings()
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("try", "with", "for"):
        (docs / f"{name}.txt").write_text(topics[name])
    snapshot = ingest_folder(docs, IngestParams(source_dir=str(docs)), settings).snapshot_id

    report = index_snapshot.fn(EmbedParams(snapshot_id=snapshot, chunk_tokens=128))
    assert report.documents == 3 and report.chunks_embedded > 3
    assert report.collection_rows == report.chunks_embedded

    with ChunkIndex(get_settings()) as index:
        hits = search("How do I handle exceptions?", top_k=3, index=index)
    assert hits[0].source == "try.txt" and "except" in hits[0].text
    assert [h.rank for h in hits] == [1, 2, 3]

    # The rows live in the server, seen by any client with the token; no Lite file was made.
    client = MilvusClient(uri=milvus.url, token=milvus.token)
    collection = f"llmops_{CHUNK_VIEW}"
    assert collection in client.list_collections()
    [row] = client.query(collection, filter="", output_fields=["count(*)"])
    assert row["count(*)"] == report.chunks_embedded
    client.close()
    assert not settings.milvus_lite_path.exists()

    again = index_snapshot.fn(EmbedParams(snapshot_id=snapshot, chunk_tokens=128))
    assert (again.chunks_embedded, again.chunks_skipped) == (0, report.chunks_embedded)
    assert again.collection_rows == report.chunks_embedded


@pytest.mark.parametrize("token", ["root:wrong-password", None], ids=["wrong", "missing"])
def test_a_wrong_or_missing_token_is_refused_with_the_reason(
    milvus: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    use_milvus(monkeypatch, tmp_path / "state", milvus.url, token)
    refused = r"refused the connection: check LLMOPS_MILVUS_TOKEN"
    with pytest.raises(MilvusUnavailable, match=refused):
        search("exceptions")


def test_an_unreachable_uri_says_nothing_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    use_milvus(monkeypatch, tmp_path / "state", uri, "root:Milvus")
    with pytest.raises(MilvusUnavailable, match=rf"nothing answers at the Milvus URI {uri}"):
        ChunkIndex(get_settings())
