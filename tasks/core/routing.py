"""Which model version answers a request: a weighted split, sticky per caller, pinnable.

Weights are walked in the mapping's order. A keyed caller sits at a fixed point u in [0, 1) and
gets the version whose cumulative slice contains u; so with the challenger listed first, raising
its weight only ever moves callers from the champion to the challenger, never back, which keeps
sessions stable while a canary advances.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

# How a caller pins a version and names its session (sticky routing) over HTTP.
VERSION_HEADER, SESSION_HEADER = "x-llmops-version", "x-llmops-session"
# The request log's route prefix for shadow copies (a challenger's answers no user got).
SHADOW = "shadow:"


class UnknownVersion(ValueError):
    """A request pinned a version that the router does not serve."""


def normalise_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights as fractions summing to 1, in the mapping's order (percentages or fractions in)."""
    if not weights:
        raise ValueError("no versions to route to: weights are empty")
    for version, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"weight of {version!r} must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {version!r} must be finite and >= 0, got {weight}")
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError(f"at least one weight must be positive, got {dict(weights)}")
    return {version: weight / total for version, weight in weights.items()}


def key_point(key: str) -> float:
    """A stable point in [0, 1) for a caller key: the same on every process and every run
    (Python's `hash` is salted per process, so it would reshuffle callers on each restart)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_version(
    weights: Mapping[str, float],
    key: str | None = None,
    pinned: str | None = None,
    draw: float | None = None,
) -> str:
    """The version for one request.

    `pinned` wins when it names a version in `weights`, whatever its weight (so a zero-weight
    challenger can still be tried by hand). With a non-empty `key` (session or user) the choice
    is deterministic; an empty key counts as none, so anonymous callers do not all pile onto one
    version. Otherwise `draw`, a uniform number in [0, 1) that the caller draws, decides.
    """
    fractions = normalise_weights(weights)
    if pinned is not None:
        if pinned not in fractions:
            known = ", ".join(repr(v) for v in fractions)
            raise UnknownVersion(f"unknown version {pinned!r}; known versions: {known}")
        return pinned
    if key:
        u = key_point(key)
    else:
        if draw is None:
            raise ValueError("without a key, give a draw: a uniform number in [0, 1)")
        u = draw
        if not 0 <= u < 1:
            raise ValueError(f"draw must be in [0, 1), got {u}")
    cumulative = 0.0
    for version, fraction in fractions.items():
        cumulative += fraction
        if fraction > 0 and u < cumulative:
            return version
    # Rounding can leave the cumulative sum a hair under 1: the last served version takes it.
    return next(v for v, f in reversed(fractions.items()) if f > 0)
