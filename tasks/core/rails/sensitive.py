"""Secrets and personal data in text: regular expressions (after gitleaks' and Presidio's
rules) with the checks that keep documentation from tripping them: Luhn for cards, mod-97
for IBANs, the number plan for SSNs, global addresses only for IPs, reserved domains and
placeholder values skipped."""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Category = Literal["secret", "personal_data", "injection"]


@dataclass(frozen=True)
class Finding:
    """One span of `text[start:end]` of a `kind` (see `config.*_KINDS`)."""

    kind: str
    category: Category
    start: int
    end: int


# Secrets with a shape of their own. Compiled one by one: each keeps its fast scan for its
# literal prefix (`AKIA`, `xox`, `AIza`), which one alternation of them all loses (1.6x slower).
_SECRETS = {
    "private_key": r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----"
    r"[\s\S]{20,}?-----END (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----",
    "aws_access_key": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "aws_secret_key": r"(?i:aws_?secret_?(?:access_?)?key)\W{0,3}[=:]\s*[\"']?"
    r"([A-Za-z0-9/+]{40})\b",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_\w{82})\b",
    "slack_token": r"\bxox[baprs]-[0-9A-Za-z-]{10,72}\b",
    "google_api_key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "stripe_key": r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{20,99}\b",
    "openai_key": r"\bsk-(?:(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[\w-]{20,}"
    r"|(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})",
    "jwt": r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
}
# The literal each shape holds: a substring test skips the expression where it is absent.
_LITERALS = {
    "private_key": ("PRIVATE KEY",),
    "aws_access_key": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "aws_secret_key": ("ecret", "ECRET"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "slack_token": ("xox",),
    "google_api_key": ("AIza",),
    "stripe_key": ("k_live_", "k_test_"),
    "openai_key": ("sk-",),
    "jwt": ("eyJ",),
}
_SHAPES = tuple((kind, _LITERALS[kind], re.compile(rx)) for kind, rx in _SECRETS.items())
# scheme://user:password@host: the structure is the evidence; only placeholders are skipped.
_CONNECTION = re.compile(
    r"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql"
    r"|sqlserver|oracle|ftp|sftp|smtp|https?)(?:\+\w+)?://[^\s:/@'\"]*:([^\s@/'\"]+)@[\w.-]+"
)
_KEY_WORDS = (
    r"(?:password|passwd|pwd|passcode|secret|secret_key|api_?key|access_?token|auth_?token"
    r"|client_?secret|private_?key)"
)
# Values of secret-named keys in configuration and prose; each is checked for placeholders
# and entropy, which is what keeps `password='secret'` in documentation out.
_ASSIGNMENTS = (
    re.compile(  # key = "value", key: 'value', "key": "value"
        rf"(?i)\b{_KEY_WORDS}\b[\"']?\s*(?:=|:|=>)\s*[\"']([^\s\"']{{8,128}})[\"']"
    ),
    re.compile(  # .env and YAML: NAME=value or name: value, unquoted, to the end of the line
        rf"(?im){_KEY_WORDS}[\w.-]*[ \t]*[=:][ \t]*([^\s\"'#]{{8,128}})[ \t]*$"
    ),
    re.compile(  # the password is X
        r"(?i)\b(?:password|passcode|passphrase|pwd)\s+(?:is|was|=)\s*:?\s*[\"']?"
        r"([^\s\"']{8,64}?)[\"'.,;]?(?=\s|$)"
    ),
)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:\W*|x+|\*+|\.+|<.*>|\{.*\}|(?-i:\$\{?[A-Z_][A-Z0-9_]*\}?)|%\(?.*|.*(?:password"
    r"|passwd|secret|example|changeme|placeholder|your|dummy|redacted|token|xxx|foo|bar|spam"
    r"|eggs|sample).*)$"
)

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24})\b")
_RESERVED_DOMAINS = re.compile(
    r"(?i)(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost|local"
    r"|domain\.(?:com|tld)|host\.com)$"
)
_PHONE = re.compile(
    r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?(?:\(0?\d{0,4}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,8}){1,4}"
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[-.]\d{3}[-.]\d{4}"  # North American
    r"|\(0\d{2,4}\) ?\d{4,8}|0\d{2,4} \d{3,4} \d{3,4}|0\d(?:[ .]\d\d){4})"  # trunk 0
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w.-]*\d)"  # an extension
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
_NINO = re.compile(
    r"\b(?![DFIQUV])[A-CEGHJ-PR-TW-Z](?![DFIOQUV])[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
)
# Not a reverse-DNS name (1.0.0.127.in-addr.arpa) nor part of a longer dotted run.
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)(?!\.\w)")


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _secret_value(value: str) -> bool:
    """A value that looks like a real secret, not documentation's `'secret'` or `'${PASS}'`."""
    if _PLACEHOLDER.match(value):
        return False
    classes = sum(
        any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit)
    ) + any(not c.isalnum() for c in value)
    return classes >= 2 and entropy(value) >= 3.0


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


def _card(digits: str) -> bool:
    # Issuer prefixes (Visa, Mastercard, Amex, Discover, JCB, Diners) and length, then Luhn.
    n = len(digits)
    issuer = (
        (digits[0] == "4" and n in (13, 16, 19))
        or (51 <= int(digits[:2]) <= 55 and n == 16)
        or (2221 <= int(digits[:4]) <= 2720 and n == 16)
        or (digits[:2] in ("34", "37") and n == 15)
        or ((digits[:4] == "6011" or digits[:2] == "65") and n in (16, 19))
        or (3528 <= int(digits[:4]) <= 3589 and n in (16, 19))
        or (digits[:2] in ("36", "38") and n in (14, 16))
    )
    return issuer and luhn(digits)


def iban_valid(iban: str) -> bool:
    code = iban.replace(" ", "")
    if not 15 <= len(code) <= 34:
        return False
    moved = code[4:] + code[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _global_ip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


_VERSION_WORD = re.compile(r"(?i)\b(?:version|release|python|v|ver)\.?\s*$")


def _ip(text: str, m: re.Match[str]) -> bool:
    # Four-part version numbers look like addresses: the word before tells them apart.
    return _global_ip(m.group()) and not _VERSION_WORD.search(
        text, max(0, m.start() - 12), m.start()
    )


def _phone(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    # Dotted runs are versions and dates as often as phones; a phone has a 7+ digit body.
    return 9 <= len(digits) <= 15 and not re.fullmatch(r"[\d.]+", match)


_KEY_HINT = re.compile(r"pass|pwd|secret|api|private|token")  # in every _KEY_WORDS, lowered


def _key_lines(text: str) -> list[tuple[int, int]]:
    """The lines (and the line after each, for a value on the next) that name a secret-like
    key: the case-blind assignment expressions are slow over a whole document."""
    lowered = text.lower()
    if len(lowered) != len(text):  # lowering changed offsets (rare letters): scan it all
        return [(0, len(text))]
    spans: list[tuple[int, int]] = []
    for m in _KEY_HINT.finditer(lowered):
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", text.find("\n", m.end()) + 1)
        end = len(text) if end == -1 or text.find("\n", m.end()) == -1 else end
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def find_secrets(text: str) -> list[Finding]:
    found = [
        Finding(kind, "secret", m.start(), m.end())
        for kind, literals, pattern in _SHAPES
        if any(literal in text for literal in literals)
        for m in pattern.finditer(text)
        if not _PLACEHOLDER.match(m.group(m.lastindex or 0))  # the value, not its key
    ]
    if "://" in text:
        found += [
            Finding("connection_string", "secret", m.start(), m.end())
            for m in _CONNECTION.finditer(text)
            if not _PLACEHOLDER.match(m.group(1))
        ]
    for start, end in _key_lines(text):
        found += [
            Finding("password", "secret", m.start(1), m.end(1))
            for pattern in _ASSIGNMENTS
            for m in pattern.finditer(text, start, end)
            if _secret_value(m.group(1))
        ]
    return _merged(found)


def _matches(
    kind: str, pattern: re.Pattern[str], text: str, keep: Callable[[re.Match[str]], bool]
) -> Iterable[Finding]:
    return (
        Finding(kind, "personal_data", m.start(), m.end())
        for m in pattern.finditer(text)
        if keep(m)
    )


# Cards, SSNs, addresses and phones are digits and separators only: the expressions run on
# windows around such runs instead of the whole text (most of a document has none).
_NUMBER_RUN = re.compile(r"\d[\d .()x/+-]{5,}\d")
_BEFORE, _AFTER = 12, 40  # room for the look-behinds (a version word) and look-aheads


def _number_windows(text: str) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    for m in _NUMBER_RUN.finditer(text):
        start, end = max(0, m.start() - _BEFORE), min(len(text), m.end() + _AFTER)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _numbers(text: str) -> list[Finding]:
    found: list[Finding] = []
    for start, end in _number_windows(text):
        part = text[start:end]
        here = [
            *_matches("payment_card", _CARD, part, lambda m: _card(re.sub(r"\D", "", m.group()))),
            *_matches("national_id", _SSN, part, lambda m: True),
            *_matches("ip_address", _IPV4, part, lambda m, part=part: _ip(part, m)),
        ]
        here += [
            f
            for f in _matches("phone", _PHONE, part, lambda m: _phone(m.group()))
            if not any(o.start < f.end and f.start < o.end for o in here)
        ]
        found += [Finding(f.kind, f.category, f.start + start, f.end + start) for f in here]
    return found


def _emails(text: str) -> list[Finding]:
    # Around each "@" only: the expression tried at every word of a text is the slow part.
    found, at = [], text.find("@")
    while at != -1:
        found += [
            Finding("email", "personal_data", m.start(), m.end())
            for m in _EMAIL.finditer(text, max(0, at - 64), at + 256)
            if m.start() < at < m.end() and not _RESERVED_DOMAINS.search(m.group(1))
        ]
        at = text.find("@", at + 1)
    return found


def find_personal_data(text: str) -> list[Finding]:
    found = [
        *_emails(text),
        *_matches("iban", _IBAN, text, lambda m: iban_valid(m.group())),
        *_matches("national_id", _NINO, text, lambda m: True),
    ]
    return _merged(found + _numbers(text))


def find_sensitive(text: str) -> list[Finding]:
    """Secrets and personal data, overlaps resolved in favour of the earlier, longer span."""
    return _merged(find_secrets(text) + find_personal_data(text))


def _merged(findings: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -(f.end - f.start))):
        if kept and f.start < kept[-1].end:
            continue
        kept.append(f)
    return kept


def placeholder(kind: str) -> str:
    return f"[REDACTED:{kind.upper()}]"


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with each finding's span replaced by its typed placeholder."""
    out, at = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < at:
            continue
        out += [text[at : f.start], placeholder(f.kind)]
        at = f.end
    return "".join([*out, text[at:]])
