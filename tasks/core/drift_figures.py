"""What a window of requests (or the training data) adds up to, and the measurements that the
two windows' figures give: one per check of `tasks.core.drift`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from tasks.core.drift import (
    DriftThresholds,
    Kind,
    Measurement,
    auc_se,
    jensenshannon_se,
    wasserstein_se,
)

LENGTHS: dict[str, Kind] = {
    "prompt_chars": "input",
    "prompt_tokens": "input",
    "response_chars": "output",
    "completion_tokens": "output",
}


@dataclass(frozen=True)
class VersionFigures:
    requests: int
    errors: int  # 5xx
    p95_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan


@dataclass(frozen=True)
class WindowFigures:
    """A window's rates. `traffic` False: passages of the training documents, which have no
    responses, latency, versions or retrieval."""

    rows: int
    oov_rate: float  # mean per-request share of words outside the training vocabulary
    unseen_rate: float  # share of word occurrences seen neither in training nor the reference
    non_ascii_share: float  # share of prompts with non-ASCII letters
    retrieval_rows: int = 0
    miss_rate: float = math.nan  # share of retrieving requests whose best hit scored low
    versions: Mapping[str, VersionFigures] = field(default_factory=dict)
    traffic: bool = True
    oov_se: float = 0.0  # standard error of oov_rate


def _rate(value: float) -> float | None:
    return None if math.isnan(value) else value


def _se(*shares: tuple[float, int]) -> float:
    """Standard error of a share (or of the difference of two) estimated from n rows."""
    return math.sqrt(sum(p * (1 - p) / n for p, n in shares if n and not math.isnan(p)))


def measurements(
    current: WindowFigures,
    reference: WindowFigures,
    distances: Mapping[str, float],
    embedding: tuple[float, int] | None,
    t: DriftThresholds,
    languages: int = 2,
) -> list[Measurement]:
    """Every check's measurement. `distances`: Evidently's drift distance per column (lengths,
    token counts, `language`); `embedding`: (classifier ROC AUC, rows embedded per window);
    `languages`: how many languages the windows hold (the language distance's noise grows
    with them)."""
    cur, ref, rows = current, reference, min(current.rows, reference.rows)
    training = not ref.traffic
    auc, embedded = embedding if embedding else (None, rows)
    length_se = wasserstein_se(cur.rows, ref.rows)
    oov_se = math.hypot(cur.oov_se, ref.oov_se)
    ascii_se = _se((cur.non_ascii_share, cur.rows), (ref.non_ascii_share, ref.rows))
    unseen = (None, None) if training else (_rate(cur.unseen_rate), _rate(ref.unseen_rate))
    out = [
        Measurement(
            "prompt embeddings",
            "input",
            "at_least",
            auc,
            None,
            t.embedding_auc,
            embedded,
            "embedding drift is switched off",
            auc_se(embedded, embedded),
        ),
        Measurement(
            "language",
            "input",
            "at_least",
            distances.get("language"),
            None,
            t.language_distance,
            rows,
            "",
            jensenshannon_se(cur.rows, ref.rows, languages),
        ),
        Measurement(
            "OOV rate",
            "input",
            "increase",
            _rate(cur.oov_rate),
            _rate(ref.oov_rate),
            t.oov_increase,
            rows,
            "no training vocabulary (no ingest snapshot)",
            oov_se,
        ),
        Measurement(
            "non-ASCII share",
            "input",
            "increase",
            cur.non_ascii_share,
            ref.non_ascii_share,
            t.non_ascii_increase,
            rows,
            se=ascii_se,
        ),
        Measurement(
            "never-seen words",
            "input",
            "increase",
            *unseen,
            t.unseen_increase,
            rows,
            "the OOV rate says it when the reference is the training data",
        ),
    ]
    for column, kind in LENGTHS.items():
        value = None if training else distances.get(column)
        note = "the training data has no requests" if training else "not in both windows"
        name = column.replace("_", " ")
        out.append(
            Measurement(
                name, kind, "at_least", value, None, t.length_distance, rows, note, length_se
            )
        )
    out.append(_miss(cur, ref, t))
    out += _service(cur, ref, t)
    return out


def _miss(cur: WindowFigures, ref: WindowFigures, t: DriftThresholds) -> Measurement:
    name, now, before = "retrieval miss rate", (cur.miss_rate, cur.retrieval_rows), None
    if ref.retrieval_rows:
        before = (ref.miss_rate, ref.retrieval_rows)
        rows = min(cur.retrieval_rows, ref.retrieval_rows)
        return Measurement(
            name,
            "input",
            "increase",
            _rate(cur.miss_rate),
            _rate(ref.miss_rate),
            t.miss_increase,
            rows,
            se=_se(now, before),
        )
    # No retrieval in the reference (training data, or a period without RAG): absolute level.
    return Measurement(
        name,
        "input",
        "at_least",
        _rate(cur.miss_rate),
        None,
        t.max_miss_rate,
        cur.retrieval_rows,
        "no request retrieved",
        _se(now),
    )


def _service(
    current: WindowFigures, reference: WindowFigures, t: DriftThresholds
) -> list[Measurement]:
    out = []
    for version, now in sorted(current.versions.items()):
        before = reference.versions.get(version)
        errors, latency = f"error rate v{version}", f"p95 latency v{version}"
        if before is None:
            se = _se((now.error_rate, now.requests))
            out += [
                Measurement(
                    errors,
                    "service",
                    "at_least",
                    now.error_rate,
                    None,
                    t.max_error_rate,
                    now.requests,
                    se=se,
                ),
                Measurement(
                    latency,
                    "service",
                    "ratio",
                    None,
                    None,
                    t.p95_latency_ratio,
                    now.requests,
                    "the reference has no requests of this version",
                ),
            ]
            continue
        rows = min(now.requests, before.requests)
        se = _se((now.error_rate, now.requests), (before.error_rate, before.requests))
        out += [
            Measurement(
                errors,
                "service",
                "increase",
                now.error_rate,
                before.error_rate,
                t.error_rate_increase,
                rows,
                se=se,
            ),
            Measurement(
                latency,
                "service",
                "ratio",
                _rate(now.p95_ms),
                _rate(before.p95_ms),
                t.p95_latency_ratio,
                rows,
            ),
        ]
    return out
