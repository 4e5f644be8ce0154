"""A release: what travels with a registered version besides its weights, so that serving it,
rolling back to it or comparing it in a canary means the same prompt, retrieval, limits and
rails.

It is kept as the version's `release.*` tags (`release.rails` holds the policy's JSON); the
instruction text itself is a version in MLflow's prompt registry, named by its URI
(`prompts:/llmops-instruction/<n>`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.core.rails import RailsPolicy

INSTRUCTION_PROMPT = "llmops-instruction"  # its name in MLflow's prompt registry
PREFIX = "release."


class Release(BaseModel):
    """One version's release record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(pattern=r"^prompts:/[^/]+/\d+$", description="The instruction's URI.")
    top_k: int = Field(ge=1, le=20, description="Passages retrieved when a request names none.")
    embedding_model: str = Field(min_length=1, description="What the index was embedded with.")
    index: str = Field(min_length=1, description="The feature view retrieval reads.")
    max_prompt_tokens: int = Field(ge=1, description="Longest prompt served (tokens).")
    max_tokens: int = Field(ge=1, description="Most tokens generated per request.")
    rails: RailsPolicy = Field(
        default_factory=RailsPolicy,
        description="What the rails block, drop or redact (the defaults for a version "
        "registered before releases carried them).",
    )

    def tags(self) -> dict[str, str]:
        tags = {
            f"{PREFIX}{key}": str(value)
            for key, value in self.model_dump(exclude={"rails"}).items()
        }
        return tags | {f"{PREFIX}rails": self.rails.model_dump_json()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Release | None:
        """The record in a version's tags; None for a version registered without one. A record
        with a field missing or wrong is refused, naming it."""
        found = {k.removeprefix(PREFIX): v for k, v in tags.items() if k.startswith(PREFIX)}
        if not found:
            return None
        if "rails" in found:
            try:
                found["rails"] = json.loads(found["rails"])
            except json.JSONDecodeError as exc:
                raise ValueError(f"a broken release record: {PREFIX}rails: {exc}") from None
        try:
            return cls.model_validate(found)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"a broken release record: {problems}") from None

    def changes(self, before: Release | None) -> list[str]:
        """What differs from `before`, as `field: old -> new` (everything when there is none);
        the rails by their own fields, e.g. `rails.serving.retrieval: neutralise -> drop`."""
        now = _flat(self)
        if before is None:
            return [f"{key}: {value}" for key, value in now.items()]
        old = _flat(before)
        return [f"{key}: {old[key]} -> {now[key]}" for key in now if now[key] != old[key]]


def _flat(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """A model's fields, those of nested models as dotted keys."""
    flat: dict[str, Any] = {}
    for key in type(model).model_fields:
        value = getattr(model, key)
        if isinstance(value, BaseModel):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
