import random
from collections import Counter

import pytest

from tasks.core.routing import UnknownVersion, choose_version, key_point, normalise_weights

pytestmark = pytest.mark.unit

KEYS = [f"session-{i}-{random.Random(i).getrandbits(32):x}" for i in range(20_000)]


@pytest.mark.parametrize(
    "weights",
    [
        {"challenger": 5, "champion": 95},
        {"challenger": 25, "champion": 75},
        {"challenger": 50, "champion": 50},
        {"challenger": 0.1, "champion": 0.9},  # fractions work like percentages
        {"a": 1, "b": 2, "c": 7},  # any number of versions, not summing to 100
        {"challenger": 0, "champion": 100},
        {"challenger": 100, "champion": 0},
    ],
)
def test_keyed_split_follows_the_weights(weights: dict[str, float]) -> None:
    counts = Counter(choose_version(weights, key=key) for key in KEYS)
    for version, fraction in normalise_weights(weights).items():
        assert counts[version] / len(KEYS) == pytest.approx(fraction, abs=0.015), counts
        if fraction == 0:
            assert counts[version] == 0


def test_unkeyed_split_follows_the_weights() -> None:
    rng = random.Random(7)
    weights = {"challenger": 25, "champion": 75}
    counts = Counter(choose_version(weights, draw=rng.random()) for _ in range(20_000))
    assert counts["challenger"] / 20_000 == pytest.approx(0.25, abs=0.015)
    # Random draws reach both versions.
    assert set(choose_version(weights, draw=rng.random()) for _ in range(500)) == {
        "challenger",
        "champion",
    }


def test_the_same_key_always_gets_the_same_version() -> None:
    weights = {"challenger": 50, "champion": 50}
    for key in KEYS[:200]:
        first = choose_version(weights, key=key)
        assert all(choose_version(weights, key=key) == first for _ in range(5))
    # Stable across processes: sha256, not the salted built-in hash.
    assert key_point("user-42") == pytest.approx(0.4278762, abs=1e-7)


def test_growing_the_first_weight_only_moves_callers_onto_it() -> None:
    steps = [0, 5, 25, 50, 75, 100]
    previous = {key: "champion" for key in KEYS}
    for pct in steps:
        weights = {"challenger": pct, "champion": 100 - pct}
        now = {key: choose_version(weights, key=key) for key in KEYS}
        moved_back = [k for k in KEYS if previous[k] == "challenger" and now[k] == "champion"]
        assert not moved_back, f"{len(moved_back)} callers went back to the champion at {pct}%"
        previous = now
    assert set(previous.values()) == {"challenger"}


def test_draw_walks_the_cumulative_weights_in_order() -> None:
    weights = {"a": 20, "b": 30, "c": 50}
    assert choose_version(weights, draw=0.0) == "a"
    assert choose_version(weights, draw=0.1999) == "a"
    assert choose_version(weights, draw=0.2) == "b"
    assert choose_version(weights, draw=0.4999) == "b"
    assert choose_version(weights, draw=0.5) == "c"
    assert choose_version(weights, draw=0.999999) == "c"
    # A zero weight is skipped even at its boundary; the last served version takes the tail.
    assert choose_version({"a": 0, "b": 1, "c": 0}, draw=0.0) == "b"
    assert choose_version({"a": 0, "b": 1, "c": 0}, draw=1 - 1e-16) == "b"


def test_pin_wins_even_at_zero_weight() -> None:
    weights = {"challenger": 0, "champion": 100}
    assert choose_version(weights, pinned="challenger") == "challenger"
    assert choose_version(weights, key="sticky", pinned="challenger", draw=0.9) == "challenger"


def test_an_empty_key_is_no_key() -> None:
    weights = {"challenger": 50, "champion": 50}
    assert choose_version(weights, key="", draw=0.1) == "challenger"
    assert choose_version(weights, key="", draw=0.9) == "champion"


def test_unknown_pin_names_the_known_versions() -> None:
    with pytest.raises(UnknownVersion, match=r"'v3'.*'challenger', 'champion'"):
        choose_version({"challenger": 5, "champion": 95}, pinned="v3")
    assert issubclass(UnknownVersion, ValueError)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "empty"),
        ({"a": 0, "b": 0}, "at least one weight must be positive"),
        ({"a": -5, "b": 105}, "finite and >= 0"),
        ({"a": float("nan"), "b": 1}, "finite and >= 0"),
        ({"a": float("inf"), "b": 1}, "finite and >= 0"),
        ({"a": "50", "b": 50}, "must be a number"),
        ({"a": True, "b": 1}, "must be a number"),
    ],
)
def test_bad_weights_are_refused(weights: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_version(weights, key="k")


@pytest.mark.parametrize("draw", [-0.1, 1.0, 1.5, float("nan")])
def test_draw_out_of_range_is_refused(draw: float) -> None:
    with pytest.raises(ValueError, match="draw"):
        choose_version({"a": 1}, draw=draw)
