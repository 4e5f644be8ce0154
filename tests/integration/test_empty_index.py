"""A first run where every file is quarantined leaves an index with nothing in it: a search
answers with no hits and says why, instead of failing inside the Feast adapter."""

from pathlib import Path

import pytest

from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import EMPTY_INDEX, search
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.settings import Settings

from document_files import encrypted_pdf, scanned_pdf

pytestmark = pytest.mark.integration


def test_a_search_over_an_index_left_empty_says_why(
    tmp_path: Path, settings: Settings, embedder
) -> None:
    root = tmp_path / "scans"
    root.mkdir()
    scanned_pdf(root / "contract.pdf")
    encrypted_pdf(root / "payroll.pdf")
    report = ingest_folder(root, IngestParams(source_dir=str(root)), settings)
    assert (report.read, report.accepted) == (2, 0)
    with ChunkIndex(settings) as index:
        index.apply()
        embedded = embed_snapshot(
            EmbedParams(snapshot_id=report.snapshot_id), settings, index, embedder
        )
        assert embedded.collection_rows == 0
        assert index.search([0.1] * 384, top_k=3) == []
        with pytest.raises(LookupError, match="holds no chunks") as why:
            search("What does the contract say?", settings=settings, index=index)
    assert str(why.value) == EMPTY_INDEX
