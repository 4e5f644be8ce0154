"""The serving rails applied to one request (the rules are `tasks.core.rails`, the settings the
release's `rails.serving`): the input rail on the user's words, the retrieval rail on every
passage before it enters the prompt, the output rail on the answer, also while it streams."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from serving.api import ChatRequest, Generation, GenerationRequest, RailDecision
from tasks.core.rails import (
    REFUSAL,
    Decision,
    Finding,
    ServingRails,
    check_answer,
    check_passage,
    check_prompt,
    echoes,
    find_sensitive,
    redact,
)

logger = logging.getLogger(__name__)


def decisions(found: Iterable[Decision]) -> list[RailDecision]:
    return [RailDecision(**d.as_dict()) for d in found]


def check_request(request: GenerationRequest, rails: ServingRails) -> list[RailDecision]:
    """The input rail on what the user wrote: a completion's prompt, every user message of a
    chat (a system message is the caller's own, an assistant message the model's)."""
    if isinstance(request, ChatRequest):
        texts = [m.content for m in request.messages if m.role == "user"]
    else:
        texts = [request.prompt]
    found = [d for text in texts for d in check_prompt(text, rails)]
    return decisions(dict.fromkeys(found))  # one per reason, however many messages had it


def refusal(blocked: list[RailDecision]) -> Generation:
    """The answer to a request the input rail blocked: nothing was generated."""
    return Generation(
        text=REFUSAL,
        prompt_tokens=0,
        completion_tokens=0,
        finish_reason="content_filter",
        rails=blocked,
    )


def screen_hits(
    hits: list[dict[str, Any]], rails: ServingRails
) -> tuple[list[dict[str, Any]], list[RailDecision]]:
    """The retrieval rail on each passage: one that carries instructions to the model is
    dropped or has them cut out; each such passage's decisions are returned (and counted)."""
    kept, found = [], []
    for hit in hits:
        text, acted = check_passage(hit["text"], rails)
        found += decisions(acted)
        if text is not None:
            kept.append(hit if text == hit["text"] else {**hit, "text": text})
    return kept, found


def check_output(
    text: str, instruction: str, rails: ServingRails
) -> tuple[str, list[RailDecision]]:
    """The output rail on a whole answer: redacted, or refused when it echoes the instruction."""
    checked, acted = check_answer(text, instruction, rails)
    return checked, decisions(acted)


_WORD = re.compile(r"\w+")
_BEGIN, _END_LINE = re.compile(r"-----BEGIN"), re.compile(r"-----END [A-Z ]*-----")


class OutputGuard:
    """Streams only text the output rail has passed. The text so far is held back from the
    earliest of: the last `HOLD` characters (snapped back to whitespace, so no token is cut:
    a secret or an address becomes one only once it is whole), a `-----BEGIN` without its
    `-----END …-----` line, the last `echo_words` words (a run of the instruction's words
    becomes an echo only when it is that long), and any finding reaching across that point.
    What is released is redacted like the final answer, so the deltas are a prefix of it;
    once the text echoes the instruction, nothing more is released and `finish` sends the
    refusal. Only a window around the new text is checked (what lies before it was checked
    when it was released), so a long answer costs linear time."""

    HOLD = 96  # characters: longer than any finding that spans whitespace (IBAN, card, key =)

    def __init__(self, instruction: str, rails: ServingRails) -> None:
        self.instruction, self.rails = instruction, rails
        self.text = ""  # everything generated so far
        self.done = 0  # how much of it has been released
        self.sent = ""  # what has been released (redacted)
        self.blocked = False

    def push(self, delta: str) -> str:
        """The newly releasable text after `delta` was generated (often empty)."""
        self.text += delta
        if not self.rails.output:
            self.done, self.sent = len(self.text), self.sent + delta
            return delta
        end = self._held_from()
        if self.blocked or end <= self.done:
            return ""
        start = self._window_start()
        window = self.text[start:]
        if echoes(window, self.instruction, self.rails.echo_words):
            self.blocked = True
            return ""
        findings = [
            _shift(f, start) for f in find_sensitive(window) if f.kind in self.rails.output_kinds
        ]
        for f in findings:
            if f.start < end < f.end:
                end = f.start
            if f.start < self.done < f.end:  # never happens unless a rule reaches far back
                end = self.done
        if end <= self.done:
            return ""
        inside = [f for f in findings if self.done <= f.start and f.end <= end]
        released = redact(self.text[self.done : end], [_shift(f, -self.done) for f in inside])
        self.done, self.sent = end, self.sent + released
        return released

    def finish(self, final: str) -> str:
        """The rest of `final` (the answer as the output rail left it) after what was sent."""
        if final.startswith(self.sent):
            rest, self.sent = final[len(self.sent) :], final
            return rest
        if final == REFUSAL:  # an echo refused after part of the answer went out
            return "\n" + REFUSAL
        logger.warning("the streamed text is not a prefix of the checked answer; rest withheld")
        return ""

    def _held_from(self) -> int:
        text = self.text
        limit = len(text) - self.HOLD
        end = _after_space(text, limit)
        for begin in _BEGIN.finditer(text, self.done):  # a key is whole once its END line is
            if not _END_LINE.search(text, begin.end()):
                end = min(end, begin.start())
                break
        words = [m.start() for m in _WORD.finditer(text, self.done)]
        n = self.rails.echo_words
        return min(end, words[-n] if len(words) >= n else (words[0] if words else end))

    def _window_start(self) -> int:
        """Far enough back from what was released for any echo or finding that reaches the
        new text: `echo_words` words and `HOLD` characters."""
        n = self.rails.echo_words
        low = _after_space(self.text, self.done - 64 * n)  # n words are shorter than this
        words = [m.start() for m in _WORD.finditer(self.text, low, self.done)]
        echo = words[-n] if len(words) >= n else low
        return min(echo, _after_space(self.text, self.done - self.HOLD))


def _after_space(text: str, limit: int) -> int:
    """Just after the last whitespace before `limit` (0 when there is none)."""
    if limit <= 0:
        return 0
    return max(text.rfind(c, 0, limit) for c in " \n\t") + 1


def _shift(f: Finding, by: int) -> Finding:
    return replace(f, start=f.start + by, end=f.end + by)
