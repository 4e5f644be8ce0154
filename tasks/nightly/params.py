"""What the nightly's form asks: the few decisions a person usually makes on top, and every
stage's own parameters, for the rare change, as one JSON field (`advanced`) instead of a
hundred form fields. One control per decision: a setting that has a choice on top is taken
out of `advanced` (a value found there becomes the choice, unless the choice is given too).

Python callers may pass stage models directly (`NightlyParams(finetune=FinetuneParams(...))`);
their fields land in the choices and `advanced`, so a run records exactly what it ran with."""

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
# choice on top -> (stage, its field)
CHOICES = {
    "source_dir": ("ingest", "source_dir"),
    "base_model": ("finetune", "base_model"),
    "training_steps": ("finetune", "max_steps"),
    "training_data": ("finetune", "data"),
    "require_approval": ("promote", "require_approval"),
}
_FINETUNE = FinetuneParams.model_fields


class NightlyParams(BaseModel):
    """The nightly run: ingest → embed → fine-tune → compress → promote → canary rollout."""

    source_dir: str = Field(
        "",
        title="Documents folder",
        description="Where the documents are; empty = the demo corpus (Python's documentation).",
    )
    base_model: str = Field(
        _FINETUNE["base_model"].default,
        title="Base model",
        description="A local folder or a cached hub id; 'scratch' builds a small model from "
        "random weights (it learns the corpus' language, not yet to answer).",
    )
    training_steps: int = Field(
        _FINETUNE["max_steps"].default, ge=1, title="Training steps", description="Optimizer steps."
    )
    training_data: Literal["text", "instructions"] = Field(
        _FINETUNE["data"].default,
        title="Training data",
        description="text: the documents; instructions: questions answered from retrieved "
        "passages, in the serving prompt's format.",
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
        '"compress": {"methods": ["int8_dynamic"]}}. Stages: ingest, embed, finetune, '
        "compress, promote, canary. Left out = the defaults; the choices above win.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_control_per_decision(cls, data: Any) -> Any:
        """Stage models from Python go to `advanced` (the fields they set); `canary=None` turns
        the rollout off; a setting with a choice on top leaves `advanced` for that choice."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        advanced = {k: dict(v) for k, v in (data.get("advanced") or {}).items() if k in STAGES}
        advanced |= {k: v for k, v in (data.get("advanced") or {}).items() if k not in STAGES}
        for stage in STAGES:
            if stage not in data or isinstance(data[stage], bool):
                continue  # `canary: true/false` is the choice itself
            value = data.pop(stage)
            if stage == "canary" and value is None:
                data["canary"] = False
                continue
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_unset=True)
            advanced[stage] = dict(value)
        for choice, (stage, name) in CHOICES.items():
            if isinstance(advanced.get(stage), dict) and name in advanced[stage]:
                value = advanced[stage].pop(name)
                data.setdefault(choice, "" if value is None else value)
        data["advanced"] = {k: v for k, v in advanced.items() if v != {} or k not in STAGES}
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

    def _stage(self, stage: str) -> Any:
        chosen = {
            name: getattr(self, choice)
            for choice, (owner, name) in CHOICES.items()
            if owner == stage
        }
        if stage == "ingest":
            chosen["source_dir"] = self.source_dir or None
        return STAGES[stage].model_validate({**self.advanced.get(stage, {}), **chosen})

    @property
    def ingest(self) -> IngestParams:
        return self._stage("ingest")

    @property
    def embed(self) -> EmbedParams:
        return self._stage("embed")

    @property
    def finetune(self) -> FinetuneParams:
        return self._stage("finetune")

    @property
    def compress(self) -> CompressParams:
        return self._stage("compress")

    @property
    def promote(self) -> PromoteParams:
        return self._stage("promote")

    @property
    def rollout(self) -> CanaryParams | None:
        """The canary's parameters, or None when the rollout is off."""
        return self._stage("canary") if self.canary else None

    def with_stages(self, **stages: BaseModel | None) -> NightlyParams:
        """A copy with these stages' parameters replaced: each model given decides its stage,
        its choices on top included (validated like the constructor)."""
        data = self.model_dump()
        data["advanced"] = {k: v for k, v in data["advanced"].items() if k not in stages}
        for choice, (stage, _) in CHOICES.items():
            if stage in stages:
                data.pop(choice)
        return NightlyParams.model_validate({**data, **stages})
