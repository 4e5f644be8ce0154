"""Paired comparison of two versions on the same questions: better, worse or inconclusive.

Both versions answer the same questions, so the per-question differences carry the signal and
the questions' own difficulty cancels out. A seeded paired bootstrap of the mean difference
gives a percentile interval; a verdict needs the whole interval past the margin. Inconclusive
never promotes and never rolls back: it asks for more evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

_BLOCK = 4_000_000  # resampled indices held at once: bounds memory for large sets


class Verdict(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """One metric compared: the means over the n usable pairs, the mean difference (challenger
    minus champion), its interval (None without enough pairs) and the verdict, said in words."""

    metric: str
    n: int
    challenger_mean: float | None
    champion_mean: float | None
    difference: float | None
    low: float | None
    high: float | None
    verdict: Verdict
    reason: str


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)  # a NaN would poison every mean it enters


def _inconclusive(
    metric: str,
    n: int,
    reason: str,
    challenger_mean: float | None = None,
    champion_mean: float | None = None,
    difference: float | None = None,
) -> Comparison:
    return Comparison(
        metric=metric,
        n=n,
        challenger_mean=challenger_mean,
        champion_mean=champion_mean,
        difference=difference,
        low=None,
        high=None,
        verdict=Verdict.INCONCLUSIVE,
        reason=reason,
    )


def _bootstrap_means(diffs: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The means of `resamples` resamples (with replacement) of `diffs`, seeded."""
    rng = np.random.default_rng(seed)
    n = len(diffs)
    rows = max(1, _BLOCK // n)
    means = [
        diffs[rng.integers(0, n, size=(min(rows, resamples - start), n))].mean(axis=1)
        for start in range(0, resamples, rows)
    ]
    return np.concatenate(means)


def compare_paired(
    metric: str,
    challenger: Sequence[float | None],
    champion: Sequence[float | None],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    min_samples: int = 20,
    margin: float = 0.0,
    sides: tuple[str, str] = ("challenger", "champion"),
) -> Comparison:
    """Compare one metric over the same questions, position i of each sequence being question i.

    Pairs where either side is None (or NaN) are dropped. With fewer than `min_samples` pairs
    the verdict is inconclusive. Otherwise the interval is the percentile interval of a paired
    bootstrap of the mean difference: better when it lies wholly beyond `margin` in the good
    direction (up, or down for a lower-is-better metric such as latency), worse when wholly
    beyond it in the bad direction, inconclusive otherwise (identical pairs give [0, 0]).
    `sides` names the two in the reason ("candidate" against "base", say).
    """
    if len(challenger) != len(champion):
        raise ValueError(
            f"{metric}: {len(challenger)} challenger values but {len(champion)} champion values; "
            "a paired comparison needs the same questions on both sides"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    pairs = [
        (a, b)
        for a, b in zip(challenger, champion, strict=True)
        if not _missing(a) and not _missing(b)
    ]
    n = len(pairs)
    if n == 0:
        return _inconclusive(metric, 0, f"{metric}: no question has a value on both sides")
    ours = np.array([a for a, _ in pairs], dtype=float)
    theirs = np.array([b for _, b in pairs], dtype=float)
    diffs = ours - theirs
    mean_ours, mean_theirs = float(ours.mean()), float(theirs.mean())
    difference = float(diffs.mean())
    said = (
        f"{metric}: {sides[0]} {mean_ours:.4g} vs {sides[1]} {mean_theirs:.4g}, "
        f"difference {difference:+.4g}"
    )
    if n < min_samples:
        reason = f"{said}; n={n} < min_samples={min_samples}: inconclusive, more questions needed"
        return _inconclusive(metric, n, reason, mean_ours, mean_theirs, difference)
    tail = (1 - confidence) / 2
    means = _bootstrap_means(diffs, resamples, seed)
    low, high = (float(q) for q in np.quantile(means, [tail, 1 - tail]))
    if low > margin:  # wholly above +margin
        verdict = Verdict.BETTER if higher_is_better else Verdict.WORSE
    elif high < -margin:  # wholly below -margin
        verdict = Verdict.WORSE if higher_is_better else Verdict.BETTER
    else:
        verdict = Verdict.INCONCLUSIVE
    direction = "higher" if higher_is_better else "lower"
    beyond = f"±{margin:.4g}" if margin else "0"
    outcome = (
        f"inconclusive: the interval does not clear {beyond}, more evidence needed"
        if verdict is Verdict.INCONCLUSIVE
        else verdict.value
    )
    reason = (
        f"{said} ({confidence:.0%} interval {low:+.4g} to {high:+.4g}, n={n}, "
        f"{direction} is better): {outcome}"
    )
    return Comparison(metric, n, mean_ours, mean_theirs, difference, low, high, verdict, reason)


def release_verdict(
    comparisons: Mapping[str, Comparison], primary: str, guards: Sequence[str] = ()
) -> tuple[Verdict, list[str]]:
    """The release decision from the primary metric and the guard metrics.

    WORSE if the primary or any guard is worse; BETTER if the primary is better and no guard is
    worse (an inconclusive guard does not block); INCONCLUSIVE otherwise, a missing primary
    included. One reason per metric considered, the primary first.
    """
    verdicts: dict[str, Verdict] = {}
    reasons: list[str] = []
    for name in dict.fromkeys([primary, *guards]):  # a guard named twice is considered once
        found = comparisons.get(name)
        if found is None:
            verdicts[name] = Verdict.INCONCLUSIVE
            reasons.append(f"{name}: no comparison: inconclusive")
        else:
            verdicts[name] = found.verdict
            reasons.append(found.reason)
    if Verdict.WORSE in verdicts.values():
        return Verdict.WORSE, reasons
    if verdicts[primary] is Verdict.BETTER:
        return Verdict.BETTER, reasons
    return Verdict.INCONCLUSIVE, reasons


def compare_independent(
    metric: str,
    current: Sequence[float | None],
    reference: Sequence[float | None],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    min_samples: int = 20,
) -> Comparison:
    """Compare one metric's mean over two different samples (live answers of this window and of
    the reference window: no question is shared, so nothing pairs). Each side is resampled on
    its own; the verdict reads like `compare_paired`'s, with `current` as the challenger."""
    mine = np.array([v for v in current if not _missing(v)], dtype=float)
    theirs = np.array([v for v in reference if not _missing(v)], dtype=float)
    n = min(len(mine), len(theirs))
    if n == 0:
        return _inconclusive(metric, 0, f"{metric}: no value in one of the windows")
    now, before = float(mine.mean()), float(theirs.mean())
    difference = now - before
    said = (
        f"{metric}: current {now:.4g} (n={len(mine)}) vs reference {before:.4g} "
        f"(n={len(theirs)}), difference {difference:+.4g}"
    )
    if n < min_samples:
        reason = f"{said}; fewer than min_samples={min_samples}: inconclusive"
        return _inconclusive(metric, n, reason, now, before, difference)
    tail = (1 - confidence) / 2
    spread = _bootstrap_means(mine, resamples, seed) - _bootstrap_means(theirs, resamples, seed + 1)
    low, high = (float(q) for q in np.quantile(spread, [tail, 1 - tail]))
    if low > 0:
        verdict = Verdict.BETTER if higher_is_better else Verdict.WORSE
    elif high < 0:
        verdict = Verdict.WORSE if higher_is_better else Verdict.BETTER
    else:
        verdict = Verdict.INCONCLUSIVE
    reason = f"{said} ({confidence:.0%} interval {low:+.4g} to {high:+.4g}): {verdict.value}"
    return Comparison(metric, n, now, before, difference, low, high, verdict, reason)
