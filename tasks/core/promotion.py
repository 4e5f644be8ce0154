"""When a candidate becomes the champion, and which champion a rollback returns to.

Two measures decide together. Bits per byte on one held-out set (lower is better): a unit that
does not depend on the tokenizer, so models with different vocabularies compare fairly. And the
quality contract's paired verdicts on answers (`tasks.core.paired`): the candidate must answer
better than its base and the champion, with no guard metric worse; an inconclusive verdict
never promotes (with a canary, live traffic gathers the missing evidence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from tasks.core.paired import Verdict

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


@dataclass(frozen=True)
class AnswerVerdicts:
    """The paired verdicts on answers against the base model and the champion (None: there is
    no champion to face), with the figures behind each."""

    vs_base: Verdict
    vs_champion: Verdict | None = None
    base_reasons: tuple[str, ...] = ()
    champion_reasons: tuple[str, ...] = ()


def _answer_checks(answers: AnswerVerdicts, canary: bool) -> list[tuple[bool, str]]:
    def said(verdict: Verdict, whom: str, why: tuple[str, ...]) -> str:
        return f"answers against the {whom}: {verdict} ({'; '.join(why)})"

    checks = [
        (
            answers.vs_base is Verdict.BETTER,
            said(answers.vs_base, "base model", answers.base_reasons),
        )
    ]
    verdict = answers.vs_champion
    if verdict is not None:
        text = said(verdict, "champion", answers.champion_reasons)
        handed_on = canary and verdict is Verdict.INCONCLUSIVE
        if handed_on:
            text += ": the canary gathers more evidence on live traffic"
        checks.append((verdict is Verdict.BETTER or handed_on, text))
    return checks


def decide(
    scores: Scores,
    gate_passed: bool,
    min_improvement: float = 0.0,
    answers: AnswerVerdicts | None = None,
    canary: bool = False,
) -> Decision:
    """Promote only a candidate that passed the compression gate and beats both its base model
    and the current champion by at least `min_improvement` (relative bits per byte) and, when
    `answers` are given, answers better than both (with `canary`, an inconclusive verdict against
    the champion passes on to the canary instead). With no champion, the gate and the base
    decide. Every check gives a reason, passed or not."""
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
    if answers is not None:
        checks.extend(_answer_checks(answers, canary))
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
