import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tasks.core.drift import (
    DriftThresholds,
    Measurement,
    TimeRange,
    Z,
    auc_se,
    current_window,
    decide,
    jensenshannon_se,
    judge,
    reference_window,
    wasserstein_se,
)

pytestmark = pytest.mark.unit

NAN = math.nan
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def m(rule="at_least", current=0.5, reference=None, threshold=0.6, rows=500, kind="input", se=0.0):
    return Measurement("x", kind, rule, current, reference, threshold, rows, "why not", se)


@pytest.mark.parametrize(
    ("measurement", "status", "phrase"),
    [
        # at_least: a drift score (AUC, distance) or an absolute level.
        (m(current=0.59), "ok", "0.590 (0.600 allowed)"),
        (m(current=0.6), "drift", "0.600"),  # exactly at the threshold is drift
        (m(current=0.99), "drift", "0.990"),
        # increase: current - reference, in absolute points.
        (m("increase", 0.12, 0.08, 0.05), "ok", "+0.040, +0.050 allowed"),
        (m("increase", 0.13, 0.08, 0.05), "drift", "+0.050"),
        (m("increase", 0.0, 0.5, 0.05), "ok", "-0.500"),  # a fall is not drift
        # ...and a rate from counts must clear the threshold by Z standard errors.
        (m("increase", 0.02, 0.0, 0.02, se=0.014), "ok", f"± {Z * 0.014:.3f}"),
        (m("increase", 0.2, 0.0, 0.02, se=0.014), "drift", "+0.200"),
        (m(current=0.06, threshold=0.05, se=0.01), "ok", "0.060 ± 0.023"),
        # ratio: current / reference; a reference of 0 leaves no scale.
        (m("ratio", 150, 100, 1.5), "drift", "x1.50"),
        (m("ratio", 149, 100, 1.5), "ok", "x1.49"),
        (m("ratio", 0, 0, 1.5), "ok", "x1.00"),
        (m("ratio", 1, 0, 1.5), "drift", "xinf"),
        # Nothing to judge: no value, NaN, no reference for a comparison, too few rows.
        (m(current=None), "not judged", "why not"),
        (m(current=NAN), "not judged", "why not"),
        (m("increase", 0.5, None, 0.05), "not judged", "why not"),
        (m(current=0.99, rows=49), "not judged", "49 rows, 50 needed"),
        (m(current=0.99, rows=50), "drift", "0.990"),
    ],
)
def test_judge(measurement: Measurement, status: str, phrase: str) -> None:
    check = judge(measurement, min_rows=50)
    assert check.status == status
    assert phrase in check.reason


@pytest.mark.parametrize(
    ("rows", "kinds", "retrain_on", "status", "retrain"),
    [
        ((500, 500), [], ("input",), "no drift", False),
        ((500, 500), ["input"], ("input",), "drift", True),
        # Output and service drift are reported, but by default do not ask for retraining:
        # a new model changes them, and retraining would trigger itself.
        ((500, 500), ["output", "service"], ("input",), "drift", False),
        ((500, 500), ["service"], ("input", "service"), "drift", True),
        # Too little data on either side: no verdict, whatever the numbers say.
        ((199, 500), ["input"], ("input",), "insufficient data", False),
        ((500, 0), ["input", "service"], ("input",), "insufficient data", False),
        ((0, 0), [], ("input",), "insufficient data", False),
    ],
)
def test_decide(rows, kinds, retrain_on, status, retrain) -> None:
    measurements = [m(current=0.1, kind="input"), m(current=0.1, kind="service")]
    measurements += [m(current=0.9, kind=k) for k in kinds]
    verdict = decide(*rows, measurements, 200, 50, retrain_on)
    assert (verdict.status, verdict.retrain) == (status, retrain)
    if status == "insufficient data":
        assert not verdict.drifted
        assert {c.status for c in verdict.checks} == {"not judged"}
        assert any("needed for a verdict" in r for r in verdict.reasons)
    else:
        assert len(verdict.drifted) == len(kinds)
        assert len(verdict.reasons) == max(1, len(kinds))


def test_windows_default_to_the_last_day_and_the_week_before() -> None:
    current = current_window(NOW, None, None, 24)
    assert current == TimeRange(NOW - timedelta(hours=24), NOW)
    reference = reference_window(current, None, None, 168)
    assert reference == TimeRange(NOW - timedelta(hours=24 + 168), NOW - timedelta(hours=24))


def test_windows_take_explicit_times_and_read_naive_ones_as_utc() -> None:
    naive = datetime(2026, 11, 20)
    current = current_window(NOW, naive, None, 24)
    assert current.start == datetime(2026, 11, 20, tzinfo=UTC) and current.end == NOW
    paris = timezone(timedelta(hours=1))
    reference = reference_window(current, None, datetime(2026, 11, 20, 1, tzinfo=paris), 2)
    assert reference.end == datetime(2026, 11, 20, tzinfo=UTC)
    assert reference.start == datetime(2026, 11, 19, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (NOW, NOW, "must end after it starts"),
        (NOW, NOW - timedelta(hours=1), "must end after it starts"),
    ],
)
def test_a_window_must_end_after_it_starts(start, end, message) -> None:
    with pytest.raises(ValueError, match=message):
        current_window(NOW, start, end, 24)


def test_the_reference_may_not_overlap_the_current_window() -> None:
    current = current_window(NOW, None, None, 24)
    with pytest.raises(ValueError, match="overlaps"):
        reference_window(current, None, NOW - timedelta(hours=1), 48)


@pytest.mark.parametrize("field", ["embedding_auc", "oov_increase", "p95_latency_ratio"])
@pytest.mark.parametrize("value", [-0.1, NAN, math.inf])
def test_thresholds_must_be_finite_and_not_negative(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        DriftThresholds(**{field: value})


@pytest.mark.parametrize(
    ("se", "expected"),
    [
        # Hanley-McNeil at AUC 0.5, the classifier tested on half of each window.
        (auc_se(200, 200), math.sqrt(201 / (12 * 100 * 100))),
        (auc_se(1, 200), 0.0),  # nothing to test on: no margin (and too few rows to judge)
        # Z of them is the measured 99th percentile: 0.28 at 200 rows a side, 0.12 at 1,000.
        (Z * wasserstein_se(200, 200), 0.28),
        (Z * wasserstein_se(1000, 1000), 0.125),
        (wasserstein_se(0, 10), 0.0),
        (Z * jensenshannon_se(200, 200, 3), 0.109),
        (jensenshannon_se(200, 200, 1), jensenshannon_se(200, 200, 2)),  # one category: as two
    ],
)
def test_noise_margins_shrink_with_the_windows(se: float, expected: float) -> None:
    assert se == pytest.approx(expected, abs=0.005)
