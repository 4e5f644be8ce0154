import math

import numpy as np
import pytest

from tasks.core import paired
from tasks.core.paired import (
    Comparison,
    Verdict,
    compare_independent,
    compare_paired,
    release_verdict,
)

pytestmark = pytest.mark.unit

BASE = [0.2, 0.4, 0.6, 0.8, 0.5] * 10  # the champion's scores on 50 questions


def shifted(diffs: list[float], base: list[float] = BASE) -> list[float]:
    return [b + d for b, d in zip(base, diffs, strict=True)]


UP = [0.1, 0.2, 0.3, 0.2, 0.1] * 10  # every question improves; mean +0.18
NOISE = [1.01, -0.99] * 25  # mean +0.01, spread 1: far too noisy to tell


@pytest.mark.parametrize(
    ("diffs", "higher_is_better", "margin", "verdict", "difference"),
    [
        (UP, True, 0.0, Verdict.BETTER, 0.18),
        ([-d for d in UP], True, 0.0, Verdict.WORSE, -0.18),
        (NOISE, True, 0.0, Verdict.INCONCLUSIVE, 0.01),
        ([0.0] * 50, True, 0.0, Verdict.INCONCLUSIVE, 0.0),  # identical: interval [0, 0]
        # lower is better (latency): going down is the improvement
        ([-d for d in UP], False, 0.0, Verdict.BETTER, -0.18),
        (UP, False, 0.0, Verdict.WORSE, 0.18),
        # the whole interval must clear the margin
        (UP, True, 0.05, Verdict.BETTER, 0.18),
        (UP, True, 0.17, Verdict.INCONCLUSIVE, 0.18),  # interval about [0.16, 0.20]
        (UP, True, 0.25, Verdict.INCONCLUSIVE, 0.18),
        ([-d for d in UP], True, 0.17, Verdict.INCONCLUSIVE, -0.18),
        ([-d for d in UP], True, 0.05, Verdict.WORSE, -0.18),
        ([-d for d in UP], False, 0.05, Verdict.BETTER, -0.18),
    ],
)
def test_compare_paired_verdicts(
    diffs: list[float], higher_is_better: bool, margin: float, verdict: Verdict, difference: float
) -> None:
    got = compare_paired(
        "m", shifted(diffs), BASE, higher_is_better=higher_is_better, margin=margin
    )
    assert got.verdict is verdict
    assert got.n == 50
    assert got.difference == pytest.approx(difference)
    assert got.champion_mean == pytest.approx(0.5)
    assert got.challenger_mean == pytest.approx(0.5 + difference)
    assert got.low is not None and got.high is not None
    assert min(diffs) <= got.low <= got.difference <= got.high <= max(diffs)
    assert verdict.value in got.reason and "n=50" in got.reason


def test_identical_pairs_give_a_zero_interval() -> None:
    got = compare_paired("m", BASE, BASE)
    assert (got.low, got.high, got.difference) == (0.0, 0.0, 0.0)
    assert got.verdict is Verdict.INCONCLUSIVE


def test_a_constant_difference_gives_a_point_interval() -> None:
    got = compare_paired("m", [0.7] * 30, [0.5] * 30)
    assert got.low == pytest.approx(0.2) and got.high == pytest.approx(0.2)
    assert got.verdict is Verdict.BETTER


def test_the_interval_matches_the_standard_error() -> None:
    # diffs of +1 and -1 in equal number: mean 0, standard error 1/sqrt(100) = 0.1, so the 95%
    # interval is about +-1.96 * 0.1; a 50% interval about +-0.674 * 0.1
    diffs = [1.0, -1.0] * 50
    wide = compare_paired("m", diffs, [0.0] * 100, resamples=4000)
    narrow = compare_paired("m", diffs, [0.0] * 100, resamples=4000, confidence=0.5)
    assert wide.low == pytest.approx(-0.196, abs=0.02)
    assert wide.high == pytest.approx(0.196, abs=0.02)
    assert narrow.high == pytest.approx(0.0674, abs=0.015)
    assert wide.verdict is narrow.verdict is Verdict.INCONCLUSIVE


def test_the_bootstrap_is_seeded() -> None:
    first = compare_paired("m", shifted(NOISE), BASE, seed=7)
    again = compare_paired("m", shifted(NOISE), BASE, seed=7)
    other = compare_paired("m", shifted(NOISE), BASE, seed=8)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def test_large_sets_are_resampled_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paired, "_BLOCK", 3 * 50)  # 3 resamples of 50 per block
    means = paired._bootstrap_means(np.array(UP), resamples=7, seed=0)
    assert means.shape == (7,)
    assert ((means >= 0.1) & (means <= 0.3)).all()


@pytest.mark.parametrize(
    ("challenger", "champion", "n", "verdict"),
    [
        # 19 clear improvements are still too few
        ([0.9] * 19, [0.1] * 19, 19, Verdict.INCONCLUSIVE),
        ([0.9] * 20, [0.1] * 20, 20, Verdict.BETTER),
        # None on either side drops the pair: 25 - 5 = 20 left
        ([0.9] * 20 + [None] * 3 + [0.9] * 2, [0.1] * 23 + [None] * 2, 20, Verdict.BETTER),
        ([0.9] * 20 + [math.nan], [0.1] * 20 + [0.1], 20, Verdict.BETTER),
        ([0.9] * 19 + [None], [0.1] * 20, 19, Verdict.INCONCLUSIVE),
    ],
)
def test_pairs_and_min_samples(
    challenger: list[float | None], champion: list[float | None], n: int, verdict: Verdict
) -> None:
    got = compare_paired("f1", challenger, champion)
    assert (got.n, got.verdict) == (n, verdict)
    assert got.difference == pytest.approx(0.8)
    if n < 20:
        assert (got.low, got.high) == (None, None)
        assert f"n={n} < min_samples=20" in got.reason


def test_no_usable_pair() -> None:
    got = compare_paired("f1", [None, 1.0], [1.0, None])
    assert (got.n, got.challenger_mean, got.difference, got.verdict) == (
        0,
        None,
        None,
        Verdict.INCONCLUSIVE,
    )


def test_the_reason_says_the_figures() -> None:
    got = compare_paired("latency_ms", [10.0] * 30, [20.0] * 30, higher_is_better=False)
    assert got.reason == (
        "latency_ms: challenger 10 vs champion 20, difference -10 "
        "(95% interval -10 to -10, n=30, lower is better): better"
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"champion": [1.0]}, "same questions"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"resamples": 0}, "resamples"),
        ({"margin": -0.1}, "margin"),
    ],
)
def test_compare_paired_refuses_bad_input(kwargs: dict, match: str) -> None:
    args = {"challenger": [1.0, 2.0], "champion": [1.0, 2.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        compare_paired("m", **args)


def comparison(metric: str, verdict: Verdict) -> Comparison:
    return Comparison(metric, 50, 0.5, 0.5, 0.0, 0.0, 0.0, verdict, f"{metric}: {verdict}")


B, W, N = Verdict.BETTER, Verdict.WORSE, Verdict.INCONCLUSIVE  # N: no verdict


@pytest.mark.parametrize(
    ("present", "guards", "verdict"),
    [
        ({"f1": B}, [], B),
        ({"f1": B, "lat": N}, ["lat"], B),  # an inconclusive guard does not block
        ({"f1": B, "lat": B}, ["lat"], B),
        ({"f1": B, "lat": W}, ["lat"], W),
        ({"f1": B, "lat": N, "grounded": W}, ["lat", "grounded"], W),
        ({"f1": N, "lat": B}, ["lat"], N),
        ({"f1": N}, [], N),
        ({"f1": W, "lat": B}, ["lat"], W),
        ({"f1": N, "lat": W}, ["lat"], W),
        ({"f1": B}, ["lat"], B),  # a missing guard is inconclusive, not worse
        ({"lat": B}, ["lat"], N),  # a missing primary never promotes
        ({"lat": W}, ["lat"], W),
        ({"f1": B, "other": W}, [], B),  # only the named metrics count
    ],
)
def test_release_verdict(present: dict[str, Verdict], guards: list[str], verdict: Verdict) -> None:
    comparisons = {name: comparison(name, v) for name, v in present.items()}
    got, reasons = release_verdict(comparisons, "f1", guards)
    assert got is verdict
    assert len(reasons) == 1 + len(guards)
    for name, reason in zip(["f1", *guards], reasons, strict=True):
        assert reason.startswith(f"{name}: ")
        if name not in present:
            assert "no comparison" in reason


def test_release_verdict_considers_each_metric_once() -> None:
    comparisons = {"f1": comparison("f1", B), "lat": comparison("lat", N)}
    got, reasons = release_verdict(comparisons, "f1", ["lat", "f1", "lat"])
    assert got is B
    assert reasons == ["f1: better", "lat: inconclusive"]


def test_independent_windows_find_a_drop_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    before = rng.uniform(0.5, 1.0, 300).tolist()
    after = rng.uniform(0.2, 0.7, 200).tolist()
    drop = compare_independent("groundedness", after, before)
    assert drop.verdict is Verdict.WORSE and drop.high < 0
    same = compare_independent("groundedness", rng.uniform(0.5, 1.0, 300).tolist(), before)
    assert same.verdict is Verdict.INCONCLUSIVE and same.low < 0 < same.high
    # Lower is better (a refusal rate rising is worse), and None is left out.
    rising = compare_independent("refused", [1.0] * 40 + [None], [0.0] * 40, higher_is_better=False)
    assert rising.verdict is Verdict.WORSE and rising.n == 40
    few = compare_independent("groundedness", [0.1] * 5, before)
    assert few.verdict is Verdict.INCONCLUSIVE and "min_samples" in few.reason
    assert compare_independent("g", [], before).n == 0
