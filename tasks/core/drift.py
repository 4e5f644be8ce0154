"""Drift verdicts: which windows to compare, what each measurement says against its threshold,
and whether the whole is drift, no drift, or too little data to tell.

Every check is an effect size with a threshold (Evidently's defaults for its distances), not a
p-value: with a dozen checks a day, p-values at 0.05 would raise an alarm on most days of
unchanged traffic. But an effect size measured on a small window is noisy, so each must clear
its threshold by Z standard errors of what two samples of the same traffic show (`se`): counts
for rates, and for distances the spread measured on real same-distribution windows (Python docs
prompts; benchmarks/RESULTS.md, "Monitoring"). Small windows then need larger shifts, and large
windows detect small ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

Kind = Literal["input", "output", "service"]
Rule = Literal["at_least", "increase", "ratio"]
Status = Literal["drift", "ok", "not judged"]
KINDS: tuple[Kind, ...] = ("input", "output", "service")
_SLACK = 1e-9  # exactly at a threshold is drift; keeps float noise from deciding
# A rate from counts must clear its threshold by this many standard errors (one-sided 99 %):
# 2 errors in 100 requests against 0 in 100 is not yet an error-rate rise of 2 points.
Z = 2.33
# Normed Wasserstein distance of two same-distribution samples (prompt lengths, token counts):
# about WASSERSTEIN_SPREAD / sqrt(n_eff), so Z of them is its 99th percentile (measured:
# 0.28 at 200 rows a side, 0.12 at 1,000, 0.05 at 5,000). Jensen-Shannon distance of categories
# likewise: about JS_SPREAD * sqrt((k - 1) / n_eff) for k categories.
WASSERSTEIN_SPREAD = 1.2
JS_SPREAD = 0.33


def effective_rows(a: int, b: int) -> float:
    return a * b / (a + b) if a and b else 0.0


def wasserstein_se(a: int, b: int) -> float:
    n = effective_rows(a, b)
    return WASSERSTEIN_SPREAD / math.sqrt(n) if n else 0.0


def jensenshannon_se(a: int, b: int, categories: int) -> float:
    n = effective_rows(a, b)
    return JS_SPREAD * math.sqrt(max(categories - 1, 1) / n) if n else 0.0


def auc_se(a: int, b: int) -> float:
    """Standard error of a ROC AUC of 0.5 (Hanley-McNeil) when Evidently's classifier is tested
    on half of each window's rows."""
    a, b = a // 2, b // 2
    return math.sqrt((a + b + 1) / (12 * a * b)) if a and b else 0.0


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None or self.end.utcoffset() is None:
            raise ValueError("a window's start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts: {self.start} .. {self.end}")

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC"


def as_utc(moment: datetime) -> datetime:
    """A naive time is taken as UTC (what the Prefect form gives when no zone is typed)."""
    return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment.astimezone(UTC)


def current_window(
    now: datetime, start: datetime | None, end: datetime | None, hours: float
) -> TimeRange:
    """The current window: `start`..`end` as given, `end` defaulting to now and `start` to
    `hours` before `end`."""
    stop = as_utc(end) if end else as_utc(now)
    return TimeRange(as_utc(start) if start else stop - timedelta(hours=hours), stop)


def reference_window(
    current: TimeRange, start: datetime | None, end: datetime | None, hours: float
) -> TimeRange:
    """A past period of traffic: `end` defaulting to the current window's start, `start` to
    `hours` before `end`. It may not overlap the current window: shared requests would hide
    drift."""
    stop = as_utc(end) if end else current.start
    window = TimeRange(as_utc(start) if start else stop - timedelta(hours=hours), stop)
    if window.end > current.start:
        raise ValueError(f"the reference window ({window}) overlaps the current one ({current})")
    return window


@dataclass(frozen=True)
class DriftThresholds:
    """Past these, a check is drift. Distances are Evidently's (normed Wasserstein for numbers,
    Jensen-Shannon for categories); rates move in absolute points (0.05 = 5 points)."""

    embedding_auc: float = 0.55  # a classifier telling the windows' prompt embeddings apart
    length_distance: float = 0.1  # prompt/response lengths and token counts
    language_distance: float = 0.1
    oov_increase: float = 0.05
    unseen_increase: float = 0.03
    non_ascii_increase: float = 0.1
    miss_increase: float = 0.1
    max_miss_rate: float = 0.5  # when the reference has no retrieval to compare with
    error_rate_increase: float = 0.02
    max_error_rate: float = 0.05  # for a version the reference did not serve
    p95_latency_ratio: float = 1.5

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class Measurement:
    """One figure of both windows and the rule that judges it: `at_least` (current alone, e.g.
    a drift score), `increase` (current - reference) or `ratio` (current / reference)."""

    name: str
    kind: Kind
    rule: Rule
    current: float | None
    reference: float | None
    threshold: float
    rows: int  # the fewest rows behind either side
    note: str = ""  # why it cannot be measured, when current is None
    se: float = 0.0  # standard error of the value, for rates estimated from counts


@dataclass(frozen=True)
class Check:
    name: str
    kind: Kind
    status: Status
    value: float | None  # what was compared with the threshold
    threshold: float
    reason: str


def _value(m: Measurement) -> float | None:
    if m.current is None or (m.rule != "at_least" and m.reference is None):
        return None
    if m.rule == "at_least":
        return m.current
    if m.rule == "increase":
        return m.current - m.reference  # type: ignore[operator]
    if m.reference:  # ratio
        return m.current / m.reference
    return 1.0 if m.current <= m.reference else math.inf  # type: ignore[operator]


def _describe(m: Measurement, value: float) -> str:
    noise = f" ± {Z * m.se:.3f}" if m.se else ""
    if m.rule == "increase":
        return (
            f"{m.current:.3f} vs {m.reference:.3f} in the reference "
            f"({value:+.3f}{noise}, {m.threshold:+.3f} allowed)"
        )
    if m.rule == "ratio":
        return f"{m.current:.1f} vs {m.reference:.1f} (x{value:.2f}, x{m.threshold:.2f} allowed)"
    return f"{value:.3f}{noise} ({m.threshold:.3f} allowed)"


def judge(m: Measurement, min_rows: int) -> Check:
    """One measurement against its threshold; a rate with a standard error must clear it by
    Z of them. Too few rows or an unreadable number is not judged (and never drift: a verdict
    needs data)."""
    value = _value(m)
    if m.rows < min_rows:
        reason = f"{m.rows} rows, {min_rows} needed"
        return Check(m.name, m.kind, "not judged", value, m.threshold, reason)
    if value is None or math.isnan(value):
        return Check(m.name, m.kind, "not judged", value, m.threshold, m.note or "no value")
    drift = value - Z * m.se >= m.threshold - _SLACK
    return Check(
        m.name, m.kind, "drift" if drift else "ok", value, m.threshold, _describe(m, value)
    )


@dataclass(frozen=True)
class Verdict:
    status: Literal["drift", "no drift", "insufficient data"]
    retrain: bool  # a drifted check is of a kind that retraining answers
    checks: tuple[Check, ...]
    reasons: tuple[str, ...] = field(default=())

    @property
    def drifted(self) -> list[Check]:
        return [c for c in self.checks if c.status == "drift"]


def decide(
    current_rows: int,
    reference_rows: int,
    measurements: Iterable[Measurement],
    min_rows: int,
    min_group_rows: int,
    retrain_on: Sequence[Kind] = ("input",),
) -> Verdict:
    """The verdict over all measurements. Windows under `min_rows` give no verdict at all;
    a measurement over a part of a window (one version, the requests that retrieved) needs
    `min_group_rows`. Only drift of a kind in `retrain_on` asks for retraining: by default the
    prompts (input), since responses and latency change with every new model and would make
    retraining trigger itself."""
    measurements = list(measurements)
    short = [
        f"{side} window has {n} requests, {min_rows} needed for a verdict"
        for side, n in (("current", current_rows), ("reference", reference_rows))
        if n < min_rows
    ]
    if short:
        checks = tuple(
            Check(m.name, m.kind, "not judged", None, m.threshold, "too little data")
            for m in measurements
        )
        return Verdict("insufficient data", False, checks, tuple(short))
    checks = tuple(judge(m, min_group_rows) for m in measurements)
    drifted = [c for c in checks if c.status == "drift"]
    retrain = any(c.kind in retrain_on for c in drifted)
    reasons = tuple(f"{c.name} ({c.kind}): {c.reason}" for c in drifted)
    return Verdict(
        "drift" if drifted else "no drift",
        retrain,
        checks,
        reasons or ("every judged check is within its threshold",),
    )
