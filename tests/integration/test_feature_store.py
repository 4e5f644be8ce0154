import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tasks.clients.feature_store import ChunkIndex, IndexBusy, repo_config
from tasks.shared.settings import Settings, get_settings

pytestmark = pytest.mark.integration


def chunks(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 384)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "chunk_id": [f"c{i:03d}" for i in range(n)],
            "vector": list(vectors),
            "text": [f"text {i}" for i in range(n)],
            "doc_id": [f"d{i // 10}" for i in range(n)],
            "source": [f"doc{i // 10}.txt" for i in range(n)],
            "chunk_index": [i % 10 for i in range(n)],
            "n_tokens": 3,
            "language": "en",
            "event_timestamp": datetime.now(UTC),
        }
    )
    return frame, vectors


def test_apply_write_retrieve_and_rewrite_through_feast(settings: Settings) -> None:
    index = ChunkIndex(settings)
    index.apply()
    assert {fv.name for fv in index.store.list_feature_views()} >= {"document_chunks"}
    assert [s.name for s in index.store.list_feature_services()] == ["rag_retrieval"]

    frame, vectors = chunks(120)
    index.write(frame)
    index.flush()
    assert index.count() == 120

    exact = np.argsort(-(vectors @ vectors[42]))[:5]
    hits = index.search(vectors[42].tolist(), top_k=5)
    assert [h["chunk_id"] for h in hits] == [f"c{i:03d}" for i in exact]
    assert hits[0]["text"] == "text 42" and hits[0]["score"] == pytest.approx(1.0)
    # Every row's features belong to its own chunk id.
    assert all(h["text"] == f"text {int(h['chunk_id'][1:])}" for h in hits)
    assert all(h["chunk_index"] == int(h["chunk_id"][1:]) % 10 for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)

    index.write(frame)  # the same rows again: upserts, nothing added
    index.flush()
    assert index.count() == 120

    index.delete([f"c{i:03d}" for i in range(10)])
    assert index.count() == 110
    assert "c000" not in [h["chunk_id"] for h in index.search(vectors[0].tolist(), top_k=5)]


def test_state_lives_under_the_home_folder(settings: Settings) -> None:
    config = repo_config(settings)
    assert config.online_store.path == str(settings.feast_dir / "online_store.db")
    assert str(settings.feast_dir) in config.registry.path
    assert config.repo_path == settings.home


def test_a_remote_milvus_is_chosen_by_settings_alone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_MILVUS_URI", "http://milvus.internal:19530")
    monkeypatch.setenv("LLMOPS_MILVUS_TOKEN", "root:Milvus")
    online = repo_config(get_settings()).online_store
    assert online.uri == "http://milvus.internal:19530"
    assert online.token == "root:Milvus"
    assert not online.path


def test_a_milvus_lite_file_held_by_another_process_is_waited_for_then_refused_clearly(
    settings: Settings,
) -> None:
    """Milvus Lite locks its folder to one process; a second one waits for it, then gets an
    error that says what holds it and what to do instead of pymilvus' connection failure."""
    with ChunkIndex(settings) as index:
        index.apply()
        index.write(chunks(5)[0])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_INDEX, str(settings.home)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(IndexBusy, match=r"open in another process.*LLMOPS_MILVUS_URI"):
            ChunkIndex(settings, wait_s=0.5)
        started = time.monotonic()
        with ChunkIndex(settings, wait_s=30) as index:  # the holder lets go after 2 s
            assert time.monotonic() - started > 0.5 and index.count() == 5
    finally:
        holder.kill()


HOLD_INDEX = """
import sys, time
from pathlib import Path
from tasks.clients.feature_store import ChunkIndex
from tasks.shared.settings import Settings
with ChunkIndex(Settings(home=Path(sys.argv[1]))) as index:
    index.count()
    print("holding", flush=True)
    time.sleep(2)
"""
