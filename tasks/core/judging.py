"""An LLM judge's prompt and reply, as pure functions: the variables a judge prompt is filled
with, the filling, and the strict reading of the judge's reply into scores.

The judge grades two things per answer, each on 0..5, scaled to [0, 1]: `judge_faithfulness`
(every claim is supported by the passages) and `judge_relevance` (it answers the question).
Its reply must hold one whole line per criterion, `faithfulness: <0-5>` and `relevance: <0-5>`
(an integer; case and spaces around it do not matter, other lines are ignored). A reply without
such a line, with two different ones, or with a score outside 0..5 leaves that metric missing
with the reason, never a guessed value. Judged metrics are reported, never used by a gate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

JUDGE_PROMPT = "llmops-judge"  # its name in MLflow's prompt registry
# metric -> the word its reply line starts with
JUDGE_METRICS: dict[str, str] = {
    "judge_faithfulness": "faithfulness",
    "judge_relevance": "relevance",
}
SCALE = 5
VARIABLES = ("question", "passages", "answer")

# Registered as the prompt's first version; a person improves it by registering a new version
# in MLflow (the judge uses the latest), with these variables and the same reply lines.
JUDGE_TEMPLATE = """\
You grade one answer of a question-answering assistant that answers from numbered passages.

Question:
{{question}}

Passages:
{{passages}}

Answer:
{{answer}}

Grade the answer on two criteria, each an integer from 0 (worst) to 5 (best):
- faithfulness: every claim in the answer is supported by the passages. An answer that \
declines because the passages do not contain the answer claims nothing and gets 5.
- relevance: the answer addresses the question that was asked. Declining is relevant when the \
passages do not contain the answer.

Reply with exactly these two lines and nothing else:
faithfulness: <0-5>
relevance: <0-5>
"""

_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_REPLY_CHARS = 200  # of a reply quoted in a reason or kept as the rationale


@dataclass(frozen=True)
class Judged:
    """One judged metric of one answer: its value in [0, 1], or None and `error` (why it is
    missing). `reply` is what the judge said (shortened), kept as the rationale."""

    value: float | None
    error: str | None = None
    reply: str = ""


def template_variables(template: str) -> set[str]:
    """The {{variables}} a template uses."""
    return set(_VARIABLE.findall(template))


def check_template(template: str) -> None:
    """A judge template may use only the variables the judge fills (question, passages,
    answer); a version using others would be sent with holes in it."""
    unknown = template_variables(template) - set(VARIABLES)
    if unknown:
        raise ValueError(
            f"the judge prompt uses unknown variable(s) {sorted(unknown)}; it may use "
            f"{list(VARIABLES)}"
        )


def judge_variables(question: str, answer: str, passages: Sequence[str]) -> dict[str, str]:
    """The prompt's variables: passages numbered [1], [2], ... as the serving prompt does."""
    numbered = "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, 1))
    return {
        "question": question.strip(),
        "passages": numbered or "(no passages)",
        "answer": answer.strip() or "(empty answer)",
    }


def render(template: str, variables: Mapping[str, str]) -> str:
    """The template with each {{name}} (spaces inside the braces allowed, as MLflow's prompt
    format allows) replaced by its value, in one pass: a value holding braces stays as is.
    A variable without a value raises ValueError."""
    missing = template_variables(template) - set(variables)
    if missing:
        raise ValueError(f"no value for the judge prompt's variable(s) {sorted(missing)}")
    return _VARIABLE.sub(lambda m: variables[m.group(1)], template)


def _shorten(reply: str) -> str:
    flat = " ".join(reply.split())
    return flat if len(flat) <= _REPLY_CHARS else flat[: _REPLY_CHARS - 1] + "…"


def _parse_one(reply: str, word: str) -> Judged:
    line = re.compile(rf"^[ \t]*{word}[ \t]*:[ \t]*(\S*)[ \t]*$", re.IGNORECASE | re.MULTILINE)
    found = {m.group(1) for m in line.finditer(reply)}
    quoted = _shorten(reply)
    if not quoted:
        return Judged(None, "the judge's reply is empty")
    if not found:
        return Judged(None, f"the judge's reply has no '{word}: <0-{SCALE}>' line: {quoted!r}")
    if len(found) > 1:
        return Judged(None, f"the judge's reply gives {word} {len(found)} different scores")
    (raw,) = found
    if not (raw.isascii() and raw.isdigit()) or int(raw) > SCALE:
        return Judged(None, f"the judge's {word} score {raw!r} is not an integer 0..{SCALE}")
    return Judged(int(raw) / SCALE, reply=quoted)


def parse_reply(reply: str) -> dict[str, Judged]:
    """Each judged metric read from the judge's reply (see the module's docstring)."""
    return {metric: _parse_one(reply, word) for metric, word in JUDGE_METRICS.items()}


def not_judged(reason: str) -> dict[str, Judged]:
    """Every judged metric missing, for `reason` (the judge failed, or there was no answer)."""
    return dict.fromkeys(JUDGE_METRICS, Judged(None, reason))
