"""Rails: secrets and personal data kept out of the index and the weights, injections kept
out of the answers. Pure rules; the stages and the serving app apply them."""

from tasks.core.rails.checks import (
    REFUSAL,
    Decision,
    Screened,
    check_answer,
    check_passage,
    check_prompt,
    echoes,
    screen_document,
)
from tasks.core.rails.config import (
    INJECTION_KINDS,
    PERSONAL_KINDS,
    SECRET_KINDS,
    IngestRails,
    RailsPolicy,
    ServingRails,
)
from tasks.core.rails.injection import find_injection, neutralise
from tasks.core.rails.sensitive import (
    Finding,
    find_personal_data,
    find_secrets,
    find_sensitive,
    redact,
)

__all__ = [
    "INJECTION_KINDS",
    "PERSONAL_KINDS",
    "REFUSAL",
    "SECRET_KINDS",
    "Decision",
    "Finding",
    "IngestRails",
    "RailsPolicy",
    "Screened",
    "ServingRails",
    "check_answer",
    "check_passage",
    "check_prompt",
    "echoes",
    "find_injection",
    "find_personal_data",
    "find_secrets",
    "find_sensitive",
    "neutralise",
    "redact",
    "screen_document",
]
