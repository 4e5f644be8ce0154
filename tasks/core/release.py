"""A release: what travels with a registered version besides its weights, so that serving it,
rolling back to it or comparing it in a canary means the same prompt, retrieval and limits.

It is kept as the version's `release.*` tags; the instruction text itself is a version in
MLflow's prompt registry, named by its URI (`prompts:/llmops-instruction/<n>`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

    def tags(self) -> dict[str, str]:
        return {f"{PREFIX}{key}": str(value) for key, value in self.model_dump().items()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Release | None:
        """The record in a version's tags; None for a version registered without one. A record
        with a field missing or wrong is refused, naming it."""
        found = {k.removeprefix(PREFIX): v for k, v in tags.items() if k.startswith(PREFIX)}
        if not found:
            return None
        try:
            return cls.model_validate(found)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"a broken release record: {problems}") from None

    def changes(self, before: Release | None) -> list[str]:
        """What differs from `before`, as `field: old -> new` (everything when there is none)."""
        now = self.model_dump()
        if before is None:
            return [f"{key}: {value}" for key, value in now.items()]
        old = before.model_dump()
        return [f"{key}: {old[key]} -> {now[key]}" for key in now if now[key] != old[key]]
