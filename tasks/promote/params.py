"""What registration and promotion take and hand on: parameters, the candidate, its scores,
the decision, a reviewer's answer, and the report."""

from __future__ import annotations

from datetime import datetime

from prefect.input import RunInput
from pydantic import BaseModel, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from tasks.clients.registry import MODEL_NAME, NONE, AliasChange
from tasks.compress.params import UNCOMPRESSED, CompressReport
from tasks.core.paired import Verdict
from tasks.core.promotion import REGISTERED_MODEL
from tasks.core.rails import RailsPolicy
from tasks.evaluate.compare import ComparisonRow, comparison_table
from tasks.evaluate.params import AnswerParams, ContractParams

SCORE_COLUMNS = ("candidate_bpb", "base_bpb", "champion_bpb")
ANSWER_METRICS = ("token_f1", "groundedness", "refusal_correct", "empty")  # kept in tags
LINEAGE_KEYS = (
    "data_snapshot",
    "feature_view",
    "base_model",
    "base_model_path",
    "base_model_sha256",
    "training_run",
    "training_method",
    "compression_method",
)


class PromoteParams(BaseModel):
    """Which compressed model to register, and how strict its promotion is."""

    # Plumbing, not a choice: the nightly passes its compression report; not in the form.
    compress_report: SkipJsonSchema[CompressReport | None] = Field(
        None, description="The compression stage's report (the nightly pipeline passes it)."
    )
    compress_run_id: str | None = Field(
        None, description="Or a compression run's MLflow id; neither = the latest compression."
    )
    model_name: str = Field(
        REGISTERED_MODEL, pattern=MODEL_NAME.pattern, description="Registered model to promote in."
    )
    min_improvement: float = Field(
        0.0, ge=0, lt=1, description="Relative bits/byte gain needed over base and champion."
    )
    canary: bool = Field(
        False,
        description="A passing model stays challenger for a canary rollout to decide on live "
        "traffic (when there is a champion); the nightly sets it when its canary stage runs.",
    )
    answer_gate: bool = Field(
        True,
        description="Compare answers on held-out questions (the quality contract) beside bits "
        "per byte; off = bits per byte alone, for a model that is not an assistant.",
    )
    contract: ContractParams = Field(
        default_factory=ContractParams, description="How answers are compared."
    )
    answers: AnswerParams = Field(default_factory=AnswerParams, description="How they answer.")
    eval_questions: int = Field(120, ge=1, description="At most this many held-out questions.")
    require_approval: bool = Field(False, description="Pause for a person to approve or reject.")
    approval_timeout_s: int = Field(
        3600, ge=1, title="Approval wait (s)", description="Wait this long for a decision."
    )
    approval_poll_s: int = Field(
        5, ge=1, title="Approval check every (s)", description="How often the paused run checks."
    )

    @model_validator(mode="after")
    def _one_source(self) -> PromoteParams:
        if self.compress_report is not None and self.compress_run_id is not None:
            raise ValueError("give compress_report or compress_run_id, not both")
        return self


class RollbackParams(BaseModel):
    """Put the previous champion back in service."""

    model_name: str = Field(
        REGISTERED_MODEL, pattern=MODEL_NAME.pattern, description="Registered model to roll back."
    )
    reason: str = Field("manual rollback", min_length=1, description="Recorded in the history.")
    requested_by: str = Field("", description="Who asks (recorded); empty = this flow run.")


class ReleaseParams(BaseModel):
    """Release a version again with another instruction, top-k, limits or rails: a new version
    of the same files, made the challenger, so the change goes through the canary like a new
    model."""

    model_name: str = Field(
        REGISTERED_MODEL, pattern=MODEL_NAME.pattern, description="Registered model."
    )
    from_version: str | None = Field(
        None,
        pattern=r"^\d+$",
        description="Whose files and release to start from; empty = the champion.",
    )
    instruction: str | None = Field(
        None,
        description="The new instruction put before the passages (a new version in MLflow's "
        "prompt registry); empty = unchanged.",
    )
    top_k: int | None = Field(
        None, ge=1, le=20, description="Passages retrieved; empty = unchanged."
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens generated; empty = unchanged."
    )
    max_prompt_tokens: int | None = Field(
        None, ge=1, description="Longest prompt served; empty = unchanged."
    )
    rails: RailsPolicy | None = Field(
        None,
        description="The rails' settings served with it (input, retrieval and output rails; "
        "what ingest does with secrets and personal data); empty = unchanged.",
    )
    requested_by: str = Field("", description="Who asks (recorded); empty = this flow run.")

    def changes(self) -> dict[str, object]:
        fields = ("top_k", "max_tokens", "max_prompt_tokens", "rails")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}


class Candidate(BaseModel):
    """What promotion needs from a compression run."""

    compress_run_id: str
    training_run_id: str
    snapshot_id: str
    chosen: str
    gate_passed: bool
    folder: str | None = None
    lineage: dict[str, str]

    @classmethod
    def from_report(cls, report: CompressReport) -> Candidate:
        return cls(
            compress_run_id=report.run_id,
            training_run_id=report.lineage.get("training_run", report.source_run_id),
            snapshot_id=report.lineage.get("data_snapshot", report.snapshot_id),
            chosen=report.chosen,
            gate_passed=report.gate_passed,
            folder=report.chosen_row.folder,
            lineage={"compression_method": report.chosen_row.method, **report.lineage},
        )

    @classmethod
    def from_run_tags(cls, run_id: str, tags: dict[str, str]) -> Candidate:
        """From the tags the compression stage sets on its MLflow run: lineage and `chosen`."""
        missing = [k for k in ("chosen", "training_run", "data_snapshot") if k not in tags]
        if missing:
            raise ValueError(f"MLflow run {run_id} is not a compression run: no tags {missing}")
        return cls(
            compress_run_id=run_id,
            training_run_id=tags["training_run"],
            snapshot_id=tags["data_snapshot"],
            chosen=tags["chosen"],
            gate_passed=tags["chosen"] != UNCOMPRESSED,
            lineage={k: tags[k] for k in LINEAGE_KEYS if k in tags},
        )


class Registered(BaseModel):
    model_name: str
    version: str
    parent_version: str
    manifest_digest: str
    reused: bool = Field(description="Registered by an earlier run with the same files.")


class AnswerEvaluation(BaseModel):
    """Candidate, base and champion answering the same held-out questions: each one's means
    (its MLflow evaluation run holds every answer) and the paired verdicts."""

    set_id: str
    questions: int
    means: dict[str, dict[str, float | None]]
    mlflow_runs: dict[str, str]
    comparisons: list[ComparisonRow]
    vs_base: Verdict
    vs_champion: Verdict | None = None
    base_reasons: list[str] = []
    champion_reasons: list[str] = []

    def markdown(self) -> str:
        return (
            f"Answers to {self.questions} held-out questions (set `{self.set_id}`), paired:\n\n"
            f"{comparison_table(self.comparisons)}\n"
        )


class Evaluation(BaseModel):
    """Bits per byte of candidate, base and champion on the candidate's held-out documents,
    and their answers to its held-out questions (None when the answer gate is off)."""

    snapshot_id: str
    texts: int
    utf8_bytes: int
    seq_len: int
    version: str
    candidate_bpb: float
    base_model_path: str
    base_bpb: float
    champion_version: str | None = None
    champion_bpb: float | None = None
    answers: AnswerEvaluation | None = None

    def metrics(self) -> dict[str, float]:
        scores = {"candidate_bpb": self.candidate_bpb, "base_bpb": self.base_bpb}
        champion = self.champion_bpb
        scores |= {"champion_bpb": champion} if champion is not None else {}
        for role, means in (self.answers.means if self.answers else {}).items():
            scores |= {
                f"{role}_{m}": v for m, v in means.items() if m in ANSWER_METRICS and v is not None
            }
        return scores

    def markdown(self) -> str:
        names = {
            "candidate_bpb": f"candidate v{self.version}",
            "base_bpb": "base model",
            "champion_bpb": f"champion v{self.champion_version}",
        }
        scores = self.metrics()
        rows = "\n".join(f"| {names[k]} | {scores[k]:.4f} |" for k in SCORE_COLUMNS if k in scores)
        return (
            f"Bits per byte on {self.texts} held-out documents ({self.utf8_bytes} bytes) of "
            f"snapshot `{self.snapshot_id}`, lower is better:\n\n"
            f"| model | bits/byte |\n|---|---:|\n{rows}\n"
        ) + (f"\n{self.answers.markdown()}" if self.answers else "")


class PromotionDecision(BaseModel):
    promote: bool
    reasons: list[str]


class ApprovalInput(RunInput):
    """The form a paused promotion shows in the Prefect UI."""

    approve: bool = Field(description="Promote this version to champion?")
    reviewer: str = Field(description="Your name, recorded with the decision.")
    reason: str = Field(description="Why, recorded with the decision.")


class Approval(BaseModel):
    approve: bool
    reviewer: str
    reason: str
    at: datetime


class PromoteReport(BaseModel):
    model_name: str
    version: str
    parent_version: str
    promoted: bool
    canary_pending: bool = Field(False, description="Passed; a canary rollout decides next.")
    champion: str | None
    challenger: str | None
    evaluation: Evaluation
    reasons: list[str]
    approval: Approval | None = None
    changes: list[AliasChange] = Field(default_factory=list, description="Alias changes made.")

    @property
    def verdict(self) -> str:
        if self.promoted:
            return "promoted to champion"
        return (
            "challenger, for a canary rollout to decide" if self.canary_pending else "not promoted"
        )

    def aliases_line(self) -> str:
        """Who holds each alias now, and the champion this version was registered over."""
        parent = version_name(self.parent_version, "none (no champion when it was registered)")
        champion, challenger = version_name(self.champion), version_name(self.challenger)
        return f"Champion now: {champion}; challenger: {challenger}; parent: {parent}"

    def markdown(self) -> str:
        reasons = "\n".join(f"- {r}" for r in self.reasons)
        return (
            f"# {self.model_name} v{self.version}: {self.verdict}\n\n{self.aliases_line()}\n\n"
            f"{self.evaluation.markdown()}\n## Reasons\n\n{reasons}\n"
        )


def version_name(version: str | None, missing: str = "none") -> str:
    # The registry writes a missing holder as NONE; "vnone" would read as a version's name.
    return missing if version in (None, "", NONE) else f"v{version}"


def history_rows(changes: list[AliasChange]) -> list[dict[str, object]]:
    """The alias history as table rows for the Prefect UI."""
    return [
        {
            "time (UTC)": c.at.strftime("%Y-%m-%d %H:%M:%S"),
            "alias": c.alias,
            "version": c.version,
            "previous": c.previous,
            "action": c.action,
            "by": c.actor,
            "reason": c.reason,
            **{k: round(c.metrics[k], 4) if k in c.metrics else "" for k in SCORE_COLUMNS},
        }
        for c in changes
    ]
