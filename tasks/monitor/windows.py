"""The windows the drift monitor compares: requests read from the log, or passages of the
training documents, turned into per-request features and window figures."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.clients.request_log import read_requests
from tasks.core.drift import TimeRange
from tasks.core.drift_figures import VersionFigures, WindowFigures
from tasks.core.language import detect_language
from tasks.core.routing import SHADOW
from tasks.core.text_features import (
    best_score,
    document_frequency,
    non_ascii_share,
    oov_rate,
    sentences,
    unseen_share,
    vocabulary,
    words,
)
from tasks.shared import lake
from tasks.shared.settings import Settings

NUMERIC = [
    "prompt_chars",
    "prompt_tokens",
    "response_chars",
    "completion_tokens",
    "latency_ms",
    "oov_rate",
    "non_ascii",
    "best_score",
]
CATEGORICAL = ["language", "version", "failed"]


def requests_in(location: str | Path, window: TimeRange) -> pd.DataFrame:
    """The flushed requests of the log (a folder or an object-store URL) with start <= at <
    end, oldest first, less the shadow copies (no user got those answers). Records still in a
    writer's WAL (at most `log_flush_s`, 30 s by default) come in the next run."""
    frame = read_requests(location, since=window.start)
    served = (frame["at"] < pd.Timestamp(window.end)) & ~frame["route"].str.startswith(SHADOW)
    return frame[served].reset_index(drop=True)


@dataclass
class TrainingText:
    """The documents of an ingest snapshot and their words' document frequencies."""

    snapshot_id: str
    documents: pd.DataFrame  # doc_id, text
    frequency: Counter[str]

    @property
    def vocabulary(self) -> frozenset[str]:
        return vocabulary(self.frequency)


def load_training(
    settings: Settings, snapshot_id: str | None, documents: bool = False
) -> TrainingText | None:
    """The given snapshot, or the latest; None when nothing was ever ingested and no snapshot
    was asked for (the vocabulary checks are then not judged). Without `documents`, the word
    frequencies come from a cache per snapshot (snapshots never change), so a daily run does
    not read the whole lake again."""
    if snapshot_id is None:
        if not (settings.snapshots_dir / "LATEST").exists():
            return None
        snapshot_id = lake.latest_snapshot(settings.snapshots_dir)
    cache = settings.home / "reports" / "drift" / f"vocabulary-{snapshot_id}.json"
    empty = pd.DataFrame(columns=["doc_id", "text"])
    if not documents and cache.exists():
        return TrainingText(snapshot_id, empty, Counter(json.loads(cache.read_text())))
    members = lake.read_snapshot(settings.snapshots_dir, snapshot_id)
    frames = list(lake.iter_documents(settings.documents_dir, set(members["doc_id"])))
    docs = pd.concat(frames, ignore_index=True)[["doc_id", "text"]] if frames else empty
    docs = docs.sort_values("doc_id", ignore_index=True)
    frequency = document_frequency(docs["text"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp")
    tmp.write_text(json.dumps(frequency, ensure_ascii=False))
    tmp.replace(cache)
    return TrainingText(snapshot_id, docs, frequency)


def training_passages(training: TrainingText, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """Sentences of the training documents as a reference window (prompt column only), at
    most `max_rows`, drawn with a fixed seed."""
    rows = [s for text in training.documents["text"] for s in sentences(text)]
    if len(rows) > max_rows:
        rows = random.Random(seed).sample(rows, max_rows)
    return pd.DataFrame({"prompt": rows})


def request_features(
    frame: pd.DataFrame, known: Collection[str] | None
) -> tuple[pd.DataFrame, list[Counter[str]]]:
    """Per-request features (NUMERIC + CATEGORICAL columns; NaN where a window lacks the
    field, as passages lack responses) and each prompt's word counts."""
    counts, oov, non_ascii, language = [], [], [], []
    for text in frame["prompt"]:
        tokens = words(text)
        counts.append(Counter(tokens))
        oov.append(oov_rate(tokens, known) if known is not None else math.nan)
        non_ascii.append(non_ascii_share(text))
        language.append(detect_language(text))
    out = pd.DataFrame(index=frame.index)
    out["prompt_chars"] = frame["prompt"].str.len().astype(float)
    out["oov_rate"], out["non_ascii"], out["language"] = oov, non_ascii, language
    traffic = "response" in frame
    for column in ("prompt_tokens", "completion_tokens", "latency_ms"):
        out[column] = frame[column].astype(float) if traffic else math.nan
    out["response_chars"] = frame["response"].str.len().astype(float) if traffic else math.nan
    out["best_score"] = frame["sources"].map(_score) if traffic else math.nan
    out["version"] = frame["version"].astype(str) if traffic else None
    out["failed"] = (frame["status"] >= 500).map({True: "5xx", False: "ok"}) if traffic else None
    return out[NUMERIC + CATEGORICAL], counts


def _score(sources: str | None) -> float:
    try:
        return best_score(sources)
    except ValueError:  # the GX check on the log reports it; here it is just no score
        return math.nan


def unseen_rates(
    current: list[Counter[str]], reference: list[Counter[str]], known: Collection[str]
) -> tuple[float, float, Counter[str]]:
    """Share of the current window's word occurrences seen neither in `known` (training) nor in
    the reference window; the same for the reference's second half against its first half (the
    baseline that unchanged traffic shows); and the current window's word counts."""
    half = len(reference) // 2
    first, second = _total(reference[:half]), _total(reference[half:])
    everything = first + second
    now = _total(current)
    baseline = unseen_share(second, _Union(known, first))
    return unseen_share(now, _Union(known, everything)), baseline, now


def _total(counts: list[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in counts:  # in place: sum() would copy the growing total once per request
        total.update(c)
    return total


class _Union(Collection[str]):
    """`w in a or w in b` without copying a large vocabulary."""

    def __init__(self, a: Collection[str], b: Collection[str]) -> None:
        self.a, self.b = a, b

    def __contains__(self, word: object) -> bool:
        return word in self.a or word in self.b

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(set(self.a) | set(self.b))

    def __len__(self) -> int:
        return len(set(self.a) | set(self.b))


def window_figures(
    features: pd.DataFrame, unseen_rate: float, miss_score: float, traffic: bool
) -> WindowFigures:
    retrieved = features["best_score"].dropna()
    oov = features["oov_rate"].dropna()
    versions = {}
    if traffic:
        for version, rows in features.groupby("version"):
            latency = rows["latency_ms"].to_numpy(dtype=float)
            versions[str(version)] = VersionFigures(
                len(rows), int((rows["failed"] == "5xx").sum()), float(np.percentile(latency, 95))
            )
    return WindowFigures(
        rows=len(features),
        oov_rate=float(oov.mean()) if len(oov) else math.nan,
        oov_se=float(oov.std(ddof=1) / math.sqrt(len(oov))) if len(oov) > 1 else 0.0,
        unseen_rate=unseen_rate,
        non_ascii_share=float((features["non_ascii"] > 0).mean()) if len(features) else 0.0,
        retrieval_rows=len(retrieved),
        miss_rate=float((retrieved < miss_score).mean()) if len(retrieved) else math.nan,
        versions=versions,
        traffic=traffic,
    )


def sample_rows(n_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of at most `size` rows, drawn with a fixed seed."""
    if n_rows <= size:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size, replace=False))
