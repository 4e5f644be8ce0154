"""A request log with real shifts for the drift monitor's tests: a training snapshot of the
pydoc topics, and windows of prompts on consecutive days, each written through RequestLog:

- day 0 `reference` and day 1 `same`: sentences of the Python docs (disjoint draws);
- day 2 `man-en`: English Linux man pages (another domain);
- day 3 `man-de`: German man pages (another language).

Sources carry real retrieval scores: the same MiniLM embedder searching paragraphs of the
training documents. The man pages come from /usr/share/man; without them the world fails with
the Debian package to install (tasks.monitor.demo_traffic.man_page_prompts), it is never skipped.
"""

import random
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest

from tasks.clients.request_log import RequestLog
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.monitor.demo_traffic import (
    man_page_prompts,
    python_doc_prompts,
    retrieval_scorer,
    traffic_records,
)
from tasks.shared.settings import Settings, get_settings

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)
NAMES = ("reference", "same", "man-en", "man-de")


def memoized(embedder) -> Callable[[Sequence[str]], np.ndarray]:
    """The real embedder, each distinct text encoded once per test session."""
    cache: dict[str, np.ndarray] = {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            vectors = embedder.encode(new, batch_size=64, normalize_embeddings=True)
            cache.update(zip(new, vectors, strict=True))
        return np.stack([cache[t] for t in texts])

    return embed


@dataclass
class DriftWorld:
    settings: Settings
    embed: Callable[[Sequence[str]], np.ndarray]
    snapshot: str
    prompts: dict[str, list[str]]

    def day(self, name: str) -> tuple[datetime, datetime]:
        start = DAY0 + timedelta(days=NAMES.index(name))
        return start, start + timedelta(days=1)


@contextmanager
def drift_world(
    root: Path, embedder, size: int = 120, names: Sequence[str] = NAMES, seed: int = 0
) -> Iterator[DriftWorld]:
    """The windows `names`, `size` requests each, and everything else under `root`, with
    LLMOPS_HOME pointing there while it is in use."""
    rng = random.Random(seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_HOME", str(root / "state"))
        settings = get_settings()
        docs = root / "docs"
        docs.mkdir()
        for name in sorted(topics):
            (docs / f"{name}.txt").write_text(topics[name])
        snapshot = ingest_folder(docs, IngestParams(), settings).snapshot_id
        python = rng.sample(python_doc_prompts(), 2 * size)
        prompts = {"reference": python[:size], "same": python[size:]}
        for name in {"man-en", "man-de"} & set(names):
            prompts[name] = rng.sample(man_page_prompts(name.removeprefix("man-")), size)
        paragraphs = [
            p
            for name in sorted(topics)
            for p in re.split(r"\n\s*\n", topics[name])
            if len(p.split()) >= 20
        ]
        embed = memoized(embedder)
        scorer = retrieval_scorer(embed, rng.sample(paragraphs, 100))
        with RequestLog(settings.home / "requests") as log:
            for name in names:
                start = DAY0 + timedelta(days=NAMES.index(name))
                for record in traffic_records(
                    prompts[name],
                    start,
                    timedelta(hours=20),
                    rng,
                    versions=("1", "2"),
                    sources=scorer,
                ):
                    log.append(record)
        yield DriftWorld(settings, embed, snapshot, {n: prompts[n] for n in names})
