"""Whether a model's answer is usable text at all, judged from the text alone.

An untrained or broken model (the platform's default base starts from random weights) answers
with newlines or loops on one token ("ordin ordin ordin ..."). Such an answer is not wrong in
the way a bad answer is: there is nothing to read. Saying so lets a client show the retrieved
passages instead, and keeps a person from rating noise as if it were an answer.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
MAX_UNIT = 40  # characters of a loop's unit; longer cycles are rare and look like text
MIN_LOOPS = 3  # "no no" may be an answer; a third time is a loop
DOMINANT_SHARE = 0.6  # one word this share of an answer of MIN_DOMINANT words or more
MIN_DOMINANT = 6

Reason = Literal["empty", "repetition"]


@dataclass(frozen=True)
class AnswerQuality:
    degenerate: bool
    reason: Reason | None = None
    detail: str | None = None


USABLE = AnswerQuality(False)


def _loop_unit(text: str) -> str | None:
    """The shortest unit that the text (whitespace removed) repeats MIN_LOOPS times or more,
    allowing a cut-off last copy (generation stops mid-loop at max_tokens); None if none."""
    squeezed = _SPACE.sub("", text)
    for size in range(1, min(MAX_UNIT, len(squeezed) // MIN_LOOPS) + 1):
        unit = squeezed[:size]
        if (unit * (len(squeezed) // size + 1)).startswith(squeezed):
            return unit
    return None


def answer_quality(text: str) -> AnswerQuality:
    """Degenerate when the answer has no words (only whitespace or punctuation), when it is one
    short unit repeated (with or without spaces: "ordin ordin ordin", "ababab"), or when one word
    makes up most of a longer answer (a loop after a few words)."""
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        shown = "nothing" if not text else "only whitespace" if text.isspace() else "no words"
        return AnswerQuality(True, "empty", f"the answer holds {shown}")
    if (unit := _loop_unit(text)) is not None:
        return AnswerQuality(True, "repetition", f"the answer repeats {unit!r}")
    word, count = Counter(words).most_common(1)[0]
    if len(words) >= MIN_DOMINANT and count >= DOMINANT_SHARE * len(words):
        return AnswerQuality(
            True, "repetition", f"{word!r} is {count} of the answer's {len(words)} words"
        )
    return USABLE
