"""What the nightly's form asks: the few decisions a person usually makes on top, and every
stage's own parameters, for the rare change, as one JSON field (`advanced`) instead of a
hundred form fields. Each decision has one control: a choice made on top overrides the same
setting in `advanced`, and a choice left empty keeps the stage's default.

Python callers may pass stage models directly (`NightlyParams(finetune=FinetuneParams(...))`);
they land in `advanced`, so a run records exactly what it ran with."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tasks.canary.params import CanaryParams
from tasks.compress.params import CompressParams
from tasks.embed.params import EmbedParams
from tasks.finetune.params import FinetuneParams
from tasks.ingest.params import IngestParams
from tasks.promote.params import PromoteParams

STAGES: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "embed": EmbedParams,
    "finetune": FinetuneParams,
    "compress": CompressParams,
    "promote": PromoteParams,
    "canary": CanaryParams,
}


class NightlyParams(BaseModel):
    """The nightly run: ingest → embed → fine-tune → compress → promote → canary rollout."""

    source_dir: str | None = Field(
        None,
        title="Documents folder",
        description="Where the documents are; empty = the demo corpus (Python's documentation).",
    )
    base_model: str | None = Field(
        None,
        title="Base model",
        description="A local folder or a cached hub id to fine-tune; empty = the small model "
        "built from scratch (it learns the corpus' language, not to answer).",
    )
    training_steps: int | None = Field(
        None,
        ge=1,
        title="Training steps",
        description=f"Optimizer steps; empty = {FinetuneParams.model_fields['max_steps'].default}.",
    )
    training_data: Literal["text", "instructions"] | None = Field(
        None,
        title="Training data",
        description="text: the documents; instructions: questions answered from retrieved "
        "passages, in the serving prompt's format. Empty = text.",
    )
    require_approval: bool = Field(
        False,
        title="Ask a person before promoting",
        description="The run pauses at promotion until someone approves or rejects in the UI.",
    )
    canary: bool = Field(
        True,
        title="Canary rollout",
        description="Roll a passing model out on the serving app step by step before it "
        "becomes champion (when there is a champion to face); off = promote on the held-out "
        "comparison alone.",
    )
    advanced: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        title="Advanced: stage parameters (JSON)",
        description='Any stage\'s own parameters, e.g. {"finetune": {"learning_rate": 0.001}, '
        '"compress": {"methods": ["int8-dynamic"]}}. Stages: ingest, embed, finetune, '
        "compress, promote, canary. Left out = the defaults; the choices above win.",
    )

    @model_validator(mode="before")
    @classmethod
    def _stage_models_into_advanced(cls, data: Any) -> Any:
        """`NightlyParams(finetune=FinetuneParams(...), canary=None)` from Python: stage models
        go to `advanced` (as the fields they set), `canary=None` turns the rollout off."""
        if not isinstance(data, dict) or not set(data) & set(STAGES):
            return data
        data = dict(data)
        advanced = dict(data.get("advanced") or {})
        for stage in STAGES:
            if stage not in data or isinstance(data[stage], bool):
                continue
            value = data.pop(stage)
            if stage == "canary" and value is None:
                data["canary"] = False
                continue
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_unset=True)
            advanced[stage] = value
        data["advanced"] = advanced
        return data

    @field_validator("advanced")
    @classmethod
    def _known_stages_with_valid_parameters(
        cls, advanced: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(advanced) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the stages are {sorted(STAGES)}")
        for stage, values in advanced.items():
            try:  # a wrong field fails here, named, not when its stage starts
                STAGES[stage].model_validate(values)
            except ValidationError as e:
                wrong = "; ".join(
                    f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
                )
                raise ValueError(f"{stage}: {wrong}") from None
        return advanced

    def _stage(self, stage: str, **choices: Any) -> Any:
        chosen = {k: v for k, v in choices.items() if v is not None}
        return STAGES[stage].model_validate({**self.advanced.get(stage, {}), **chosen})

    @property
    def ingest(self) -> IngestParams:
        return self._stage("ingest", source_dir=self.source_dir)

    @property
    def embed(self) -> EmbedParams:
        return self._stage("embed")

    @property
    def finetune(self) -> FinetuneParams:
        return self._stage(
            "finetune",
            base_model=self.base_model,
            max_steps=self.training_steps,
            data=self.training_data,
        )

    @property
    def compress(self) -> CompressParams:
        return self._stage("compress")

    @property
    def promote(self) -> PromoteParams:
        return self._stage("promote", require_approval=self.require_approval or None)

    @property
    def rollout(self) -> CanaryParams | None:
        """The canary's parameters, or None when the rollout is off."""
        return self._stage("canary") if self.canary else None

    def with_stages(self, **stages: BaseModel | None) -> NightlyParams:
        """A copy with these stages' parameters replaced (validated like the constructor)."""
        data = self.model_dump()
        data["advanced"] = {k: v for k, v in data["advanced"].items() if k not in stages}
        return NightlyParams.model_validate({**data, **stages})
