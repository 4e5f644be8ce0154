"""The rails' settings: one typed model, versioned with the release (`Release.rails`), so a
change to what is blocked or redacted is reviewed and tested like code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Action = Literal["quarantine", "redact", "allow"]

SECRET_KINDS = (
    "private_key",
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "google_api_key",
    "stripe_key",
    "openai_key",
    "jwt",
    "connection_string",
    "password",
)
PERSONAL_KINDS = ("email", "phone", "payment_card", "iban", "national_id", "ip_address")
INJECTION_KINDS = (
    "ignore_instructions",
    "system_prompt_request",
    "role_override",
    "chat_markup",
    "new_instructions",
    "exfiltration",
)


class IngestRails(BaseModel):
    """What ingest does with a document holding a secret or personal data: quarantine it (with
    the reason), redact the span with a typed placeholder, or allow it. `kinds` overrides the
    category's action for one kind, e.g. `{"ip_address": "allow"}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secrets: Action = Field("quarantine", description="Default action for secrets.")
    personal_data: Action = Field("redact", description="Default action for personal data.")
    kinds: dict[str, Action] = Field(default_factory=dict, description="Per-kind overrides.")

    @field_validator("kinds")
    @classmethod
    def _known(cls, kinds: dict[str, Action]) -> dict[str, Action]:
        unknown = sorted(set(kinds) - set(SECRET_KINDS) - set(PERSONAL_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {SECRET_KINDS + PERSONAL_KINDS}")
        return kinds

    def action(self, kind: str) -> Action:
        if kind in self.kinds:
            return self.kinds[kind]
        return self.secrets if kind in SECRET_KINDS else self.personal_data


class ServingRails(BaseModel):
    """The three serving rails: the user's prompt (input), every retrieved passage (retrieval)
    and the answer (output)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: bool = Field(True, description="Refuse injection, jailbreak and system-prompt asks.")
    retrieval: Literal["neutralise", "drop", "off"] = Field(
        "neutralise",
        description="A passage carrying instructions to the model: cut them out, or drop it.",
    )
    output: bool = Field(True, description="Redact secrets and personal data in answers.")
    output_kinds: tuple[str, ...] = Field(
        SECRET_KINDS + PERSONAL_KINDS, description="Kinds the output rail redacts."
    )
    echo_words: int = Field(
        8,
        ge=3,
        le=64,
        description="An answer sharing this many consecutive words with the instruction "
        "echoes the system prompt and is refused.",
    )

    @field_validator("output_kinds")
    @classmethod
    def _known(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(kinds) - set(SECRET_KINDS) - set(PERSONAL_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}")
        return kinds


class RailsPolicy(BaseModel):
    """Both halves: what ingest keeps out of the index and the weights, what serving checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ingest: IngestRails = Field(
        IngestRails(), description="What ingest does with secrets and personal data."
    )
    serving: ServingRails = Field(
        ServingRails(), description="The input, retrieval and output rails at serving."
    )
