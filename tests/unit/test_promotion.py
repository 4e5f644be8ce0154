import math

import pytest

from tasks.core.paired import Verdict
from tasks.core.promotion import (
    PROMOTE,
    ROLLBACK,
    AnswerVerdicts,
    Scores,
    decide,
    previous_champion,
    relative_improvement,
    served_stack,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("scores", "gate", "margin", "promote", "phrases"),
    [
        # No champion yet: the base model and the gate decide.
        (Scores(1.0, 1.2), True, 0.0, True, ["passed the", "beats the base", "no champion yet"]),
        (Scores(1.3, 1.2), True, 0.0, False, ["does not beat the base"]),
        (Scores(1.0, 1.2), False, 0.0, False, ["did not pass the compression gate"]),
        (Scores(1.2, 1.2), True, 0.0, False, ["does not beat the base"]),  # a tie is no gain
        # With a champion, the candidate must beat both.
        (Scores(1.0, 1.2, 1.1, "3"), True, 0.0, True, ["beats the champion v3"]),
        (Scores(1.0, 1.2, 0.9, "3"), True, 0.0, False, ["does not beat the champion v3"]),
        (Scores(1.3, 1.2, 1.4, "3"), True, 0.0, False, ["does not beat the base", "beats the"]),
        (Scores(1.0, 1.2, 0.9, "3"), False, 0.0, False, ["did not pass", "does not beat the ch"]),
        # The margin is relative: 1.0 vs 1.05 is 4.76% better.
        (Scores(1.0, 1.5, 1.05, "2"), True, 0.04, True, ["+4.76% better, 4.00% required"]),
        (Scores(1.0, 1.5, 1.05, "2"), True, 0.05, False, ["does not beat the champion v2"]),
        (Scores(1.0, 1.04, None), True, 0.05, False, ["does not beat the base"]),
        # Broken numbers never promote.
        (Scores(math.nan, 1.2), True, 0.0, False, ["not comparable"]),
        (Scores(1.0, 1.2, math.inf, "4"), True, 0.0, False, ["champion v4: not comparable"]),
    ],
)
def test_decide(scores: Scores, gate: bool, margin: float, promote: bool, phrases: list[str]):
    decision = decide(scores, gate, margin)
    assert decision.promote is promote
    assert len(decision.reasons) == 3  # the gate, the base, the champion (or its absence)
    text = " | ".join(decision.reasons)
    for phrase in phrases:
        assert phrase in text, text


@pytest.mark.parametrize("margin", [-0.1, 1.0])
def test_margin_out_of_range_is_refused(margin: float) -> None:
    with pytest.raises(ValueError, match="min_improvement"):
        decide(Scores(1.0, 1.2), True, margin)


def test_relative_improvement() -> None:
    assert relative_improvement(0.9, 1.0) == pytest.approx(0.1)
    assert relative_improvement(1.1, 1.0) == pytest.approx(-0.1)


P, R = PROMOTE, ROLLBACK


@pytest.mark.parametrize(
    ("changes", "stack", "previous"),
    [
        ([], [], None),
        ([(P, "1")], ["1"], None),
        ([(P, "1"), (P, "2"), (P, "3")], ["1", "2", "3"], "2"),
        ([(P, "1"), (P, "2"), (P, "3"), (R, "2")], ["1", "2"], "1"),  # two rollbacks, two back
        ([(P, "1"), (P, "2"), (R, "1")], ["1"], None),  # nothing left to return to
        ([(P, "1"), (P, "2"), (R, "1"), (P, "2")], ["1", "2"], "1"),  # promoted again
        ([(P, "1"), (P, "1")], ["1"], None),  # the same version twice is one entry
        ([(R, "5"), (P, "6")], ["5", "6"], "5"),  # history began with a rollback
    ],
)
def test_rollback_returns_to_the_champion_before(
    changes: list[tuple[str, str]], stack: list[str], previous: str | None
) -> None:
    assert served_stack(changes) == stack
    assert previous_champion(changes) == previous


B, W, UNSURE = Verdict.BETTER, Verdict.WORSE, Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("answers", "canary", "promote", "phrase"),
    [
        (AnswerVerdicts(B), False, True, "answers against the base model: better"),
        (AnswerVerdicts(UNSURE), False, False, "answers against the base model: inconclusive"),
        (AnswerVerdicts(W), True, False, "answers against the base model: worse"),
        (AnswerVerdicts(B, B), False, True, "answers against the champion: better"),
        (AnswerVerdicts(B, W), True, False, "answers against the champion: worse"),
        # Inconclusive never promotes; with a canary, live traffic gathers more evidence.
        (AnswerVerdicts(B, UNSURE), False, False, "answers against the champion: inconclusive"),
        (AnswerVerdicts(B, UNSURE), True, True, "the canary gathers more evidence"),
    ],
)
def test_answers_decide_beside_bits_per_byte(
    answers: AnswerVerdicts, canary: bool, promote: bool, phrase: str
) -> None:
    scores = Scores(1.0, 1.2, 1.1 if answers.vs_champion else None, "3")
    decision = decide(scores, True, 0.0, answers, canary)
    assert decision.promote is promote
    assert phrase in " | ".join(decision.reasons)
    # Answers never rescue a candidate that fails on bits per byte.
    assert not decide(Scores(1.3, 1.2), True, 0.0, AnswerVerdicts(B), canary).promote
