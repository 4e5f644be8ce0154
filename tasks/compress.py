"""Compression stage: candidates from a fine-tuned model, each measured the same way, gated."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import mlflow
import torch
from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from tasks.caching import source_run_key, stage_task
from tasks.clients.feature_store import CHUNK_VIEW
from tasks.clients.ray_cluster import ensure_ray
from tasks.clients.tracking import start_run
from tasks.compress_prepare import (
    MeasureData,
    Source,
    lineage,
    load_finetuned,
    measure_data,
    resolve_source,
)
from tasks.compress_report import (
    EXPERIMENT,
    UNCOMPRESSED,
    CandidateRow,
    CompressReport,
    comparison_markdown,
)
from tasks.compression import lowrank, prune, quantize
from tasks.compression.measure import measure
from tasks.compression.store import load_candidate, save_candidate
from tasks.compression.train import make_student, train_candidate
from tasks.core.gate import Gate, Measured, choose
from tasks.settings import Settings, get_settings

Method = Literal[
    "merge", "bf16", "fp16", "int8_dynamic", "int8_static",
    "magnitude", "structured", "lowrank", "distill",
]  # fmt: skip
TRAINABLE = {"magnitude", "structured", "lowrank"}


class GateParams(BaseModel):
    """Thresholds against the uncompressed model; empty switches one off."""

    max_perplexity_increase: float | None = Field(0.03, ge=0, description="0.03 = +3% at most.")
    min_size_reduction: float | None = Field(0.4, ge=0, lt=1, description="0.4 = 40% smaller.")
    max_latency_ratio: float | None = Field(None, gt=0, description="1.0 = no slower.")


class CompressParams(BaseModel):
    """Which compressions to try, how hard, and what a candidate must keep to pass."""

    source_run_id: str | None = Field(None, description="Fine-tuning run; empty = the latest.")
    methods: list[Method] = Field(
        default=["merge", "bf16", "int8_dynamic", "int8_static", "magnitude", "structured",
                 "lowrank"],
        description="Candidates to build; 'distill' trains a smaller student (slow).",
    )  # fmt: skip
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


def build(
    method: Method, model: torch.nn.Module, params: CompressParams, data: MeasureData
) -> tuple[str, list[dict], set[str]]:
    """Apply one method in place: the candidate's name, recipe steps, sparse tensors."""
    if method == "merge":
        return "merged", [], set()
    if method in ("bf16", "fp16"):
        return method, [quantize.to_half(model, method)], set()
    if method == "int8_dynamic":
        return "int8-dynamic", [quantize.quantize_dynamic_int8(model)], set()
    if method == "int8_static":
        return "int8-static", [quantize.quantize_static_int8(model, data.calibration)], set()
    if method == "magnitude":
        step, sparse = prune.prune_magnitude(model, params.sparsity)
        return f"magnitude-{params.sparsity:.0%}", [step], sparse
    if method == "structured":
        step = prune.prune_structured(model, params.structured_target, params.structured_fraction)
        return (
            f"structured-{params.structured_target}-{params.structured_fraction:.0%}",
            [step],
            set(),
        )
    if method == "lowrank":
        step = lowrank.factorize_lowrank(model, params.lowrank_energy)
        return f"lowrank-{params.lowrank_energy:.0%}", [step], set()
    raise ValueError(f"unknown compression method {method!r}")


def compress(params: CompressParams, settings: Settings) -> CompressReport:
    source = resolve_source(settings, params.source_run_id)
    data = measure_data(settings, source, params.calibration_rows)
    finetuned = load_finetuned(source)
    with start_run(settings, f"compress-{source.run_id[:8]}", experiment=EXPERIMENT) as run:
        out = settings.models_dir / "compressed" / run.info.run_id
        folders = (source.base_path, source.folder) if source.adapter else (source.folder,)
        baseline = _row(UNCOMPRESSED, "none", finetuned, data, folders, params)
        merged = finetuned.merge_and_unload() if source.adapter else finetuned
        reference = save_candidate(
            merged, out / UNCOMPRESSED, {"method": UNCOMPRESSED, "steps": []}, source.folder
        )
        rows = [
            _candidate(method, reference, out, source, data, params, settings)
            for method in params.methods
            if not (method == "merge" and not source.adapter)  # nothing to merge
        ]
        chosen, broken = choose(_measured(baseline), [_measured(r) for r in rows], _gate(params))
        rows = [r.model_copy(update={"broken": broken[r.name]}) for r in rows]
        report = CompressReport(
            run_id=run.info.run_id,
            source_run_id=source.run_id,
            snapshot_id=source.snapshot_id,
            baseline=baseline.model_copy(update={"folder": str(reference)}),
            candidates=rows,
            chosen=chosen or UNCOMPRESSED,
            lineage={**lineage(source, CHUNK_VIEW), "compression_method": chosen or UNCOMPRESSED},
        )
        _log_comparison(report, params)
    return report


def _candidate(
    method: Method,
    reference: Path,
    out: Path,
    source: Source,
    data: MeasureData,
    params: CompressParams,
    settings: Settings,
) -> CandidateRow:
    """Build, save, reload from disk (what is measured is what was saved), train if asked."""
    model = load_candidate(reference)
    with start_run(settings, method, experiment=EXPERIMENT, nested=True) as child:
        train = {"batch_size": source.batch_size, "seq_len": source.seq_len,
                 "learning_rate": params.learning_rate}  # fmt: skip
        if method == "distill":
            layers = params.student_layers or max(1, model.config.num_hidden_layers // 2)
            name, steps, sparse = f"distill-{layers}L", [], set()
            model = make_student(model, layers)
        else:
            name, steps, sparse = build(method, model, params, data)
        folder = save_candidate(model, out / name, {"method": method, "steps": steps}, reference,
                                sparse=sparse)  # fmt: skip
        trained = params.distill_steps if method == "distill" else params.recovery_steps
        if trained and (method in TRAINABLE or method == "distill"):
            ensure_ray(settings)
            teacher = reference if method == "distill" else None
            distill = {"temperature": params.distill_temperature, "alpha": params.distill_alpha}
            train_candidate(folder, trained, data.train, settings, child.info.run_id, train,
                            teacher=teacher, distill=distill)  # fmt: skip
            name = name if method == "distill" else f"{name}+recovery"
            folder = folder.rename(folder.with_name(name))
        row = _row(name, method, load_candidate(folder), data, (folder,), params)
        mlflow.log_params({"method": method, "candidate": name, "trained_steps": trained})
        mlflow.log_metrics(row.model_dump(include=_METRICS))
    return row


_METRICS = {"size_bytes", "parameters", "latency_ms_p50", "tokens_per_s", "perplexity"}


def _row(
    name: str,
    method: str,
    model: torch.nn.Module,
    data: MeasureData,
    folders: tuple[Path, ...],
    params: CompressParams,
) -> CandidateRow:
    torch.manual_seed(0)
    found = measure(model, data.evaluation, data.prompt, folders, params.new_tokens)
    return CandidateRow(name=name, method=method, folder=str(folders[-1]), **found.__dict__)


def _measured(row: CandidateRow) -> Measured:
    return Measured(row.name, row.size_bytes, row.latency_ms_p50, row.perplexity)


def _gate(params: CompressParams) -> Gate:
    return Gate(**params.gate.model_dump())


def _log_comparison(report: CompressReport, params: CompressParams) -> None:
    mlflow.log_params({"methods": ",".join(params.methods), **params.gate.model_dump()})
    mlflow.set_tags({**report.lineage, "chosen": report.chosen})
    rows = [report.baseline, *report.candidates]
    mlflow.log_table(
        {key: [getattr(r, key) for r in rows] for key in ("name", "method", *_METRICS)},
        "comparison.json",
    )
    mlflow.log_text(comparison_markdown(report), "comparison.md")
    mlflow.log_artifacts(report.chosen_row.folder, artifact_path="model")


@stage_task(source_run_key)
def compress_task(params: CompressParams) -> CompressReport:
    return compress(params, get_settings())


@task
def publish_compress_report(report: CompressReport) -> None:
    create_markdown_artifact(
        comparison_markdown(report),
        key="compress-report",
        description=f"Compression candidates; chosen: {report.chosen}",
    )
