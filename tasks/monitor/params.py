"""What the drift monitor takes and hands on: parameters (windows, thresholds), the report,
and its markdown summary."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tasks.clients.embedder import EMBEDDING_MODEL
from tasks.clients.registry import MODEL_NAME
from tasks.core.drift import Kind
from tasks.core.promotion import REGISTERED_MODEL
from tasks.monitor.feedback import FeedbackSummary, feedback_markdown
from tasks.monitor.log_checks import LogCheck
from tasks.monitor.rail_drift import RailDriftParams, RailSummary, rails_markdown

DRIFT_EVENT = "llmops.drift.detected"


def model_resource(model_name: str) -> str:
    """The event resource id of a model, which the retraining trigger matches."""
    return f"llmops.model.{model_name}"


class CurrentWindowParams(BaseModel):
    """The requests to judge."""

    start: datetime | None = Field(
        None, description="From (UTC when no zone is given); empty = `hours` before the end."
    )
    end: datetime | None = Field(None, description="Until (exclusive); empty = now.")
    hours: float = Field(24, gt=0, description="Length of the window when no start is given.")


class ReferenceWindowParams(BaseModel):
    """What the current window is compared with."""

    source: Literal["traffic", "training"] = Field(
        "traffic",
        description="A past period of the request log, or the training data (sentences of an "
        "ingest snapshot's documents: vocabulary, language and embedding checks only).",
    )
    start: datetime | None = Field(
        None, description="Traffic from (UTC when no zone is given); empty = `hours` before end."
    )
    end: datetime | None = Field(
        None, description="Traffic until (exclusive); empty = the current window's start."
    )
    hours: float = Field(168, gt=0, description="Traffic: length when no start is given.")
    snapshot_id: str | None = Field(
        None,
        description="Ingest snapshot of the training vocabulary (and training passages); "
        "empty = the latest.",
    )
    max_passages: int = Field(5000, ge=1, description="Training: sentences drawn at most.")


class ThresholdParams(BaseModel):
    """Past these, a check is drift (rates in absolute points: 0.05 = 5 points). Each figure
    must clear its threshold by 2.33 standard errors of its sampling noise, so small windows
    need larger shifts (tasks/core/drift.py)."""

    embedding_auc: float = Field(
        0.55,
        ge=0.5,
        le=1,
        description="ROC AUC of a classifier telling the windows' prompt embeddings apart "
        "(0.5 = indistinguishable; Evidently's default threshold).",
    )
    length_distance: float = Field(
        0.1,
        ge=0,
        description="Normed Wasserstein distance of prompt/response lengths and token counts.",
    )
    language_distance: float = Field(
        0.1, ge=0, le=1, description="Jensen-Shannon distance of the detected languages."
    )
    oov_increase: float = Field(
        0.05,
        ge=0,
        description="Rise of the mean share of prompt words outside the training vocabulary.",
    )
    unseen_increase: float = Field(
        0.03,
        ge=0,
        description="Rise of the share of words seen neither in training nor in the reference.",
    )
    non_ascii_increase: float = Field(
        0.1, ge=0, description="Rise of the share of prompts with non-ASCII letters."
    )
    miss_increase: float = Field(0.1, ge=0, description="Rise of the retrieval-miss rate.")
    max_miss_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Miss rate allowed when the reference has no retrieval to compare with.",
    )
    error_rate_increase: float = Field(0.02, ge=0, description="Rise of a version's 5xx rate.")
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="5xx rate allowed for a version the reference did not serve."
    )
    p95_latency_ratio: float = Field(
        1.5, gt=0, description="A version's p95 latency / its p95 in the reference."
    )


class OnlineEvalParams(BaseModel):
    """The scheduled evaluation of live answers (reference-free scorers of the contract)."""

    enabled: bool = Field(True, description="Score a sample of the window's answers.")
    sample: int = Field(500, ge=1, description="Answers scored per window (a seeded sample).")
    min_samples: int = Field(30, ge=2, description="Per window, before a drop is judged.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Of the bootstrap interval.")
    retrain: bool = Field(
        True, description="A significant drop emits the retraining event, as drift does."
    )


class MonitorParams(BaseModel):
    """Compare the current window of the request log with a reference; report what drifted."""

    model_name: str = Field(
        REGISTERED_MODEL,
        pattern=MODEL_NAME.pattern,
        description="The model whose traffic this is (names the event).",
    )
    current: CurrentWindowParams = Field(
        default_factory=CurrentWindowParams, description="The window judged (last 24 hours)."
    )
    reference: ReferenceWindowParams = Field(
        default_factory=ReferenceWindowParams,
        description="What it is compared with (the 7 days before it, or the training data).",
    )
    min_rows: int = Field(200, ge=1, description="Requests each window needs for a verdict.")
    min_group_rows: int = Field(
        50,
        ge=1,
        description="Requests a version, or the requests "
        "that retrieved, need for their own checks.",
    )
    thresholds: ThresholdParams = Field(
        default_factory=ThresholdParams, description="When a check counts as drift."
    )
    miss_score: float = Field(
        0.4,
        description="A request whose best retrieved chunk scores "
        "below this (cosine) is a retrieval miss.",
    )
    embedding_sample: int = Field(
        1000,
        ge=0,
        description="Prompts embedded per window (a random sample) for embedding drift; 0 = off.",
    )
    embedding_model: str = Field(EMBEDDING_MODEL, description="The data path's embedder.")
    embedding_map: bool = Field(
        True,
        description="Add Evidently's t-SNE map of the embedding "
        "sample to the HTML report (about 15 s on two cores).",
    )
    retrain_on: list[Kind] = Field(
        ["input"],
        description="Drift of these kinds emits the "
        "retraining event: input (prompts), output (responses), "
        "service (latency, errors).",
    )
    retrain_cooldown_hours: float = Field(
        24,
        ge=0,
        description="After a retraining event for this model, none again for this long (drift "
        "that lasts would otherwise start a retraining every run); 0 = every run.",
    )
    online: OnlineEvalParams = Field(
        default_factory=OnlineEvalParams, description="Live answers scored and compared."
    )
    rails: RailDriftParams = Field(
        default_factory=RailDriftParams, description="Block and retrieval-trip rates compared."
    )
    max_latency_ms: float = Field(
        600_000,
        gt=0,
        title="Longest plausible latency (ms)",
        description="Request-log check: latency range.",
    )
    seed: int = Field(0, description="Seed of the samples (embeddings, training passages).")


class CheckRow(BaseModel):
    name: str
    kind: str
    status: str  # drift | ok | not judged
    value: float | None
    threshold: float
    reason: str


class MonitorReport(BaseModel):
    model_name: str
    current_window: str
    reference_window: str  # a time range, or "training snapshot <id>"
    snapshot_id: str | None  # of the training vocabulary
    current_rows: int
    reference_rows: int
    embedded_rows: int
    status: str  # drift | no drift | insufficient data
    retrain: bool
    reasons: list[str]
    checks: list[CheckRow]
    log_checks: list[LogCheck]
    new_terms: list[tuple[str, int]]
    languages: dict[str, dict[str, float]]  # window -> language -> share (top 5)
    html: str | None
    embedding_html: str | None
    seconds: dict[str, float]  # stage -> seconds
    event_emitted: bool = False
    event_held_back: str | None = None  # when the event within the cooldown went out
    feedback: FeedbackSummary | None = None  # ratings given in the current window
    scores_path: str | None = None  # the live answers' scores, written beside the requests
    rails: RailSummary | None = None  # both windows' rail rates (None: not compared)

    @property
    def drifted(self) -> list[CheckRow]:
        return [c for c in self.checks if c.status == "drift"]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary_markdown(r: MonitorReport) -> str:
    """A short account for the Prefect UI: the verdict, what drifted, every check, the log."""
    if r.status == "insufficient data":
        headline = "no verdict: too little data"
    elif r.retrain:
        headline = "drift; retraining asked for" + (
            " (event emitted)"
            if r.event_emitted
            else f" (not again: an event went out at {r.event_held_back}, within the cooldown)"
            if r.event_held_back
            else ""
        )
    else:
        headline = r.status if r.status == "no drift" else "drift (no retraining asked for)"
    checks = "\n".join(
        f"| {c.name} | {c.kind} | **{c.status}** | {_number(c.value)} | "
        f"{c.threshold:g} | {c.reason} |"
        for c in r.checks
    )
    failed = [c for c in r.log_checks if not c.success]
    log = (
        "all passed"
        if r.log_checks and not failed
        else "no rows to check"
        if not r.log_checks
        else "; ".join(f"{c.reason}: {c.unexpected} row(s)" for c in failed)
    )
    terms = ", ".join(f"{w} ({n})" for w, n in r.new_terms) or "none"
    langs = "; ".join(
        f"{w}: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        for w, shares in r.languages.items()
    )
    links = "\n".join(f"- `{p}`" for p in (r.html, r.embedding_html) if p) or "- none (no verdict)"
    return (
        f"# Drift of {r.model_name}: {headline}\n\n"
        f"Current {r.current_window} ({r.current_rows} requests) against {r.reference_window} "
        f"({r.reference_rows} rows); {r.embedded_rows} prompts a side embedded. "
        f"Training vocabulary: snapshot `{r.snapshot_id or 'none'}`.\n\n"
        + "".join(f"- {reason}\n" for reason in r.reasons)
        + "\n| check | kind | status | value | threshold | detail |\n|---|---|---|---:|---:|---|\n"
        + checks
        + f"\n\nRequest-log checks (Great Expectations): {log}\n\n"
        f"New words in the current window: {terms}\n\nLanguages: {langs or 'n/a'}\n\n"
        + (feedback_markdown(r.feedback) + "\n" if r.feedback else "")
        + (rails_markdown(r.rails) + "\n" if r.rails else "")
        + f"Evidently reports:\n{links}\n\n"
        f"Time: {', '.join(f'{k} {v:.1f} s' for k, v in r.seconds.items()) or 'n/a'}\n"
    )
