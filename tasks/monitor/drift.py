"""The drift monitor: the current window of the request log against a reference (past traffic
or the training data), checked by Great Expectations, compared by Evidently, judged by
`tasks.core.drift`, reported as HTML and markdown, and announced as a Prefect event when the
drift is of a kind that retraining answers."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core.drift import (
    DriftThresholds,
    TimeRange,
    current_window,
    decide,
    reference_window,
)
from tasks.core.drift_figures import WindowFigures, measurements
from tasks.core.text_features import new_terms, vocabulary
from tasks.monitor.evidently import embedding_auc, embedding_report, feature_report, save_html
from tasks.monitor.feedback import FeedbackSummary, feedback_summary
from tasks.monitor.log_checks import LogCheck, check_request_log
from tasks.monitor.params import (
    CheckRow,
    MonitorParams,
    MonitorReport,
)
from tasks.monitor.rail_drift import RailSummary, rail_summary
from tasks.monitor.windows import (
    TrainingText,
    load_training,
    request_features,
    requests_in,
    sample_rows,
    training_passages,
    unseen_rates,
    window_figures,
)
from tasks.shared.settings import Settings

Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Windows:
    """Both windows as loaded: requests, or training passages as the reference."""

    current: pd.DataFrame
    reference: pd.DataFrame
    current_label: str
    reference_label: str
    training: TrainingText | None  # the vocabulary (and passages' source)
    current_range: TimeRange | None = None  # the current window's [start, end)

    @property
    def traffic_reference(self) -> bool:
        return "response" in self.reference


def load_windows(settings: Settings, params: MonitorParams, now: datetime) -> Windows:
    c, r = params.current, params.reference
    current = current_window(now, c.start, c.end, c.hours)
    frame = requests_in(settings.requests_location, current)
    training = load_training(settings, r.snapshot_id, documents=r.source == "training")
    if r.source == "training":
        if training is None:
            raise FileNotFoundError(
                "reference 'training' needs an ingest snapshot: run the "
                "ingest_documents flow first, or compare with traffic"
            )
        passages = training_passages(training, r.max_passages, params.seed)
        label = f"training snapshot {training.snapshot_id}"
        return Windows(frame, passages, str(current), label, training, current)
    past = reference_window(current, r.start, r.end, r.hours)
    reference = requests_in(settings.requests_location, past)
    return Windows(frame, reference, str(current), str(past), training, current)


def default_embed(model: str) -> Embed:
    from tasks.clients.embedder import load_embedder

    def embed(texts: Sequence[str]) -> np.ndarray:
        return load_embedder(model).encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )

    return embed


def _languages(features: pd.DataFrame) -> dict[str, float]:
    shares = features["language"].value_counts(normalize=True).head(5)
    return {str(k): round(float(v), 3) for k, v in shares.items()}


class Stopwatch:
    """Seconds per stage, for the report (where a run's time went)."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds = dict(seconds or {})

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - started, 3)


@dataclass
class _Features:
    current: pd.DataFrame
    reference: pd.DataFrame
    figures: list[WindowFigures]
    counts: Counter[str]  # the current window's words
    seen: Collection[str]  # words of training and the reference


def _features(windows: Windows, miss_score: float) -> _Features:
    training, traffic = windows.training, windows.traffic_reference
    known = training.vocabulary if training else None
    current, current_words = request_features(windows.current, known)
    counts: Counter[str] = Counter()
    if traffic:
        reference, reference_words = request_features(windows.reference, known)
        unseen = unseen_rates(current_words, reference_words, known or frozenset())
        unseen_now, unseen_before, counts = unseen
        seen: Collection[str] = set().union(*reference_words) | (known or frozenset())
    else:  # leave-one-document-out: passages are judged as text their document did not teach
        assert training is not None
        reference, _ = request_features(windows.reference, vocabulary(training.frequency, 2))
        unseen_now = unseen_before = math.nan
        for c in current_words:
            counts.update(c)
        seen = known or frozenset()
    figures = [
        window_figures(current, unseen_now, miss_score, True),
        window_figures(reference, unseen_before, miss_score, traffic),
    ]
    return _Features(current, reference, figures, counts, seen)


def compare_windows(
    windows: Windows,
    params: MonitorParams,
    embed: Embed,
    log_checks: list[LogCheck],
    report_dir: Path | None,
    seconds: dict[str, float] | None = None,
    feedback: FeedbackSummary | None = None,
) -> MonitorReport:
    """Features, Evidently, the verdict; HTML under `report_dir` (None: no HTML). `seconds`:
    the stages before (loading, log checks), for the report; `feedback`, the current window's
    feedback, goes into the report as it is. The rails' block and retrieval-trip rates are
    compared too (`rail_drift`): a significant jump is drift."""
    clock = Stopwatch(seconds)
    t = DriftThresholds(**params.thresholds.model_dump())
    with clock("features (words, OOV, language, ...)"):
        f = _features(windows, params.miss_score)
    distances: dict[str, float] = {}
    embedding: tuple[float, int] | None = None
    html = embedding_html = None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Evidently needs rows on both sides; with too few there is no verdict anyway.
    if min(len(f.current), len(f.reference)) >= params.min_rows:
        with clock("Evidently report"):
            snapshot, distances = feature_report(f.reference, f.current, t, report_dir is not None)
            if report_dir is not None:
                html = str(save_html(snapshot, report_dir / f"drift-{stamp}.html"))
        if params.embedding_sample:
            with clock("embed the samples"):
                vectors = [embed(_sample(w, params)) for w in (windows.reference, windows.current)]
            with clock("embedding drift"):
                auc = embedding_auc(*vectors)
            embedding = None if auc is None else (auc, min(len(v) for v in vectors))
            if auc is not None and params.embedding_map and report_dir is not None:
                with clock("t-SNE map of the embeddings"):
                    snap = embedding_report(*vectors, t.embedding_auc)
                    path = report_dir / f"drift-{stamp}-embeddings.html"
                    embedding_html = str(save_html(snap, path))
    languages = pd.concat([f.current["language"], f.reference["language"]])
    shares = languages.value_counts(normalize=True)
    found = measurements(*f.figures, distances, embedding, t, int((shares >= 0.01).sum()))
    verdict = decide(
        len(f.current),
        len(f.reference),
        found,
        params.min_rows,
        params.min_group_rows,
        params.retrain_on,
    )
    report = MonitorReport(
        model_name=params.model_name,
        current_window=windows.current_label,
        reference_window=windows.reference_label,
        snapshot_id=windows.training.snapshot_id if windows.training else None,
        current_rows=len(f.current),
        reference_rows=len(f.reference),
        embedded_rows=embedding[1] if embedding else 0,
        status=verdict.status,
        retrain=verdict.retrain,
        reasons=list(verdict.reasons),
        checks=[CheckRow(**vars(c)) for c in verdict.checks],
        log_checks=log_checks,
        new_terms=new_terms(f.counts, f.seen),
        languages={"current": _languages(f.current), "reference": _languages(f.reference)},
        html=html,
        embedding_html=embedding_html,
        seconds=clock.seconds,
        feedback=feedback,
    )
    reference = windows.reference if windows.traffic_reference else None
    rails = rail_summary(windows.current, reference, params.rails)
    return with_rail_checks(report, rails, params.rails.retrain)


def with_rail_checks(
    report: MonitorReport, rails: RailSummary | None, retrain: bool
) -> MonitorReport:
    """The report with the rails' rates and checks; a jump counts as drift (and asks for
    retraining when `retrain`), so the drift event announces it (tasks.monitor.events)."""
    if rails is None:
        return report
    checks = [CheckRow(**c.model_dump()) for c in rails.checks]
    update: dict = {"checks": [*report.checks, *checks], "rails": rails}
    jumped = [f"rails jumped: {c.reason}" for c in rails.drifted]
    if jumped:
        kept = [] if report.status == "no drift" else report.reasons  # not "all within"
        update |= {"status": "drift", "retrain": report.retrain or retrain}
        update["reasons"] = [*kept, *jumped]
    return report.model_copy(update=update)


def _sample(frame: pd.DataFrame, params: MonitorParams) -> list[str]:
    rows = sample_rows(len(frame), params.embedding_sample, params.seed)
    return frame["prompt"].iloc[rows].tolist()


def report_dir(settings: Settings) -> Path:
    return settings.home / "reports" / "drift"


def monitor_requests(
    settings: Settings, params: MonitorParams, now: datetime, embed: Embed | None = None
) -> MonitorReport:
    """The whole run without Prefect (what the flow's tasks do, in order; no event)."""
    clock = Stopwatch()
    with clock("load both windows"):
        windows = load_windows(settings, params, now)
    with clock("request-log checks (Great Expectations)"):
        log_checks = check_request_log(windows.current, params.max_latency_ms)
    with clock("feedback"):
        feedback = window_feedback(settings, windows)
    embed = embed or default_embed(params.embedding_model)
    directory = report_dir(settings)
    return compare_windows(windows, params, embed, log_checks, directory, clock.seconds, feedback)


def window_feedback(settings: Settings, windows: Windows) -> FeedbackSummary | None:
    """The feedback given in the current window, with its requests; None without a window."""
    if windows.current_range is None:
        return None
    return feedback_summary(settings, windows.current_range)
