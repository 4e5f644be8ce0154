import pytest

from tasks.core.answer_quality import USABLE, answer_quality

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        ("", "empty", "the answer holds nothing"),
        ("\n\n\n", "empty", "the answer holds only whitespace"),
        ("  \t \n ", "empty", "the answer holds only whitespace"),
        ("... ,\n!", "empty", "the answer holds no words"),
        ("ordin ordin ordin", "repetition", "the answer repeats 'ordin'"),
        ("ordin\nordin\n ordin ordin ord", "repetition", "the answer repeats 'ordin'"),
        ("ordinordinordinordin", "repetition", "the answer repeats 'ordin'"),
        ("the cat the cat the cat", "repetition", "the answer repeats 'thecat'"),
        ("ab. ab. ab. ab.", "repetition", "the answer repeats 'ab.'"),
        ("aaaa", "repetition", "the answer repeats 'a'"),
        (
            "The with statement ordin ordin ordin ordin ordin ordin ordin",
            "repetition",
            "'ordin' is 7 of the answer's 10 words",
        ),
        ("Ordin, ORDIN; ordin: x ordin ordin y ordin", "repetition", None),
    ],
)
def test_degenerate_answers_say_why(text: str, reason: str, detail: str | None) -> None:
    quality = answer_quality(text)
    assert quality.degenerate and quality.reason == reason
    if detail is not None:
        assert quality.detail == detail


@pytest.mark.parametrize(
    "text",
    [
        "Yes.",
        "no no",  # twice is an answer; the third time makes a loop
        "42",
        "The with statement wraps a block in a context manager's enter and exit.",
        "try runs its block; except clauses catch the exceptions raised in it.",
        "for x in range(3): print(x)\nfor y in range(3): print(y)",
        "It is what it is, and it is fine.",
        "la la land",
    ],
)
def test_usable_answers_pass(text: str) -> None:
    assert answer_quality(text) == USABLE
