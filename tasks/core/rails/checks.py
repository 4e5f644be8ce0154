"""The rails' decisions: at ingest on a document, at serving on the prompt (input), on each
retrieved passage (retrieval) and on the answer (output). Each decision names its rail, what
was done and why, so it can be returned, logged and counted."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from tasks.core.rails.config import IngestRails, ServingRails
from tasks.core.rails.injection import find_injection, neutralise
from tasks.core.rails.sensitive import Finding, find_sensitive, redact

Rail = Literal["input", "retrieval", "output"]
Verdict = Literal["block", "redact", "drop", "neutralise"]
REFUSAL = "I can't help with that request."  # what a blocked request is answered with


@dataclass(frozen=True)
class Decision:
    """One rail acting on one request: `reason` is `<category>:<kind>`."""

    rail: Rail
    action: Verdict
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"rail": self.rail, "action": self.action, "reason": self.reason}


@dataclass
class Screened:
    """A document after the ingest rail: its text (redacted where the policy says so), why it
    is quarantined (empty: it is kept), and each finding's (kind, action) count."""

    text: str
    quarantine: list[str] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)


def screen_document(text: str, policy: IngestRails) -> Screened:
    """Apply the ingest policy. A quarantined document's text still has every finding redacted
    (the quarantine keeps the document, never the secret)."""
    findings = find_sensitive(text)
    screened = Screened(text)
    to_redact: list[Finding] = []
    for f in findings:
        action = policy.action(f.kind)
        screened.counts[(f.kind, action)] += 1
        if action == "quarantine":
            line = text.count("\n", 0, f.start) + 1
            screened.quarantine.append(f"{f.category}: {f.kind} at line {line}")
        if action != "allow":
            to_redact.append(f)
    screened.text = redact(text, to_redact) if to_redact else text
    return screened


def check_prompt(text: str, rails: ServingRails) -> list[Decision]:
    """The input rail: a prompt that tries to override the instruction, jailbreak the model or
    read the system prompt is blocked (one decision per kind found)."""
    if not rails.input:
        return []
    kinds = dict.fromkeys(f.kind for f in find_injection(text))
    return [Decision("input", "block", f"injection:{kind}") for kind in kinds]


def check_passage(text: str, rails: ServingRails) -> tuple[str | None, list[Decision]]:
    """The retrieval rail: a passage that carries instructions to the model is dropped (None)
    or has those sentences cut out, as configured."""
    if rails.retrieval == "off":
        return text, []
    findings = find_injection(text)
    if not findings:
        return text, []
    kinds = dict.fromkeys(f.kind for f in findings)
    decisions = [Decision("retrieval", rails.retrieval, f"injection:{k}") for k in kinds]
    return (None if rails.retrieval == "drop" else neutralise(text, findings)), decisions


def check_answer(text: str, instruction: str, rails: ServingRails) -> tuple[str, list[Decision]]:
    """The output rail: an answer that echoes the system prompt is refused; secrets and
    personal data in it are redacted."""
    if not rails.output:
        return text, []
    if echoes(text, instruction, rails.echo_words):
        return REFUSAL, [Decision("output", "block", "echo:system_prompt")]
    found = [f for f in find_sensitive(text) if f.kind in rails.output_kinds]
    if not found:
        return text, []
    kinds = dict.fromkeys(f"{f.category}:{f.kind}" for f in found)
    return redact(text, found), [Decision("output", "redact", k) for k in kinds]


_WORD = re.compile(r"\w+")


def echoes(text: str, instruction: str, n: int) -> bool:
    """True when `text` holds `n` consecutive words of `instruction` (case and punctuation
    ignored), the mark of a prompt read back."""
    said = [w.lower() for w in _WORD.findall(instruction)]
    if len(said) < n:
        return bool(said) and " ".join(said) in " ".join(w.lower() for w in _WORD.findall(text))
    grams = {tuple(said[i : i + n]) for i in range(len(said) - n + 1)}
    words = [w.lower() for w in _WORD.findall(text)]
    return any(tuple(words[i : i + n]) in grams for i in range(len(words) - n + 1))
