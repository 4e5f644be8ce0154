"""Release records in MLflow: the instruction as a version in the prompt registry, the rest as
`release.*` tags of the model version (`tasks.core.release`).

A version registered by the pipeline inherits its champion's release (a prompt promoted once
stays with the models trained after it); with no champion, or one registered without a record,
it gets the platform's defaults. A release of its own (a new prompt, top-k, limits or rails) is
a new version of the same files, which then goes through the canary like any challenger.
"""

from __future__ import annotations

from pydantic import BaseModel

from tasks.clients.registry import DIGEST_TAG, ModelRegistry
from tasks.core.context import INSTRUCTION
from tasks.core.promotion import CHALLENGER, CHAMPION
from tasks.core.release import INSTRUCTION_PROMPT, Release
from tasks.shared.settings import Settings

DEFAULT_TOP_K = 4  # what the serving API retrieved before releases named it


class ReleasedVersion(BaseModel):
    model_name: str
    version: str
    from_version: str
    release: Release
    changes: list[str]


class Releases:
    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings, self.registry = settings, registry

    def of(self, name: str, version: str) -> Release | None:
        return Release.from_tags(self.registry.version_tags(name, version))

    def instruction(self, release: Release | None) -> str:
        """The instruction text a release names (the code's default without a release)."""
        if release is None:
            return INSTRUCTION
        import mlflow.genai

        self._connect()
        return str(mlflow.genai.load_prompt(release.prompt).template)

    def instruction_uri(self, text: str) -> str:
        """The registered version holding exactly `text`: the latest one if it does, else a new
        version registered now."""
        import mlflow.genai

        if not text.strip():
            raise ValueError("an instruction must not be empty")
        self._connect()
        latest = mlflow.genai.load_prompt(
            f"prompts:/{INSTRUCTION_PROMPT}@latest", allow_missing=True, cache_ttl_seconds=0
        )
        if latest is None or latest.template != text:
            latest = mlflow.genai.register_prompt(
                INSTRUCTION_PROMPT,
                text,
                commit_message="The serving instruction of a release.",
                tags={"registered_by": "llmops"},
            )
        return f"prompts:/{INSTRUCTION_PROMPT}/{latest.version}"

    def default(self) -> Release:
        from tasks.clients.embedder import EMBEDDING_MODEL
        from tasks.clients.feature_store import CHUNK_VIEW

        return Release(
            prompt=self.instruction_uri(INSTRUCTION),
            top_k=DEFAULT_TOP_K,
            embedding_model=EMBEDDING_MODEL,
            index=CHUNK_VIEW,
            max_prompt_tokens=self.settings.serving_max_prompt_tokens,
            max_tokens=self.settings.serving_max_tokens,
        )

    def for_new_version(self, name: str) -> Release:
        """What a newly trained version is registered with: its champion's release, else the
        defaults."""
        champion = self.registry.aliases(name).get(CHAMPION)
        return (self.of(name, champion) if champion else None) or self.default()

    def release(
        self,
        name: str,
        from_version: str,
        changes: dict[str, object],
        instruction: str | None,
        actor: str,
    ) -> ReleasedVersion:
        """A new version of `from_version`'s files whose release differs by `changes` (fields
        of `Release`; `rails` a whole `RailsPolicy`) and/or a new `instruction`, made the
        challenger."""
        base = self.of(name, from_version) or self.default()
        update = dict(changes)
        if instruction is not None:
            update["prompt"] = self.instruction_uri(instruction)
        release = Release.model_validate({**base.model_dump(), **update})
        if release == base:
            raise ValueError(f"nothing changes: v{from_version} already has this release")
        source = self.registry.client.get_model_version(name, from_version)
        tags = {
            **{k: v for k, v in source.tags.items() if not k.startswith("release.")},
            **release.tags(),
            "parent_version": from_version,
            "released_from": from_version,
        }
        if DIGEST_TAG not in tags:
            raise ValueError(f"{name} v{from_version} has no {DIGEST_TAG}: not re-released")
        version = self.registry.register(name, source.run_id, tags)
        what = ", ".join(release.changes(base))
        self.registry.set_alias(
            name,
            CHALLENGER,
            version,
            action="register",
            reason=f"release of v{from_version}: {what}",
            actor=actor,
        )
        return ReleasedVersion(
            model_name=name,
            version=version,
            from_version=from_version,
            release=release,
            changes=release.changes(base),
        )

    def _connect(self) -> None:
        from tasks.clients.tracking import connect

        connect(self.settings)
