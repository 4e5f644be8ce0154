"""Canary steps: when the challenger's share of traffic grows, stays, or goes back to zero.

At each step the flow gathers per-version stats and asks `decide_step`. A step is judged only
once both versions have seen enough requests; then the challenger must not be worse than the
champion beyond the allowances on error rate, p95 latency and quality (lower is better, e.g.
held-out perplexity). Any check that fails, or a number that is NaN, rolls back. When both
versions also answered the same pinned questions, the paired verdict on those answers (the
quality contract) decides too: worse rolls back, inconclusive extends the step ("extend": more
questions, more time) and never promotes or rolls back on its own. When the step's requests
carry the rails' decisions, a challenger whose requests trip the rails significantly more often
than the champion's (beyond `max_rail_trip_increase`, at `rail_alpha`: tasks.core.rail_rates)
rolls back; an inconclusive rail comparison never fails a step (nor holds it back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from tasks.core.paired import Verdict
from tasks.core.rail_rates import RailCounts, RateComparison, RateVerdict, compare_trips

Action = Literal["wait", "advance", "promote", "rollback", "extend"]
# Exactly at an allowance passes; the slack keeps float noise (0.03 - 0.02) from failing it.
_SLACK = 1e-9


@dataclass(frozen=True)
class VersionStats:
    """What one version did during the step. `quality` None: not measured (no quality check);
    `rails` None: the rails' decisions not known (no rail check)."""

    requests: int
    errors: int
    p95_ms: float
    quality: float | None = None
    rails: RailCounts | None = None

    def __post_init__(self) -> None:
        if self.requests < 0 or not 0 <= self.errors <= self.requests:
            raise ValueError(
                f"need 0 <= errors <= requests, got {self.errors} errors of {self.requests}"
            )
        if self.p95_ms < 0:  # NaN passes here on purpose: decide_step rolls back on it
            raise ValueError(f"p95_ms must be >= 0, got {self.p95_ms}")

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CanaryThresholds:
    """How much worse than the champion the challenger may be: error rate in absolute points
    (0.01 = one percentage point), p95 latency as a ratio, quality as a relative regression,
    the share of requests that trip a rail in absolute points, significant at `rail_alpha`."""

    max_error_rate_increase: float = 0.01
    max_p95_ratio: float = 1.5
    max_quality_regression: float = 0.02
    min_requests: int = 20
    max_rail_trip_increase: float = 0.02
    rail_alpha: float = 0.05

    def __post_init__(self) -> None:
        names = ("max_error_rate_increase", "max_p95_ratio", "max_quality_regression")
        for name in (*names, "max_rail_trip_increase"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.max_p95_ratio <= 0:
            raise ValueError(f"max_p95_ratio must be > 0, got {self.max_p95_ratio}")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, got {self.min_requests}")
        if self.max_rail_trip_increase >= 1:
            raise ValueError(
                f"max_rail_trip_increase must be < 1, got {self.max_rail_trip_increase}"
            )
        if not 0 < self.rail_alpha < 0.5:
            raise ValueError(f"rail_alpha must be in (0, 0.5), got {self.rail_alpha}")


@dataclass(frozen=True)
class StepVerdict:
    action: Action
    reasons: tuple[str, ...]


def _ratio(challenger: float, champion: float) -> float:
    # A champion at 0 leaves no scale: equal is fine, anything above is infinitely worse.
    if champion > 0:
        return challenger / champion
    return 1.0 if challenger <= champion else math.inf


def _relative_increase(challenger: float, champion: float) -> float:
    """How much higher the challenger is, relative to the champion's magnitude (a signed score,
    such as a log-likelihood loss below zero, still regresses when it goes up)."""
    if champion != 0:
        return (challenger - champion) / abs(champion)
    return 0.0 if challenger <= 0 else math.inf


def _not_finite(champion: VersionStats, challenger: VersionStats) -> list[str]:
    bad = []
    for name, stats in (("champion", champion), ("challenger", challenger)):
        if not math.isfinite(stats.p95_ms):
            bad.append(f"{name} p95 latency is {stats.p95_ms}")
        if stats.quality is not None and not math.isfinite(stats.quality):
            bad.append(f"{name} quality is {stats.quality}")
    return bad


def _within(ok: bool) -> str:
    return "within" if ok else "exceeds"


def _check_errors(
    champion: VersionStats, challenger: VersionStats, t: CanaryThresholds
) -> tuple[bool, str]:
    increase = challenger.error_rate - champion.error_rate
    ok = increase <= t.max_error_rate_increase + _SLACK
    return ok, (
        f"error rate {_within(ok)} allowance: challenger {100 * challenger.error_rate:.2f}% "
        f"vs champion {100 * champion.error_rate:.2f}% ({100 * increase:+.2f} points, "
        f"{100 * t.max_error_rate_increase:.2f} allowed)"
    )


def _check_latency(
    champion: VersionStats, challenger: VersionStats, t: CanaryThresholds
) -> tuple[bool, str]:
    ratio = _ratio(challenger.p95_ms, champion.p95_ms)
    ok = ratio <= t.max_p95_ratio + _SLACK
    return ok, (
        f"p95 latency {_within(ok)} allowance: challenger {challenger.p95_ms:.1f} ms vs "
        f"champion {champion.p95_ms:.1f} ms (x{ratio:.2f}, x{t.max_p95_ratio:.2f} allowed)"
    )


def _check_quality(
    champion: VersionStats, challenger: VersionStats, t: CanaryThresholds
) -> tuple[bool, str]:
    if champion.quality is None or challenger.quality is None:
        missing = [
            n for n, s in (("champion", champion), ("challenger", challenger)) if s.quality is None
        ]
        return True, f"quality not checked: not measured for {' and '.join(missing)}"
    regression = _relative_increase(challenger.quality, champion.quality)
    ok = regression <= t.max_quality_regression + _SLACK
    return ok, (
        f"quality {_within(ok)} allowance: challenger {challenger.quality:.4f} vs champion "
        f"{champion.quality:.4f} (lower is better, {100 * regression:+.2f}% worse, "
        f"{100 * t.max_quality_regression:.2f}% allowed)"
    )


def _check_rails(
    champion: VersionStats, challenger: VersionStats, t: CanaryThresholds
) -> RateComparison | None:
    """The challenger's rail trip rate against the champion's (None: not known for both)."""
    if champion.rails is None or challenger.rails is None:
        return None
    return compare_trips(
        challenger.rails, champion.rails, t.max_rail_trip_increase, t.rail_alpha, t.min_requests
    )


def decide_step(
    champion: VersionStats,
    challenger: VersionStats,
    thresholds: CanaryThresholds,
    last_step: bool,
    answers: Verdict | None = None,
) -> StepVerdict:
    """The verdict for one canary step, with a reason for every check, passed or not.

    Waiting comes first: too few requests give no verdict, and their stats may well be NaN
    (a p95 over no samples), which must not roll back a step that has barely started.
    `last_step`: the step judged is the last one where both versions serve, so "promote" (give
    the challenger 100% and the champion alias) replaces "advance"; at 100% the champion gets
    no traffic and there would be nothing to compare. `answers`: the paired verdict on the
    pinned questions (None: not measured), judged once the operational checks pass. The rail
    comparison (when both versions' decisions are known) adds its reason; worse rolls back.
    """
    t = thresholds
    short = [
        f"{name} has {s.requests} of {t.min_requests} requests needed"
        for name, s in (("champion", champion), ("challenger", challenger))
        if s.requests < t.min_requests
    ]
    if short:
        return StepVerdict("wait", tuple(short))
    broken = _not_finite(champion, challenger)
    if broken:
        return StepVerdict("rollback", tuple(f"not comparable: {b}" for b in broken))

    checks = [
        _check_errors(champion, challenger, t),
        _check_latency(champion, challenger, t),
        _check_quality(champion, challenger, t),
    ]
    rails = _check_rails(champion, challenger, t)
    if rails is not None:
        checks.append((rails.verdict is not RateVerdict.WORSE, rails.reason))
    reasons = tuple(reason for _, reason in checks)
    if not all(ok for ok, _ in checks):
        return StepVerdict("rollback", reasons)
    if answers is Verdict.WORSE:
        return StepVerdict("rollback", (*reasons, "answers on the pinned questions: worse"))
    if answers is Verdict.INCONCLUSIVE:
        return StepVerdict(
            "extend", (*reasons, "answers on the pinned questions: inconclusive, more needed")
        )
    said = () if answers is None else (f"answers on the pinned questions: {answers}",)
    return StepVerdict("promote" if last_step else "advance", (*reasons, *said))


def plan_steps(weights: Sequence[float]) -> list[float]:
    """The challenger's weights (percent) step by step: strictly increasing in (0, 100], ending
    at 100, where the challenger takes all traffic and is promoted. Every step but the last is
    judged; the verdict of the one before 100 is asked with `last_step=True`."""
    steps = [float(w) for w in weights]
    if not steps:
        raise ValueError("a canary needs at least one step")
    for w in steps:
        if not (math.isfinite(w) and 0 < w <= 100):
            raise ValueError(f"step weights must be in (0, 100], got {w} in {steps}")
    for before, after in pairwise(steps):
        if after <= before:
            raise ValueError(f"step weights must strictly increase, got {after} after {before}")
    if steps[-1] != 100:
        raise ValueError(f"the last step must be 100, got {steps[-1]}")
    return steps


def canary_weights(challenger_percent: float) -> dict[str, float]:
    """Router weights for a step, challenger listed first: with keyed routing walking weights in
    order, a growing challenger share only moves callers onto it (see tasks.core.routing)."""
    if not (math.isfinite(challenger_percent) and 0 <= challenger_percent <= 100):
        raise ValueError(f"challenger weight must be in [0, 100], got {challenger_percent}")
    return {"challenger": challenger_percent, "champion": 100.0 - challenger_percent}
