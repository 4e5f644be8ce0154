"""The rail-rate comparison (tasks.core.rail_rates): trips counted per request from the request
log's `rails` column, and Newcombe's one-sided score interval giving worse, not worse or
inconclusive; and the canary's step verdict that uses it."""

import json
import math

import pytest

from tasks.core.canary import CanaryThresholds, VersionStats, decide_step
from tasks.core.rail_rates import (
    RailCounts,
    RateVerdict,
    compare_rates,
    compare_trips,
    count_trips,
    increase_interval,
    trips_of,
)

pytestmark = pytest.mark.unit


def rails(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"rail": r, "action": a, "reason": "injection:x"} for r, a in pairs])


def test_a_request_trips_once_however_many_decisions_it_carries() -> None:
    column = [
        None,
        math.nan,
        "",
        "[]",
        rails(("input", "block")),
        rails(("input", "block"), ("input", "block")),  # two kinds found: one request
        rails(("retrieval", "drop"), ("output", "redact")),
        rails(("retrieval", "neutralise")),
    ]
    counts = count_trips(column)
    assert (counts.requests, counts.tripped) == (8, 4)
    assert counts.by_rail() == {"input": 2, "retrieval": 2, "output": 1}
    assert counts.by_action() == {"block": 2, "redact": 1, "drop": 1, "neutralise": 1}
    assert counts.by_pair() == {
        "input:block": 2,
        "output:redact": 1,
        "retrieval:drop": 1,
        "retrieval:neutralise": 1,
    }
    assert counts.matching(rails={"input", "output"}, actions={"block"}) == 2
    assert counts.rate(counts.tripped) == 0.5
    assert math.isnan(RailCounts(0).rate(0))


def test_what_is_not_a_list_of_decisions_is_refused() -> None:
    assert trips_of(json.dumps([{"rail": "input", "action": "allow", "reason": "x"}])) == set()
    for bad in ("{not json", '{"rail": "input"}', "[1]"):
        with pytest.raises(ValueError, match="rails"):
            trips_of(bad)
    with pytest.raises(ValueError, match="tripped <= requests"):
        RailCounts(1, {frozenset({("input", "block")}): 2})


def test_clearly_worse() -> None:
    found = compare_rates("rail trips", 30, 100, 2, 100, allowance=0.02, alpha=0.05)
    assert found.verdict is RateVerdict.WORSE
    assert found.low is not None and found.low > 0.02
    assert found.difference == pytest.approx(0.28)
    assert "rail trips worse: challenger 30/100 (30.0%) vs champion 2/100 (2.0%)" in found.reason


def test_clearly_not_worse() -> None:
    found = compare_rates("rail trips", 2, 500, 3, 500, allowance=0.02, alpha=0.05)
    assert found.verdict is RateVerdict.NOT_WORSE
    assert found.high is not None and found.high <= 0.02
    assert "not worse" in found.reason


@pytest.mark.parametrize(
    ("hits", "n", "base_hits", "base_n"),
    [(2, 20, 0, 20), (0, 20, 0, 20), (3, 10, 1, 10), (1, 5, 0, 5)],
)
def test_small_counts_are_inconclusive(hits: int, n: int, base_hits: int, base_n: int) -> None:
    """A Wald test would call 2 in 20 against 0 in 20 certain (the champion's standard error is
    0); the score interval does not."""
    found = compare_rates("rail trips", hits, n, base_hits, base_n, allowance=0.0, alpha=0.05)
    assert found.verdict is RateVerdict.INCONCLUSIVE
    assert found.low is not None and found.low <= 0 < found.high


def test_no_traffic_or_too_little_is_inconclusive_and_not_judged() -> None:
    none = compare_rates("rail trips", 0, 0, 0, 0, 0.02, 0.05)
    assert none.verdict is RateVerdict.INCONCLUSIVE and not none.judged
    assert "no traffic" in none.reason and none.difference is None
    few = compare_rates("rail trips", 10, 10, 0, 10, 0.02, 0.05, min_requests=20)
    assert few.verdict is RateVerdict.INCONCLUSIVE and not few.judged
    assert "too few requests" in few.reason


def test_the_interval_stays_in_bounds_and_narrows_with_traffic() -> None:
    wide = increase_interval(1, 10, 1, 10, 0.05)
    narrow = increase_interval(100, 1000, 100, 1000, 0.05)
    assert -1 <= wide[0] < narrow[0] <= 0 <= narrow[1] < wide[1] <= 1
    assert increase_interval(10, 10, 0, 10, 0.05)[1] <= 1.0
    for bad in ({"allowance": -0.1}, {"allowance": 1.0}, {"alpha": 0.0}, {"alpha": 0.6}):
        with pytest.raises(ValueError):
            compare_rates("x", 1, 10, 1, 10, **({"allowance": 0.0, "alpha": 0.05} | bad))
    with pytest.raises(ValueError, match="hits <= requests"):
        compare_rates("x", 11, 10, 1, 10, 0.0, 0.05)


def test_the_trips_reason_names_each_rail() -> None:
    challenger = count_trips([rails(("input", "block"))] * 15 + [None] * 5)
    champion = count_trips([None] * 19 + [rails(("output", "redact"))])
    found = compare_trips(challenger, champion, 0.02, 0.05, min_requests=20)
    assert found.verdict is RateVerdict.WORSE
    assert found.reason.endswith("per rail input 15 vs 0, retrieval 0 vs 0, output 0 vs 1")


def stats(requests: int = 40, trips: int = 0) -> VersionStats:
    column = [rails(("input", "block"))] * trips + [None] * (requests - trips)
    return VersionStats(requests, 0, 100.0, None, count_trips(column))


def test_a_challenger_that_trips_the_rails_far_more_rolls_back() -> None:
    verdict = decide_step(stats(trips=1), stats(trips=20), CanaryThresholds(), last_step=False)
    assert verdict.action == "rollback"
    assert any(r.startswith("rail trips worse") for r in verdict.reasons), verdict.reasons


def test_an_inconclusive_rail_comparison_never_fails_a_step() -> None:
    verdict = decide_step(stats(trips=0), stats(trips=2), CanaryThresholds(), last_step=True)
    assert verdict.action == "promote"
    assert any(r.startswith("rail trips inconclusive") for r in verdict.reasons)
    unknown = VersionStats(40, 0, 100.0)  # no rails column: no rail check, no rail reason
    plain = decide_step(unknown, stats(trips=20), CanaryThresholds(), last_step=False)
    assert plain.action == "advance" and not any("rail" in r for r in plain.reasons)


@pytest.mark.parametrize(
    "bad", [{"max_rail_trip_increase": -0.01}, {"max_rail_trip_increase": 1.0}, {"rail_alpha": 0}]
)
def test_rail_thresholds_are_checked(bad: dict) -> None:
    with pytest.raises(ValueError):
        CanaryThresholds(**bad)
