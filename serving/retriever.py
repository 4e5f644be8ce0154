"""RAG's side of the Serve app: the embedder and the vector index behind one deployment."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from ray import serve

from tasks.shared.settings import Settings

NOTHING_INDEXED = "nothing is indexed yet: run the nightly pipeline (`make nightly`)"
INDEX_BUSY = "the index is being rewritten by a pipeline stage right now: retry shortly"


# One replica: surge on a redeploy, like the router and the models (serving.app.ROLLOUT).
@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=16,
    max_surge_percent=100,
    graceful_shutdown_timeout_s=60,
)
class Retriever:
    """The embedder and the vector index. A Milvus Lite file is locked to the one process that
    has it open, so it is let go after `idle_close_s` without questions: the nightly's embed
    stage can rewrite it while the service runs (a Milvus server is shared without this)."""

    def __init__(self, settings: Settings, idle_close_s: float = 3.0, wait_s: float = 2.0) -> None:
        from tasks.clients.embedder import load_embedder

        self.settings, self.idle_close_s, self.wait_s = settings, idle_close_s, wait_s
        self._index: Any = None
        self._lock = threading.Lock()
        self._last_used = 0.0
        self._closer: threading.Timer | None = None
        load_embedder()  # at start-up, not on the first question

    async def search(self, query: str, top_k: int) -> list[dict[str, Any]] | str:
        """The top_k hits (text, doc_id, source, score, ...), or why there are none."""
        return await asyncio.to_thread(self._search, query, top_k)

    def _search(self, query: str, top_k: int) -> list[dict[str, Any]] | str:
        from tasks.clients.feature_store import ChunkIndex, IndexBusy
        from tasks.clients.retrieval import search

        with self._lock:
            try:
                if self._index is None:  # lazily: the index may be filled after start-up
                    self._index = ChunkIndex(self.settings, wait_s=self.wait_s)
                hits = search(query, top_k, settings=self.settings, index=self._index)
                return [h.model_dump() for h in hits]
            except LookupError as e:  # nothing indexed yet, or an index left empty: why
                return str(e)
            except IndexBusy:
                return INDEX_BUSY
            finally:
                self._last_used = time.monotonic()
                self._close_when_idle()

    def _close_when_idle(self) -> None:
        """(Re)arm the timer that closes a Milvus Lite index; call with the lock held."""
        if self._closer is None and self._index is not None and self._index.lite_path:
            idle = time.monotonic() - self._last_used
            self._closer = threading.Timer(max(0.0, self.idle_close_s - idle), self._close)
            self._closer.daemon = True
            self._closer.start()

    def _close(self) -> None:
        with self._lock:
            self._closer = None
            if self._index is not None and time.monotonic() - self._last_used >= self.idle_close_s:
                self._index.close()
                self._index = None
            else:
                self._close_when_idle()
