"""When a candidate becomes the champion, and which champion a rollback returns to.

Scores are bits per byte on one held-out set (lower is better): a unit that does not depend on
the tokenizer, so models with different vocabularies compare fairly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# The registry aliases that name releases: the serving app follows them.
CHALLENGER, CHAMPION = "challenger", "champion"
REGISTERED_MODEL = "llmops-assistant"  # the registered LLM's default name
PROMOTE = "promote"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class Scores:
    """Bits per byte of the candidate, its base model and the champion (None: no champion)."""

    candidate: float
    base: float
    champion: float | None = None
    champion_version: str | None = None


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]


def relative_improvement(candidate: float, reference: float) -> float:
    """How much lower the candidate's bits per byte are, as a fraction of the reference's."""
    return (reference - candidate) / reference


def _compare(name: str, candidate: float, reference: float, margin: float) -> tuple[bool, str]:
    if not (math.isfinite(candidate) and math.isfinite(reference) and reference > 0):
        return False, f"{name}: not comparable (candidate {candidate}, {name} {reference})"
    gain = relative_improvement(candidate, reference)
    beats = gain > 0 and gain >= margin
    verdict = "beats" if beats else "does not beat"
    return beats, (
        f"{verdict} the {name}: {candidate:.4f} vs {reference:.4f} bits/byte "
        f"({100 * gain:+.2f}% better, {100 * margin:.2f}% required)"
    )


def decide(scores: Scores, gate_passed: bool, min_improvement: float = 0.0) -> Decision:
    """Promote only a candidate that passed the compression gate and beats both its base model
    and the current champion by at least `min_improvement` (relative). With no champion, the
    gate and the base decide. Every check gives a reason, passed or not."""
    if not 0 <= min_improvement < 1:
        raise ValueError(f"min_improvement must be in [0, 1), got {min_improvement}")
    checks = [
        (
            gate_passed,
            "passed the compression gate"
            if gate_passed
            else "did not pass the compression gate (no compressed candidate met it)",
        ),
        _compare("base model", scores.candidate, scores.base, min_improvement),
    ]
    if scores.champion is None:
        checks.append((True, "no champion yet: only the base model and the gate decide"))
    else:
        label = f"champion v{scores.champion_version}" if scores.champion_version else "champion"
        checks.append(_compare(label, scores.candidate, scores.champion, min_improvement))
    return Decision(all(ok for ok, _ in checks), tuple(reason for _, reason in checks))


def served_stack(changes: Iterable[tuple[str, str]]) -> list[str]:
    """The champions still to return to, the current one last, from the champion alias's changes
    in time order as (action, version): a promotion pushes, a rollback pops back to its version
    (so rolling back twice goes two champions back, not back and forth)."""
    stack: list[str] = []
    for action, version in changes:
        if action == ROLLBACK:
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:  # history began after that version was served: start from it
                stack.append(version)
        elif not stack or stack[-1] != version:
            stack.append(version)
    return stack


def previous_champion(changes: Iterable[tuple[str, str]]) -> str | None:
    """The version a rollback would put back, or None when there is none."""
    stack = served_stack(changes)
    return stack[-2] if len(stack) > 1 else None
