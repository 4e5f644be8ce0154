import math

import pytest

from tasks.core.gate import Gate, Measured, broken_thresholds, choose

pytestmark = pytest.mark.unit

BASE = Measured("uncompressed", size_bytes=1000, latency_ms_p50=10.0, perplexity=100.0)


def m(name: str, size: int, ppl: float, latency: float = 10.0) -> Measured:
    return Measured(name, size_bytes=size, latency_ms_p50=latency, perplexity=ppl)


@pytest.mark.parametrize(
    ("candidate", "gate", "broken"),
    [
        (m("int8", 300, 102.0), Gate(), []),
        (m("int8", 300, 103.0), Gate(), []),  # exactly at the limit passes
        (m("int8", 300, 104.0), Gate(), ["perplexity +4.0% > +3.0% allowed"]),
        (m("bf16", 500, 100.1), Gate(), []),
        (m("merged", 990, 100.0), Gate(), ["size -1.0% < -40.0% required"]),
        (m("prune", 900, 150.0), Gate(), ["perplexity", "size"]),
        (m("slow", 300, 100.0, latency=15.0), Gate(max_latency_ratio=1.2), ["latency x1.50"]),
        (m("slow", 300, 100.0, latency=15.0), Gate(), []),
        (m("any", 990, 400.0), Gate(None, None, None), []),
        (m("nan", 300, math.nan), Gate(), ["perplexity"]),
    ],
)
def test_broken_thresholds(candidate: Measured, gate: Gate, broken: list[str]) -> None:
    found = broken_thresholds(BASE, candidate, gate)
    assert len(found) == len(broken)
    for said, expected in zip(found, broken, strict=True):
        assert said.startswith(expected)


def test_the_smallest_passing_candidate_wins() -> None:
    candidates = [m("bf16", 500, 100.1), m("int8", 300, 102.0), m("prune", 200, 150.0)]
    chosen, broken = choose(BASE, candidates, Gate())
    assert chosen == "int8"
    assert broken["prune"] and not broken["bf16"]


def test_no_passing_candidate_chooses_none_and_says_why() -> None:
    chosen, broken = choose(BASE, [m("prune", 200, 150.0), m("merged", 990, 100.0)], Gate())
    assert chosen is None
    assert all(broken.values())


def test_stricter_thresholds_fail_what_looser_ones_pass() -> None:
    candidates = [m("int8", 300, 102.0)]
    assert choose(BASE, candidates, Gate(max_perplexity_increase=0.03))[0] == "int8"
    assert choose(BASE, candidates, Gate(max_perplexity_increase=0.01))[0] is None
    assert choose(BASE, candidates, Gate(min_size_reduction=0.8))[0] is None


ANSWERS = {"token_f1": 0.40, "groundedness": 0.80, "empty": 0.02}
ANSWER_GATE = Gate(max_answer_drop={"token_f1": 0.03, "groundedness": 0.05, "empty": 0.05})


def answering(name: str, ppl: float, **answers: float | None) -> Measured:
    return Measured(name, 300, 10.0, ppl, answers={"empty": 0.02, **answers})


@pytest.mark.parametrize(
    ("candidate", "broken"),
    [
        (answering("int8", 101.0, token_f1=0.39, groundedness=0.78), []),
        (answering("int8", 101.0, token_f1=0.37, groundedness=0.75), []),  # at the limits
        # Keeps its perplexity, loses its answers: refused on answers alone.
        (answering("mute", 100.0, token_f1=0.05, groundedness=0.0), ["token_f1", "groundedness"]),
        (answering("int8", 101.0, token_f1=0.30, groundedness=0.80), ["token_f1 0.300 vs 0.400"]),
        # Lower is better: the share of empty answers may rise only so far.
        (answering("stops", 100.0, token_f1=0.4, groundedness=0.8, empty=0.5), ["empty 0.500"]),
        (answering("int8", 100.0, token_f1=0.4, groundedness=0.8, empty=0.0), []),
        (answering("int8", 101.0, token_f1=0.45, groundedness=0.90), []),  # better is fine
        (answering("blind", 101.0, token_f1=None, groundedness=0.8), ["token_f1 not measured"]),
    ],
)
def test_answer_metrics_may_fall_only_so_far(candidate: Measured, broken: list[str]) -> None:
    base = Measured("uncompressed", 1000, 10.0, 100.0, answers=ANSWERS)
    found = broken_thresholds(base, candidate, ANSWER_GATE)
    assert len(found) == len(broken), found
    for said, expected in zip(found, broken, strict=True):
        assert said.startswith(expected)
