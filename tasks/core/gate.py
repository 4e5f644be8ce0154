"""The compression gate: which candidates may replace the uncompressed model, and which wins.

Pure: it sees measurements, not models. Perplexity alone misses a candidate that still models
text but no longer answers from its context, so the gate also bounds how far the quality
contract's answer metrics (means over the same questions) may fall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tasks.core.scorers import METRICS

EPS = 1e-9  # a value exactly at a threshold passes, whatever the float rounding


@dataclass(frozen=True)
class Measured:
    name: str
    size_bytes: int
    latency_ms_p50: float
    perplexity: float
    answers: Mapping[str, float | None] = field(default_factory=dict)  # metric -> mean


@dataclass(frozen=True)
class Gate:
    """Thresholds relative to the uncompressed model; None switches one off."""

    max_perplexity_increase: float | None = 0.03
    min_size_reduction: float | None = 0.4
    max_latency_ratio: float | None = None
    # Largest worsening allowed in each answer metric's mean, absolute: a fall, or a rise for
    # a lower-is-better metric such as the share of empty answers.
    max_answer_drop: Mapping[str, float] = field(default_factory=dict)


def broken_thresholds(baseline: Measured, candidate: Measured, gate: Gate) -> list[str]:
    """Each threshold the candidate breaks, said with the measured value."""
    broken = []
    rise = candidate.perplexity / baseline.perplexity - 1
    if gate.max_perplexity_increase is not None and not rise <= gate.max_perplexity_increase + EPS:
        broken.append(
            f"perplexity {rise:+.1%} > +{gate.max_perplexity_increase:.1%} allowed"
        )  # `not <=` also catches a NaN perplexity
    cut = 1 - candidate.size_bytes / baseline.size_bytes
    if gate.min_size_reduction is not None and cut < gate.min_size_reduction - EPS:
        broken.append(f"size -{cut:.1%} < -{gate.min_size_reduction:.1%} required")
    ratio = candidate.latency_ms_p50 / baseline.latency_ms_p50
    if gate.max_latency_ratio is not None and ratio > gate.max_latency_ratio + EPS:
        broken.append(f"latency x{ratio:.2f} > x{gate.max_latency_ratio:.2f} allowed")
    for metric, allowed in gate.max_answer_drop.items():
        before, after = baseline.answers.get(metric), candidate.answers.get(metric)
        if before is None or after is None:
            broken.append(f"{metric} not measured on both: cannot show it kept its answers")
        elif (before - after if METRICS.get(metric, True) else after - before) > allowed + EPS:
            broken.append(f"{metric} {after:.3f} vs {before:.3f}: worse by more than {allowed:.3f}")
    return broken


def choose(
    baseline: Measured, candidates: Sequence[Measured], gate: Gate
) -> tuple[str | None, dict[str, list[str]]]:
    """The smallest candidate that passes (None if none does), and what each one broke."""
    broken = {c.name: broken_thresholds(baseline, c, gate) for c in candidates}
    passing = [c for c in candidates if not broken[c.name]]
    best = min(passing, key=lambda c: (c.size_bytes, c.perplexity), default=None)
    return (best.name if best else None), broken
