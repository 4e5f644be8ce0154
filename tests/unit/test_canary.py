import math

import pytest

from tasks.core.canary import (
    CanaryThresholds,
    VersionStats,
    canary_weights,
    decide_step,
    plan_steps,
)
from tasks.core.paired import Verdict
from tasks.core.routing import choose_version

pytestmark = pytest.mark.unit

NAN = math.nan
T = CanaryThresholds()  # 1 point of errors, x1.5 p95, 2% quality, 20 requests


def stats(requests: int = 100, errors: int = 0, p95: float = 100.0, quality=10.0) -> VersionStats:
    return VersionStats(requests, errors, p95, quality)


@pytest.mark.parametrize(
    ("champion", "challenger", "last", "action", "phrases"),
    [
        # Too few requests on either side: wait, whatever the numbers say.
        (stats(19), stats(100), False, "wait", ["champion has 19 of 20"]),
        (stats(100), stats(0, p95=NAN), False, "wait", ["challenger has 0 of 20"]),
        (stats(5), stats(5, errors=5), True, "wait", ["champion has 5", "challenger has 5"]),
        # All within allowances: advance, or promote at the last step.
        (stats(), stats(), False, "advance", ["error rate within", "p95 latency within"]),
        (stats(), stats(), True, "promote", ["quality within"]),
        (stats(20), stats(20), False, "advance", ["error rate within"]),  # exactly enough
        # Error rate: challenger may exceed the champion by at most 1 point.
        (stats(errors=2), stats(errors=3), False, "advance", ["+1.00 points"]),  # at the limit
        (stats(errors=2), stats(errors=4), False, "rollback", ["error rate exceeds", "+2.00"]),
        (stats(errors=5), stats(errors=0), True, "promote", ["-5.00 points"]),  # better is fine
        # p95 latency: at most x1.5 the champion's.
        (stats(p95=100), stats(p95=150), False, "advance", ["x1.50, x1.50 allowed"]),
        (stats(p95=100), stats(p95=151), False, "rollback", ["p95 latency exceeds"]),
        (stats(p95=0), stats(p95=0), False, "advance", ["x1.00"]),
        (stats(p95=0), stats(p95=1), False, "rollback", ["p95 latency exceeds", "xinf"]),
        # Quality, lower is better: at most 2% worse, relative.
        (stats(quality=10), stats(quality=10.2), False, "advance", ["+2.00% worse"]),
        (stats(quality=10), stats(quality=10.3), False, "rollback", ["quality exceeds"]),
        (stats(quality=10), stats(quality=8), True, "promote", ["-20.00% worse"]),
        (stats(quality=-2.0), stats(quality=-1.9), False, "rollback", ["+5.00% worse"]),
        # Quality not measured: no quality check, and the reasons say so.
        (stats(quality=None), stats(quality=None), True, "promote", ["not measured for champion"]),
        (stats(quality=10), stats(quality=None), False, "advance", ["not measured for challenger"]),
        # NaN (or inf) once there are enough requests: never advance on numbers we cannot read.
        (stats(p95=NAN), stats(), False, "rollback", ["not comparable: champion p95"]),
        (stats(), stats(p95=math.inf), True, "rollback", ["not comparable: challenger p95"]),
        (stats(), stats(quality=NAN), True, "rollback", ["challenger quality is nan"]),
        (stats(quality=NAN), stats(), False, "rollback", ["champion quality is nan"]),
        # Several failures: all of them are reported.
        (
            stats(),
            stats(errors=50, p95=900, quality=20),
            False,
            "rollback",
            ["error rate exc", "p95 latency exc", "quality exc"],
        ),
    ],
)
def test_decide_step(
    champion: VersionStats, challenger: VersionStats, last: bool, action: str, phrases: list[str]
) -> None:
    verdict = decide_step(champion, challenger, T, last_step=last)
    assert verdict.action == action
    text = " | ".join(verdict.reasons)
    for phrase in phrases:
        assert phrase in text, text
    if action in ("advance", "promote") or (action == "rollback" and "comparable" not in text):
        assert len(verdict.reasons) == 3  # errors, latency, quality (or its absence)


def test_thresholds_are_honoured() -> None:
    strict = CanaryThresholds(max_error_rate_increase=0.0, max_p95_ratio=1.0, min_requests=50)
    assert decide_step(stats(40), stats(40), strict, False).action == "wait"
    assert decide_step(stats(), stats(errors=1), strict, False).action == "rollback"
    assert decide_step(stats(), stats(p95=101), strict, False).action == "rollback"
    loose = CanaryThresholds(max_quality_regression=0.5)
    assert decide_step(stats(), stats(quality=14.9), loose, True).action == "promote"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_error_rate_increase": -0.1}, "max_error_rate_increase"),
        ({"max_p95_ratio": 0}, "max_p95_ratio"),
        ({"max_p95_ratio": NAN}, "max_p95_ratio"),
        ({"max_quality_regression": math.inf}, "max_quality_regression"),
        ({"min_requests": 0}, "min_requests"),
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CanaryThresholds(**kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0, 1.0), "errors"),
        ((10, 11, 1.0), "errors"),
        ((10, -1, 1.0), "errors"),
        ((10, 0, -1.0), "p95_ms"),
    ],
)
def test_bad_stats_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VersionStats(*args)


def test_error_rate() -> None:
    assert stats(200, 3).error_rate == pytest.approx(0.015)
    assert VersionStats(0, 0, NAN).error_rate == 0.0


@pytest.mark.parametrize(
    ("weights", "steps"),
    [
        ([5, 25, 50, 100], [5.0, 25.0, 50.0, 100.0]),
        ([100], [100.0]),
        ((0.5, 99.5, 100), [0.5, 99.5, 100.0]),
    ],
)
def test_plan_steps(weights, steps: list[float]) -> None:
    assert plan_steps(weights) == steps


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([], "at least one step"),
        ([5, 25, 50], "last step must be 100"),
        ([0, 50, 100], r"\(0, 100\]"),
        ([5, 120], r"\(0, 100\]"),
        ([-5, 100], r"\(0, 100\]"),
        ([5, NAN, 100], r"\(0, 100\]"),
        ([25, 5, 100], "strictly increase"),
        ([5, 5, 100], "strictly increase"),
        ([5, 100, 100], "strictly increase"),
    ],
)
def test_plan_steps_refuses_bad_plans(weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_steps(weights)


def test_canary_weights_list_the_challenger_first_so_callers_only_move_onto_it() -> None:
    assert list(canary_weights(25)) == ["challenger", "champion"]
    assert canary_weights(25) == {"challenger": 25, "champion": 75}
    keys = [f"user-{i}" for i in range(2000)]
    before = {k: choose_version(canary_weights(5), key=k) for k in keys}
    after = {k: choose_version(canary_weights(50), key=k) for k in keys}
    assert all(after[k] == "challenger" for k in keys if before[k] == "challenger")
    for bad in (-1, 101, NAN):
        with pytest.raises(ValueError, match="challenger weight"):
            canary_weights(bad)


@pytest.mark.parametrize(
    ("challenger", "answers", "last", "action", "phrase"),
    [
        (stats(), Verdict.BETTER, False, "advance", "pinned questions: better"),
        (stats(), Verdict.BETTER, True, "promote", "pinned questions: better"),
        (stats(), Verdict.WORSE, False, "rollback", "pinned questions: worse"),
        # Inconclusive never promotes and never rolls back: it asks for more evidence.
        (stats(), Verdict.INCONCLUSIVE, True, "extend", "inconclusive, more needed"),
        (stats(), Verdict.INCONCLUSIVE, False, "extend", "inconclusive, more needed"),
        # Operational failures still roll back whatever the answers say.
        (stats(errors=50), Verdict.BETTER, False, "rollback", "error rate exceeds"),
        (stats(errors=50), Verdict.INCONCLUSIVE, True, "rollback", "error rate exceeds"),
        # Too few requests: wait before anything is judged.
        (stats(3), Verdict.WORSE, False, "wait", "challenger has 3 of 20"),
    ],
)
def test_answers_on_pinned_questions_decide_too(
    challenger: VersionStats, answers: Verdict, last: bool, action: str, phrase: str
) -> None:
    verdict = decide_step(stats(), challenger, T, last, answers)
    assert verdict.action == action
    assert phrase in " | ".join(verdict.reasons)
