"""What an evaluation takes (a target, a set, how to answer) and what it reports."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from tasks.core.promotion import CHAMPION, REGISTERED_MODEL
from tasks.core.scorers import METRICS

EXPERIMENT = "evaluate"


class ContractParams(BaseModel):
    """How two versions' answers are compared at a gate: the metric that must improve, the ones
    that must not get worse, and how sure the paired comparison must be."""

    primary: str = Field("token_f1", description="Must be better (interval above zero).")
    guards: list[str] = Field(
        default_factory=lambda: ["groundedness", "refusal_correct", "empty"],
        description="Must not be significantly worse.",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Of the paired bootstrap interval.")
    min_samples: int = Field(20, ge=2, description="Fewer paired questions: inconclusive.")
    resamples: int = Field(2000, ge=100, description="Bootstrap resamples.")

    @model_validator(mode="after")
    def _known_metrics(self) -> ContractParams:
        unknown = {self.primary, *self.guards} - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {sorted(METRICS)}")
        return self


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
        0.25, gt=0, lt=1, description="Held-out share: the fine-tuning split's, so no overlap."
    )
    max_questions: int = Field(200, ge=1, description="At most this many generated questions.")
    per_document: int = Field(8, ge=1, description="At most this many from one document.")
    seed: int = Field(0, description="Seed of the unanswerable questions' choice.")

    @model_validator(mode="after")
    def _one_source(self) -> EvalSetParams:
        if self.set_id and self.golden_path:
            raise ValueError("give set_id or golden_path, not both")
        return self


class AnswerParams(BaseModel):
    """How answers are produced: the serving app's retrieval and prompt, greedy decoding."""

    top_k: int = Field(
        4,
        ge=1,
        le=20,
        title="Passages per question",
        description="Passages retrieved per question.",
    )
    max_tokens: int = Field(48, ge=1, description="Most new tokens per answer.")
    batch_size: int = Field(8, ge=1, description="Questions decoded together (in-process).")
    threads: int = Field(1, ge=1, description="CPU threads decoding (in-process), as serving.")


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
    judge: bool = Field(
        False,
        description="Also grade faithfulness and relevance with an LLM judge (off by default; "
        "needs LLMOPS_JUDGE_URL, an OpenAI-compatible endpoint). Reported, never gated.",
    )

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


class JudgeRecord(BaseModel):
    """Who judged, with which prompt version, and why judged values are missing."""

    judge: str
    prompt: str = Field(description="The prompt version asked with (prompts:/name/version).")
    missing: dict[str, int] = Field(default_factory=dict)


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
    judge: JudgeRecord | None = Field(
        None, description="With a judge: its record; `metrics` then hold judge_* means too."
    )
