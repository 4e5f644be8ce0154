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


_IGNORE = r"(?:ignore|disregard|forget|override|overrule|bypass|skip|abandon)"
_REVEAL = (
    r"(?:reveal|show|print|repeat|output|display|leak|share|tell|give|write|dump|disclose"
    r"|recite|list|spell|copy|paste|encode|translate|summari[sz]e|paraphrase|rewrite)"
)
_HIDDEN = (
    r"(?:system|initial|original|hidden|secret|internal|developer|starting|first|pre)[\s-]*"
    r"(?:prompts?|instructions?|directives)"
)
_RULES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    (
        "ignore_instructions",
        ("ignore", "disregard", "forget", "override", "overrule", "bypass", "skip", "abandon"),
        _rx(
            rf"\b{_IGNORE}\b{_ANY}\b(?:previous|prior|preceding|above|earlier|all|any|your"
            rf"|original|initial|system|every|the developer'?s?)\b{_ANY}\b{_INSTRUCTIONS}\b"
            rf"|\b{_IGNORE}\s+(?:all\s+|any\s+|these\s+|those\s+)?{_INSTRUCTIONS}\b"
            rf"|\b{_IGNORE}\b[^.!?\n]{{0,30}}?\b{_INSTRUCTIONS}\s+(?:above|before|so\s+far"
            r"|you\s+(?:were|have\s+been)\s+given)\b"
            r"|\b(?:ignore|disregard)\s+(?:the\s+rest\s+of\s+(?:this|the)|everything\s+"
            r"(?:else|above|before))\b"
        ),
    ),
    (
        "system_prompt_request",
        (
            "prompt",
            "instruct",
            "system",
            "rules",
            "directive",
            "guideline",
            "configuration",
            "told",
            "programmed",
            "above",
            "before",
            "preceding",
        ),
        _rx(
            rf"\b{_REVEAL}\b{_ANY}(?:\b{_HIDDEN}|\bsystem\s+messages?|\byour\s+(?:instructions"
            r"|prompt|rules|directives|guidelines|configuration))\b"
            rf"|\b{_REVEAL}\b{_ANY}\b(?:instructions|prompt|rules)\s+(?:you\s+(?:were|have"
            r"\s+been)\s+given|(?:given\s+)?(?:above|at\s+the\s+(?:beginning|start)))\b"
            r"|\b(?:repeat|recite|output)\b[^.!?\n]{0,30}\b(?:words|text|everything)\s+"
            r"(?:above|before|preceding)\b(?!\s+(?:a|an|the|this|that|each|every)\b)"
            r"|\bwhat\s+(?:were|are|was|is)\s+(?:you\s+(?:told|instructed|programmed)|your\s+"
            r"(?:system\s+)?(?:prompt|instructions|rules))\b"
            r"|\b(?:my|your)\s+(?:system\s+)?(?:instructions|prompt)\s+(?:are|were|is|was)\s*:"
            r"|\bI\s+was\s+(?:instructed|told)\s+to\b|\bthe\s+system\s+prompt\s+is\s*:"
            r"|\bsystem_?prompt\b"
        ),
    ),
    (
        "role_override",
        (
            "you",
            "anything",
            "immerse",
            "role",
            "mode",
            "act",
            "behave",
            "respond",
            "pretend",
            "roleplay",
            "jailbr",
        ),
        _rx(
            r"\byou\s+are\s+(?:now\s+)?(?:going\s+to\s+(?:act|pretend)\s+as\s+)?(?:DAN|STAN"
            r"|DUDE|AIM|\w+GPT|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken|evil"
            r"|amoral))\b"
            r"|\byou\s+are\s+(?:no\s+longer|not)\s+(?:ChatGPT|Claude|an?\s+(?:AI|assistant"
            r"|language\s+model)|bound\s+by)\b"
            r"|\bdo\s+anything\s+now\b|\bimmerse\s+yourself\b|\brole\s+of\s+(?:another|an)"
            r"\s+AI\b"
            r"|\b(?:enable|activate|enter|switch\s+to|simulate|with)\s+(?:the\s+)?(?:developer"
            r"|god|jailbreak|DAN|unrestricted|evil)\s+mode\b|\b(?:DAN|god|jailbreak|evil)\s+mode\b"
            rf"|\b(?:act|behave|respond|pretend|roleplay)\b{_ANY}\b(?:without|no|free\s+of"
            r"|not\s+bound\s+by|ignoring)\s+(?:any\s+)?(?:restrictions|filters|rules|limits"
            r"|guidelines|censorship|ethics|morals|policies)\b"
            r"|\bjailbr(?:oken|eak)\s+(?:mode|version|AI|assistant|chatbot|model|prompt)"
            r"|\byou\s+are\s+(?:now\s+)?jailbroken"
        ),
    ),
    (
        "chat_markup",
        (
            "<|",
            "inst]",
            "<<sys",
            "<</sys",
            "[system]",
            "instruction>",
            "system>",
            "system_prompt>",
            "<end",
            "##",
            "assistant",
            "user",
            "human",
            "system",
        ),
        _rx(
            r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|eot_id)\|>"
            r"|\[/?INST\]|<</?SYS>>|\[system\]|</?(?:instruction|system|system_prompt)>"
            r"|<end\s+of\s+(?:session|conversation|context)>"
            r"|#{2,}\s*(?:system|instruction|new\s+instructions?)\s*:"
            r"|^\s*(?:system|assistant|user|human)\s*:(?=.{0,200}\n\s*(?:system|assistant"
            r"|user|human)\s*:)"
        ),
    ),
    (
        "new_instructions",
        (
            "instruction",
            "from",
            "must",
            "should",
            "shall",
            "will",
            "answer",
            "respond",
            "reply",
            "output",
            "simply",
            "note",
            "message",
            "user",
            "stop",
            "override",
        ),
        _rx(
            r"\b(?:new|updated|real|actual|important|additional|hidden|core)\s+instructions?\s*:"
            r"|\bfrom\s+now\s+on\b,?\s+(?:you|your|the\s+assistant|answer|respond|reply)"
            r"|\b(?:AI|assistant|model|chatbot|language\s+model|LLM)s?\b[^.!?\n]{0,30}"
            r"\b(?:must|should|shall|will)\s+(?:now\s+)?(?:always\s+)?(?:answer|respond|reply"
            r"|say|tell|ignore|output)\b"
            r"|\b(?:answer|respond|reply)\s+(?:to\s+)?(?:every|all|any)\s+(?:questions?"
            r"|requests?|messages?)\s+(?:only\s+)?with\b"
            r"|\b(?:reply|respond|answer|output)\s+(?:only\s+)?with\s+(?:only\s+)?(?:the\s+"
            r"following|exactly)\b|\bsimply\s+(?:respond|reply|answer|say)\b"
            r"|\b(?:note|message)\s+to\s+(?:the\s+|all\s+)?(?:AI|assistant|language\s+model"
            r"|LLM|chatbot)s?\b|\bif\s+(?:the\s+)?user\s+asks?\b"
            r"|\bstop\s+everything\b|\b(?:admin|administrator|system|developer)\s+override\b"
        ),
    ),
    (
        "exfiltration",
        ("http", "@"),
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
    lowered = text.lower()
    found = [
        Finding(kind, "injection", m.start(), m.end())
        for kind, words, pattern in _RULES
        if any(word in lowered for word in words)  # a rule's words first: most text has none
        for m in pattern.finditer(text)
    ]
    return sorted(found, key=lambda f: f.start)


def neutralise(text: str, findings: list[Finding]) -> str:
    """`text` with each sentence that holds an instruction to the model cut out: the rest of
    the passage still serves as evidence, and reads as if the instruction had never been there
    (the decision itself is reported beside the answer, not inside the prompt)."""
    out, at = [], 0
    for start, end in _sentences(text, findings):
        if start < at:
            continue
        out.append(text[at:start])
        at = end
    return "".join([*out, text[at:]]).strip()


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
