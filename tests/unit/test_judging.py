import pytest

from tasks.core.judging import (
    JUDGE_METRICS,
    JUDGE_TEMPLATE,
    VARIABLES,
    Judged,
    check_template,
    judge_variables,
    not_judged,
    parse_reply,
    render,
    template_variables,
)
from tasks.evaluate.params import ContractParams, EvaluateParams

pytestmark = pytest.mark.unit


def values(reply: str) -> dict[str, float | None]:
    return {m: j.value for m, j in parse_reply(reply).items()}


def test_the_template_in_code_uses_exactly_the_judges_variables() -> None:
    assert template_variables(JUDGE_TEMPLATE) == set(VARIABLES)
    check_template(JUDGE_TEMPLATE)
    assert "faithfulness: <0-5>" in JUDGE_TEMPLATE and "relevance: <0-5>" in JUDGE_TEMPLATE


def test_a_template_with_unknown_variables_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['context'\]"):
        check_template("{{question}} {{ context }}")
    check_template("only {{answer}}")  # using fewer is allowed


def test_variables_number_the_passages_and_name_what_is_empty() -> None:
    v = judge_variables(" What is x? ", "x is\n 1 [1]", ["first\n passage", "second"])
    assert v == {
        "question": "What is x?",
        "passages": "[1] first passage\n[2] second",
        "answer": "x is\n 1 [1]",
    }
    empty = judge_variables("q", "  ", [])
    assert empty["passages"] == "(no passages)" and empty["answer"] == "(empty answer)"


def test_render_fills_every_variable_once_with_or_without_spaces() -> None:
    text = render(
        "Q: {{question}} A: {{ answer }} again {{answer}}", {"question": "q", "answer": "a"}
    )
    assert text == "Q: q A: a again a"
    # a value holding braces is not filled again
    assert render("{{answer}}", {"answer": "{{question}}", "question": "no"}) == "{{question}}"
    assert "What is x?" in render(JUDGE_TEMPLATE, judge_variables("What is x?", "1", ["x=1"]))


def test_render_refuses_a_variable_without_value() -> None:
    with pytest.raises(ValueError, match=r"\['passages'\]"):
        render("{{question}} {{passages}}", {"question": "q"})


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("faithfulness: 5\nrelevance: 0", {"judge_faithfulness": 1.0, "judge_relevance": 0.0}),
        (
            "Faithfulness:4\n  RELEVANCE :  3  \n",
            {"judge_faithfulness": 0.8, "judge_relevance": 0.6},
        ),
        # other lines are ignored; the same score twice is one score
        (
            "Here you go.\nfaithfulness: 2\nrelevance: 1\nfaithfulness: 2\nThanks",
            {"judge_faithfulness": 0.4, "judge_relevance": 0.2},
        ),
        ("relevance: 5", {"judge_faithfulness": None, "judge_relevance": 1.0}),
    ],
)
def test_reply_lines_are_read_as_scores_in_0_1(reply: str, expected: dict) -> None:
    assert values(reply) == expected
    for judged in parse_reply(reply).values():
        assert (judged.value is None) == (judged.error is not None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "the judge's reply is empty"),
        (" \n ", "the judge's reply is empty"),
        ("the answer is fine", "has no 'faithfulness: <0-5>' line: 'the answer is fine'"),
        ("faithfulness: 4 out of 5", "has no 'faithfulness: <0-5>' line"),  # not a whole line
        ("I rate faithfulness: 4", "has no 'faithfulness: <0-5>' line"),
        ("faithfulness: 7", "score '7' is not an integer 0..5"),
        ("faithfulness: 4.5", "score '4.5' is not an integer 0..5"),
        ("faithfulness: -1", "score '-1' is not an integer 0..5"),
        ("faithfulness: 4/5", "score '4/5' is not an integer 0..5"),
        ("faithfulness: ٣", "is not an integer 0..5"),  # a digit, but not an ASCII one
        ("faithfulness:", "score '' is not an integer 0..5"),
        ("faithfulness: 1\nfaithfulness: 5", "gives faithfulness 2 different scores"),
    ],
)
def test_an_unreadable_reply_leaves_the_metric_missing_with_the_reason(
    reply: str, reason: str
) -> None:
    judged = parse_reply(reply)["judge_faithfulness"]
    assert judged.value is None
    assert reason in judged.error


def test_a_long_reply_is_quoted_short_and_kept_as_rationale() -> None:
    reply = "faithfulness: 3\nrelevance: 3\n" + "blah " * 200
    judged = parse_reply(reply)["judge_relevance"]
    assert judged.value == 0.6 and len(judged.reply) == 200 and judged.reply.endswith("…")
    missing = parse_reply("word " * 200)["judge_relevance"]
    assert len(missing.error) < 300


def test_not_judged_marks_every_metric_missing_with_the_reason() -> None:
    assert not_judged("judge timed out") == {
        m: Judged(None, "judge timed out") for m in JUDGE_METRICS
    }


def test_judged_metrics_can_never_be_a_gates_metric() -> None:
    for metric in JUDGE_METRICS:
        with pytest.raises(ValueError, match="unknown metrics"):
            ContractParams(primary=metric)
        with pytest.raises(ValueError, match="unknown metrics"):
            ContractParams(guards=[metric])


def test_the_judge_is_off_by_default() -> None:
    assert EvaluateParams().judge is False
    assert "LLMOPS_JUDGE_URL" in EvaluateParams.model_fields["judge"].description
