"""Instructions aimed at the model: direct (a user's jailbreak or request for the system
prompt) and indirect (a document that talks to the model when it is retrieved). Rules after
the phrasings collected by garak's and PyRIT's probes; each kind is one expression."""

from __future__ import annotations

import re

from tasks.core.rails.sensitive import Finding

_ANY = r"[^.!?\n]{0,60}?"  # a few words within one sentence
_INSTRUCTIONS = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|constraints"
    r"|restrictions|programming|policies)"
)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "ignore_instructions",
        _rx(
            r"\b(?:ignore|disregard|forget|override|overrule|bypass|skip|drop|abandon)\b"
            rf"{_ANY}\b(?:previous|prior|preceding|above|earlier|all|any|your|original|initial"
            rf"|system|every|the developer'?s?)\b{_ANY}\b{_INSTRUCTIONS}\b"
            r"|\b(?:ignore|disregard|forget|override)\b[^.!?\n]{0,30}?\b"
            + _INSTRUCTIONS
            + r"\s+(?:above|before|so\s+far|you\s+(?:were|have\s+been)\s+given)\b"
        ),
    ),
    (
        "system_prompt_request",
        _rx(
            r"\b(?:reveal|show|print|repeat|output|display|leak|share|tell|give|write|dump"
            r"|disclose|recite|list|spell|copy|paste|what)\b"
            rf"{_ANY}(?:\b(?:system|initial|original|hidden|secret|internal|developer|pre)[\s-]*"
            r"(?:prompts?|instructions?)|\bsystem\s+messages?|\byour\s+(?:instructions|prompt"
            r"|rules|directives|guidelines))\b"
            r"|\b(?:repeat|print|output|recite)\b[^.!?\n]{0,30}\b(?:words|text|everything)"
            r"\s+(?:above|before|preceding)"
            r"|\bwhat\s+(?:were|are)\s+you\s+(?:told|instructed|programmed)\b"
        ),
    ),
    (
        "role_override",
        _rx(
            r"\byou\s+are\s+(?:now\s+)?(?:going\s+to\s+(?:act|pretend)\s+as\s+)?(?:DAN|STAN"
            r"|DUDE|AIM|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken|evil|amoral))\b"
            r"|\bdo\s+anything\s+now\b"
            r"|\b(?:developer|god|jailbreak|DAN|unrestricted|sudo|evil)\s+mode\b"
            rf"|\b(?:act|behave|respond|pretend|roleplay)\b{_ANY}\b(?:without|no|free\s+of"
            r"|not\s+bound\s+by|ignoring)\s+(?:any\s+)?(?:restrictions|filters|rules|limits"
            r"|guidelines|censorship|ethics|morals|policies)\b"
            r"|\b(?:jailbreak|jailbroken)\b"
        ),
    ),
    (
        "chat_markup",
        _rx(
            r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|eot_id)\|>"
            r"|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(?:system|instruction|new instructions?)\s*:"
        ),
    ),
    (
        "new_instructions",
        _rx(
            r"\b(?:new|updated|real|actual|important|additional|hidden)\s+instructions?\s*:"
            r"|\bfrom\s+now\s+on\b,?\s+(?:you|your|the\s+assistant|answer|respond|reply)"
            r"|\b(?:AI|assistant|model|chatbot|language\s+model|LLM)s?\b[^.!?\n]{0,30}"
            r"\b(?:must|should|shall|will)\s+(?:now\s+)?(?:always\s+)?(?:answer|respond|reply"
            r"|say|tell|ignore|output)\b"
            r"|\b(?:answer|respond|reply)\s+(?:to\s+)?(?:every|all|any)\s+(?:questions?"
            r"|requests?|messages?)\s+(?:only\s+)?with\b"
        ),
    ),
    (
        "exfiltration",
        _rx(
            r"\b(?:send|post|forward|upload|transmit|exfiltrate|leak|email)\b[^.!?\n]{0,40}"
            r"\b(?:conversation|chat|history|secrets?|keys?|credentials|passwords?|prompt"
            r"|context|tokens?|user\s+data|personal\s+data)\b[^.!?\n]{0,30}"
            r"\b(?:to|at)\s+(?:https?://|[\w.+-]+@[\w-]+\.)"
            r"|!\[[^\]]*\]\(https?://[^)]*[?&][^)]*\{"
        ),
    ),
)


def find_injection(text: str) -> list[Finding]:
    """Every span that addresses the model with instructions, by kind."""
    found = [
        Finding(kind, "injection", m.start(), m.end())
        for kind, pattern in _RULES
        for m in pattern.finditer(text)
    ]
    return sorted(found, key=lambda f: f.start)


def neutralise(text: str, findings: list[Finding]) -> str:
    """`text` with each sentence that holds an instruction to the model cut out and marked, so
    the rest of the passage still serves as evidence."""
    out, at = [], 0
    for start, end in _sentences(text, findings):
        if start < at:
            continue
        out += [text[at:start], "[instruction to the model removed]"]
        at = end
    return "".join([*out, text[at:]])


def _sentences(text: str, findings: list[Finding]) -> list[tuple[int, int]]:
    spans = []
    for f in sorted(findings, key=lambda f: f.start):
        start = max(text.rfind(c, 0, f.start) for c in ".!?\n") + 1
        ends = [i for c in ".!?\n" if (i := text.find(c, f.end)) != -1]
        end = min(ends) + 1 if ends else len(text)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans
