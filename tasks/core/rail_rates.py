"""Rail trip rates: how often requests tripped the serving rails, and whether one set of requests
(the challenger's, the current window's) trips them significantly more than another (the
champion's, the reference window's).

A request *trips* the rails when at least one rail acted on it: the input rail blocked it, the
retrieval rail dropped or neutralised a passage, the output rail redacted or blocked the answer.
Rates are per request (a request with three decisions counts once), so they are proportions
and two of them can be compared as such; the figures also say which rail and which action.

The rule is Newcombe's hybrid score interval for the difference of two independent proportions
(method 10 of Newcombe, Statistics in Medicine 1998), one-sided at 1 - alpha: with p1 = x1/n1
(the candidate), p0 = x0/n0 (the baseline), d = p1 - p0, and each rate's Wilson score bounds
(l, u) at z = the (1 - alpha) quantile of the normal,

    low  = d - sqrt((p1 - l1)^2 + (u0 - p0)^2)
    high = d + sqrt((u1 - p1)^2 + (p0 - l0)^2)

Worse when low > allowance (the increase exceeds the allowance with confidence 1 - alpha: a
one-sided test of "increase <= allowance" at level alpha); not worse when high <= allowance;
otherwise inconclusive, and inconclusive never fails anything: it asks for more traffic.
Why this rule: at the counts a canary step sees (tens of requests a version) and at rates near
zero, the usual Wald test (d over its standard error) breaks: a side with no trips has a
standard error of 0, so 3 trips in 20 against none in 20 would look certain. Wilson bounds stay
inside [0, 1] and are never of zero width, and Newcombe's combination holds its level at small
counts: summed exactly over every outcome, with the true increase at the allowance, the worst
case (over the baseline rate, 0 to 50%) of a false "worse" at alpha 0.05 is 5.4% at 20 requests
a side, 5.2% at 50, 5.1% at 200 (6.9% at 10); at alpha 0.01, 1.2% at 20 and 1.0% at 200. It
sits between Fisher's exact test and its mid-p: 3 trips in 10 against 0 in 10 has a low end of
+2.6 points at alpha 0.05 (Fisher's one-sided p 0.105, mid-p 0.053), and 2 in 20 against 0 in 20
is inconclusive. Unlike an exact test it takes an allowance; it needs no resampling
(deterministic and fast) and no library beyond the standard one.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from statistics import NormalDist

RAILS = ("input", "retrieval", "output")
TRIPS = ("block", "redact", "drop", "neutralise")  # actions that count as a trip
_SLACK = 1e-9  # exactly at the allowance is not worse; keeps float noise from deciding

Pair = tuple[str, str]  # (rail, action)


def trips_of(value: object) -> frozenset[Pair]:
    """The (rail, action) pairs that tripped in one request's `rails` column: JSON text of
    [{rail, action, reason}, ...]; null, NaN, "" and "[]" are none. Actions that are not a
    trip are ignored; text that is not such a list is a ValueError (the log refuses it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return frozenset()
    if not isinstance(value, str):
        raise ValueError(f"rails must be JSON text, got {type(value).__name__}")
    if not value.strip():
        return frozenset()
    try:
        decisions = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"rails is not JSON text: {error}") from None
    if not isinstance(decisions, list) or not all(isinstance(d, dict) for d in decisions):
        raise ValueError(f"rails must be a list of {{rail, action, reason}}: {value!r}")
    return frozenset(
        (str(d.get("rail")), str(d.get("action"))) for d in decisions if d.get("action") in TRIPS
    )


@dataclass(frozen=True)
class RailCounts:
    """Requests, and how many tripped each combination of (rail, action) pairs: every count of
    requests with some trip (any, per rail, per action, per pair) follows from these."""

    requests: int
    patterns: Mapping[frozenset[Pair], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tripped = sum(self.patterns.values())
        if frozenset() in self.patterns or any(n < 0 for n in self.patterns.values()):
            raise ValueError("patterns count requests with at least one trip, each at least 0")
        if self.requests < 0 or tripped > self.requests:
            raise ValueError(f"need 0 <= tripped <= requests, got {tripped} of {self.requests}")

    def matching(
        self, rails: Collection[str] | None = None, actions: Collection[str] | None = None
    ) -> int:
        """Requests with at least one trip of one of `rails` by one of `actions` (None: any)."""
        return sum(
            n
            for pattern, n in self.patterns.items()
            if any(
                (rails is None or r in rails) and (actions is None or a in actions)
                for r, a in pattern
            )
        )

    @property
    def tripped(self) -> int:
        return sum(self.patterns.values())

    def by_rail(self) -> dict[str, int]:
        return {rail: self.matching(rails={rail}) for rail in RAILS}

    def by_action(self) -> dict[str, int]:
        return {action: self.matching(actions={action}) for action in TRIPS}

    def by_pair(self) -> dict[str, int]:
        """Requests per "rail:action" that occurred (e.g. {"input:block": 3})."""
        pairs = Counter[str]()
        for pattern, n in self.patterns.items():
            for rail, action in pattern:
                pairs[f"{rail}:{action}"] += n
        return dict(sorted(pairs.items()))

    def rate(self, count: int) -> float:
        return count / self.requests if self.requests else math.nan


def count_trips(column: Iterable[object]) -> RailCounts:
    """The counts of a `rails` column, one value per request."""
    requests, patterns = 0, Counter[frozenset[Pair]]()
    for value in column:
        requests += 1
        pattern = trips_of(value)
        if pattern:
            patterns[pattern] += 1
    return RailCounts(requests, dict(patterns))


class RateVerdict(StrEnum):
    WORSE = "worse"
    NOT_WORSE = "not worse"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class RateComparison:
    """One rate of a candidate against a baseline: the counts, the one-sided interval of the
    increase (None when not judged: too few requests), the verdict and a sentence saying it."""

    name: str
    verdict: RateVerdict
    hits: int
    requests: int
    base_hits: int
    base_requests: int
    allowance: float
    alpha: float
    low: float | None
    high: float | None
    reason: str

    @property
    def judged(self) -> bool:
        return self.low is not None

    @property
    def difference(self) -> float | None:
        if not (self.requests and self.base_requests):
            return None
        return self.hits / self.requests - self.base_hits / self.base_requests


def wilson(hits: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of hits / n (both ends at z)."""
    p, z2 = hits / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def increase_interval(
    hits: int, n: int, base_hits: int, base_n: int, alpha: float
) -> tuple[float, float]:
    """Newcombe's hybrid score bounds of hits/n - base_hits/base_n, each one-sided at 1 - alpha."""
    z = NormalDist().inv_cdf(1 - alpha)
    p1, p0 = hits / n, base_hits / base_n
    l1, u1 = wilson(hits, n, z)
    l0, u0 = wilson(base_hits, base_n, z)
    d = p1 - p0
    return d - math.hypot(p1 - l1, u0 - p0), d + math.hypot(u1 - p1, p0 - l0)


def _share(hits: int, n: int) -> str:
    return f"{hits}/{n} ({100 * hits / n:.1f}%)" if n else f"{hits}/0"


def compare_rates(
    name: str,
    hits: int,
    requests: int,
    base_hits: int,
    base_requests: int,
    allowance: float,
    alpha: float,
    min_requests: int = 1,
    labels: tuple[str, str] = ("challenger", "champion"),
) -> RateComparison:
    """Is the candidate's rate (hits / requests) higher than the baseline's by more than
    `allowance` (absolute: 0.02 = 2 points)? See the module's docstring for the rule. Either
    side under `min_requests` (or with none) is inconclusive, never worse."""
    for what, x, n in (("candidate", hits, requests), ("baseline", base_hits, base_requests)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"{what}: need 0 <= hits <= requests, got {x} of {n}")
    if not (math.isfinite(allowance) and 0 <= allowance < 1):
        raise ValueError(f"allowance must be in [0, 1), got {allowance}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    new, old = labels
    figures = f"{new} {_share(hits, requests)} vs {old} {_share(base_hits, base_requests)}"
    counts = {
        "name": name,
        "hits": hits,
        "requests": requests,
        "base_hits": base_hits,
        "base_requests": base_requests,
        "allowance": allowance,
        "alpha": alpha,
    }
    if min(requests, base_requests) < max(min_requests, 1):
        why = "no traffic" if not (requests and base_requests) else "too few requests"
        sides = f"{new} has {requests}, {old} {base_requests}, {min_requests} needed a side"
        reason = f"{name} inconclusive, {why} ({sides}): {figures}"
        return RateComparison(
            verdict=RateVerdict.INCONCLUSIVE, low=None, high=None, reason=reason, **counts
        )
    low, high = increase_interval(hits, requests, base_hits, base_requests, alpha)
    if low > allowance + _SLACK:
        verdict = RateVerdict.WORSE
    elif high <= allowance + _SLACK:
        verdict = RateVerdict.NOT_WORSE
    else:
        verdict = RateVerdict.INCONCLUSIVE
    d = hits / requests - base_hits / base_requests
    reason = (
        f"{name} {verdict}: {figures}, {100 * d:+.1f} points "
        f"({100 * (1 - alpha):g}% one-sided interval {100 * low:+.1f} .. {100 * high:+.1f}, "
        f"{100 * allowance:+.1f} allowed)"
    )
    return RateComparison(verdict=verdict, low=low, high=high, reason=reason, **counts)


def compare_trips(
    candidate: RailCounts,
    baseline: RailCounts,
    allowance: float,
    alpha: float,
    min_requests: int = 1,
    labels: tuple[str, str] = ("challenger", "champion"),
) -> RateComparison:
    """Requests that tripped any rail, candidate against baseline, the reason ending with the
    trips per rail (which rail made the difference)."""
    found = compare_rates(
        "rail trips",
        candidate.tripped,
        candidate.requests,
        baseline.tripped,
        baseline.requests,
        allowance,
        alpha,
        min_requests,
        labels,
    )
    now, before = candidate.by_rail(), baseline.by_rail()
    per_rail = ", ".join(f"{r} {now[r]} vs {before[r]}" for r in RAILS)
    return replace(found, reason=f"{found.reason}; per rail {per_rail}")
