"""`llmops search`: the first question starts a warm process, later ones are answered by it
(the stack and the embedding model stay loaded), the index is let go between questions, and
the process ends by itself when idle."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from llmops.search_service import ask, run_file, serve
from tasks.clients.embedder import EMBEDDING_MODEL
from tasks.clients.feature_store import ChunkIndex
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration

TEXTS = {
    "decorators.txt": "A decorator wraps a function: @name above a def replaces it.",
    "generators.txt": "A generator function uses yield to produce values lazily.",
    "files.txt": "The with statement opens a file and closes it when the block ends.",
}


def index_texts(settings: Settings, embedder) -> None:
    vectors = embedder.encode(list(TEXTS.values()), normalize_embeddings=True)
    frame = pd.DataFrame(
        {
            "chunk_id": [f"c{i}" for i in range(len(TEXTS))],
            "vector": list(vectors),
            "text": list(TEXTS.values()),
            "doc_id": [f"d{i}" for i in range(len(TEXTS))],
            "source": list(TEXTS),
            "chunk_index": 0,
            "n_tokens": 12,
            "language": "en",
            "event_timestamp": datetime.now(UTC),
        }
    )
    with ChunkIndex(settings) as index:
        index.apply()
        index.write(frame)
        index.flush()


def llmops(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMOPS_HOME": str(settings.home)}
    cli = [sys.executable, "-m", "llmops.cli", "search", *args]
    return subprocess.run(cli, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def warm(settings: Settings) -> Iterator[Path]:
    yield run_file(settings.home)
    with suppress(OSError, ValueError, KeyError):  # the process the test started
        os.kill(json.loads(run_file(settings.home).read_text())["pid"], signal.SIGTERM)


def test_later_questions_are_answered_by_the_warm_process(
    settings: Settings, embedder, warm: Path
) -> None:
    index_texts(settings, embedder)
    first = llmops(settings, "how do I wrap a function", "-k", "1", "--idle-s", "120")
    assert first.returncode == 0, first.stderr
    assert "decorators.txt" in first.stdout
    pid = json.loads(warm.read_text())["pid"]

    second = llmops(settings, "produce values lazily", "-k", "1")
    assert second.returncode == 0, second.stderr
    assert "generators.txt" in second.stdout
    assert json.loads(warm.read_text())["pid"] == pid  # the same process answered
    log = (settings.home / "logs" / "search.log").read_text()
    assert log.count('"POST /search HTTP/1.1" 200') == 2

    empty = llmops(settings, "   ")
    assert empty.returncode == 1 and "the query is empty" in empty.stderr

    # Between questions the Milvus Lite file is free: the nightly's embed stage can write.
    with ChunkIndex(settings, wait_s=5) as index:
        assert index.count() == len(TEXTS)


def test_nothing_indexed_is_said_and_an_idle_process_ends(settings: Settings, embedder) -> None:
    thread = threading.Thread(target=serve, args=(settings.home, 1.0), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not run_file(settings.home).exists():
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.1)
    with pytest.raises(LookupError, match="nothing is indexed yet"):
        ask(settings.home, "anything", 3, EMBEDDING_MODEL)
    thread.join(timeout=30)
    assert not thread.is_alive() and not run_file(settings.home).exists()
