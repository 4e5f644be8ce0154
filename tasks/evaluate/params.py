"""What an evaluation takes (a target, a set, how to answer) and what it reports."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from tasks.core.promotion import CHAMPION, REGISTERED_MODEL

EXPERIMENT = "evaluate"


class EvalSetParams(BaseModel):
    """Which questions: a stored set, a golden JSONL file, or generated from a snapshot."""

    set_id: str | None = Field(None, description="A stored evaluation set's id.")
    golden_path: str | None = Field(
        None, description="A golden set (JSONL: question, reference, source_ids) to validate."
    )
    snapshot_id: str | None = Field(
        None, description="Generate from this ingest snapshot's held-out side; empty = latest."
    )
    eval_fraction: float = Field(
        0.1, gt=0, lt=1, description="Held-out share: the fine-tuning split's, so no overlap."
    )
    max_questions: int = Field(200, ge=1, description="At most this many generated questions.")
    seed: int = Field(0, description="Seed of the unanswerable questions' choice.")

    @model_validator(mode="after")
    def _one_source(self) -> EvalSetParams:
        if self.set_id and self.golden_path:
            raise ValueError("give set_id or golden_path, not both")
        return self


class AnswerParams(BaseModel):
    """How answers are produced: the serving app's retrieval and prompt, greedy decoding."""

    top_k: int = Field(4, ge=1, le=20, description="Passages retrieved per question.")
    max_tokens: int = Field(48, ge=1, description="Most new tokens per answer.")
    batch_size: int = Field(8, ge=1, description="Questions decoded together (in-process).")


class EvaluateParams(BaseModel):
    """Evaluate one target on an evaluation set: a registered version (or alias), a fine-tuning
    or compression run's model, or an OpenAI-compatible endpoint. Nothing set = the champion."""

    model_name: str = Field(REGISTERED_MODEL, description="Registered model of `version`.")
    version: str | None = Field(None, description="Version number or alias; empty = champion.")
    run_id: str | None = Field(None, description="Or an MLflow fine-tuning run's model.")
    endpoint: str | None = Field(
        None, description="Or an OpenAI-compatible base URL (e.g. http://127.0.0.1:8000)."
    )
    endpoint_model: str | None = Field(None, description="The `model` field sent to it.")
    endpoint_retrieval: bool = Field(
        True,
        description="The endpoint is this platform's serving app and retrieves itself (`rag`); "
        "off = passages are retrieved here and put into the prompt (any endpoint).",
    )
    pin_version: str | None = Field(
        None, description="With the serving app: the served version to ask (version header)."
    )
    eval_set: EvalSetParams = Field(default_factory=EvalSetParams, description="The questions.")
    answers: AnswerParams = Field(default_factory=AnswerParams, description="How to answer.")

    @model_validator(mode="after")
    def _one_target(self) -> EvaluateParams:
        given = [n for n in ("version", "run_id", "endpoint") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError(f"give one target, not {' and '.join(given)}")
        return self

    @property
    def target(self) -> str:
        if self.endpoint:
            pinned = f" (version {self.pin_version})" if self.pin_version else ""
            return f"endpoint {self.endpoint}{pinned}"
        if self.run_id:
            return f"run {self.run_id}"
        return f"{self.model_name}@{self.version or CHAMPION}"


class MetricValue(BaseModel):
    mean: float | None
    n: int
    missing: int


class EvaluateReport(BaseModel):
    target: str
    set_id: str
    questions: int
    answerable: int
    metrics: dict[str, MetricValue]
    missing: dict[str, int] = Field(
        default_factory=dict, description="Why answers are missing, and how many each."
    )
    mlflow_run_id: str
    table: str
