"""What the compression stage hands on: one row per candidate, and the one chosen."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tasks.evaluate.params import AnswerParams

UNCOMPRESSED = "uncompressed"
EXPERIMENT = "compress"  # MLflow experiment of compression runs


class CandidateRow(BaseModel):
    """One candidate measured the same way as the uncompressed model."""

    name: str = Field(description="Candidate name, e.g. int8-dynamic or magnitude-50%.")
    method: str = Field(description="The compression method that built it.")
    folder: str = Field(description="Candidate folder (safetensors, recipe, manifest).")
    size_bytes: int = Field(description="Weights on disk.")
    parameters: int = Field(description="Weights held (non-zero ones for sparse tensors).")
    latency_ms_p50: float = Field(description="CPU latency per generated token, median.")
    tokens_per_s: float = Field(description="Generated tokens per second on CPU.")
    perplexity: float = Field(description="Held-out perplexity.")
    answers: dict[str, float | None] = Field(
        default_factory=dict, description="Answer metrics' means on held-out questions."
    )
    broken: list[str] = Field(default_factory=list, description="Gate thresholds it broke.")


class CompressReport(BaseModel):
    """The compression stage's result: every candidate measured against the uncompressed
    model, and the one chosen."""

    run_id: str = Field(
        description="MLflow run of this compression; the chosen model is its `model` artifact."
    )
    source_run_id: str = Field(description="The fine-tuning run that was compressed.")
    snapshot_id: str = Field(description="Ingest snapshot whose held-out rows measured them.")
    baseline: CandidateRow = Field(description="The uncompressed model, measured the same way.")
    candidates: list[CandidateRow] = Field(description="Every candidate built, gated or not.")
    chosen: str = Field(description=f"Name of the chosen candidate, or {UNCOMPRESSED!r}.")
    lineage: dict[str, str] = Field(
        description="data_snapshot, feature_view, base_model, base_model_sha256, "
        "training_run, compression_method."
    )

    @property
    def chosen_row(self) -> CandidateRow:
        if self.chosen == UNCOMPRESSED:
            return self.baseline
        return next(row for row in self.candidates if row.name == self.chosen)

    @property
    def gate_passed(self) -> bool:
        return self.chosen != UNCOMPRESSED


ANSWER_COLUMNS = {"token_f1": "token F1", "groundedness": "grounded", "empty": "empty"}


def comparison_markdown(report: CompressReport) -> str:
    """One short row per candidate against the uncompressed model, the gate second so that it
    stays on screen; why each failed, and the long ids and paths, in lists under the table."""
    base = report.baseline
    answers = " | ".join(ANSWER_COLUMNS.values())
    lines = [
        f"# Compression of run `{report.source_run_id}`",
        "",
        f"Snapshot `{report.snapshot_id}`; MLflow run `{report.run_id}`. **Chosen: "
        f"{report.chosen}**" + ("" if report.gate_passed else " (no candidate passed the gate)"),
        "",
        f"| candidate | gate | size | ms/token p50 | perplexity | {answers} | weights held |",
        "|---|---|---:|---:|---:|" + "---:|" * len(ANSWER_COLUMNS) + "---:|",
    ]
    for row in [base, *report.candidates]:
        lines.append(
            f"| {row.name} | {_gate(report, row)} | {row.size_bytes / 2**20:.1f} MiB "
            f"x{row.size_bytes / base.size_bytes:.2f} | {row.latency_ms_p50:.2f} "
            f"x{row.latency_ms_p50 / base.latency_ms_p50:.2f} | {row.perplexity:.2f} "
            f"{row.perplexity / base.perplexity - 1:+.1%} | "
            + " | ".join(_mean(row, m) for m in ANSWER_COLUMNS)
            + f" | {_count(row.parameters)} |"
        )
    lines += ["", "x and % are against the uncompressed model; empty = share of empty answers."]
    failed = [r for r in report.candidates if r.broken]
    if failed:
        lines += ["", "**Why candidates failed the gate**", ""]
        lines += [f"- {r.name}: {'; '.join(r.broken)}" for r in failed]
    lines += ["", f"Chosen model's folder: `{report.chosen_row.folder}`"]
    return "\n".join(lines) + "\n"


def _gate(report: CompressReport, row: CandidateRow) -> str:
    if row is report.baseline:
        return "baseline" + ("" if report.gate_passed else ", chosen")
    if row.broken:
        return f"**fail** ({len(row.broken)})"
    return "pass, chosen" if row.name == report.chosen else "pass"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _mean(row: CandidateRow, metric: str) -> str:
    value = row.answers.get(metric)
    return "—" if value is None else f"{value:.3f}"


Method = Literal[
    "merge",
    "bf16",
    "fp16",
    "int8_dynamic",
    "int8_static",
    "magnitude",
    "structured",
    "lowrank",
    "distill",
]


class GateParams(BaseModel):
    """Thresholds against the uncompressed model; empty switches one off."""

    max_perplexity_increase: float | None = Field(0.03, ge=0, description="0.03 = +3% at most.")
    min_size_reduction: float | None = Field(0.4, ge=0, lt=1, description="0.4 = 40% smaller.")
    max_latency_ratio: float | None = Field(None, gt=0, description="1.0 = no slower.")


class AnswerGateParams(BaseModel):
    """The answer half of the gate: how far each answer metric's mean may fall."""

    enabled: bool = Field(True, description="Measure answers (off = perplexity, size, speed).")
    questions: int = Field(60, ge=1, description="Held-out questions each candidate answers.")
    max_answer_drop: dict[str, float] = Field(
        default_factory=lambda: {"token_f1": 0.03, "groundedness": 0.05, "empty": 0.05},
        description="Metric -> largest worsening of its mean allowed (0.03 = 3 points; for "
        "empty answers, a rise).",
    )
    answers: AnswerParams = Field(default_factory=AnswerParams, description="How they answer.")


class CompressParams(BaseModel):
    """Which compressions to try, how hard, and what a candidate must keep to pass."""

    source_run_id: str | None = Field(None, description="Fine-tuning run; empty = the latest.")
    methods: list[Method] = Field(
        default=[
            "merge",
            "bf16",
            "int8_dynamic",
            "int8_static",
            "magnitude",
            "structured",
            "lowrank",
        ],
        description="Candidates to build; 'distill' trains a smaller student (slow).",
    )
    half_dtype: Literal["bf16", "fp16"] = Field("bf16", description="Half-precision type.")
    sparsity: float = Field(0.5, gt=0, lt=1, description="Magnitude pruning: share of zeros.")
    structured_target: Literal["mlp", "heads"] = Field(
        "mlp", description="Structured pruning removes MLP channels or attention heads."
    )
    structured_fraction: float = Field(0.25, gt=0, lt=1, description="Share removed per layer.")
    lowrank_energy: float = Field(0.9, gt=0, le=1, description="Singular value energy kept.")
    recovery_steps: int = Field(0, ge=0, description="Fine-tune after pruning/low-rank (0=off).")
    distill_steps: int = Field(60, ge=1, description="Distillation steps.")
    student_layers: int | None = Field(None, ge=1, description="Empty = half the teacher's.")
    distill_temperature: float = Field(2.0, gt=0, description="Softens both distributions.")
    distill_alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KL term.")
    learning_rate: float = Field(1e-3, gt=0, description="Recovery and distillation.")
    calibration_rows: int = Field(16, ge=1, description="Held-out rows for static int8.")
    new_tokens: int = Field(32, ge=1, description="Generated tokens per latency repeat.")
    gate: GateParams = Field(
        default_factory=GateParams, description="What a candidate must keep to be chosen."
    )
    answer_gate: AnswerGateParams = Field(
        default_factory=AnswerGateParams, description="What its answers must keep."
    )
