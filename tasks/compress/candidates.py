"""Compression stage: candidates from a fine-tuned model, each measured the same way, gated."""

from __future__ import annotations

from pathlib import Path

import torch

from tasks.clients import Clients
from tasks.clients.feature_store import CHUNK_VIEW
from tasks.clients.ray_cluster import ensure_ray
from tasks.clients.tracking import TrackedRun, start_run
from tasks.compress.answers import answer_means
from tasks.compress.measure import measure
from tasks.compress.methods import lowrank, prune, quantize
from tasks.compress.params import (
    EXPERIMENT,
    UNCOMPRESSED,
    CandidateRow,
    CompressParams,
    CompressReport,
    Method,
    comparison_markdown,
)
from tasks.compress.prepare import (
    MeasureData,
    Source,
    lineage,
    load_finetuned,
    measure_data,
    resolve_source,
)
from tasks.compress.recovery import make_student, train_candidate
from tasks.core.gate import Gate, Measured, choose
from tasks.shared.candidates import load_candidate, save_candidate
from tasks.shared.settings import Settings

TRAINABLE = {"magnitude", "structured", "lowrank"}


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
        out = settings.models_dir / "compressed" / run.run_id
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
        if params.answer_gate.enabled:
            baseline, rows = _with_answers(settings, source, reference, baseline, rows, params)
        chosen, broken = choose(_measured(baseline), [_measured(r) for r in rows], _gate(params))
        rows = [r.model_copy(update={"broken": broken[r.name]}) for r in rows]
        report = CompressReport(
            run_id=run.run_id,
            source_run_id=source.run_id,
            snapshot_id=source.snapshot_id,
            baseline=baseline.model_copy(update={"folder": str(reference)}),
            candidates=rows,
            chosen=chosen or UNCOMPRESSED,
            lineage={**lineage(source, CHUNK_VIEW), "compression_method": chosen or UNCOMPRESSED},
        )
        _log_comparison(run, report, params)
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
        train = {
            "batch_size": source.batch_size,
            "seq_len": source.seq_len,
            "learning_rate": params.learning_rate,
        }
        if method == "distill":
            layers = params.student_layers or max(1, model.config.num_hidden_layers // 2)
            name, steps, sparse = f"distill-{layers}L", [], set()
            model = make_student(model, layers)
        else:
            name, steps, sparse = build(method, model, params, data)
        folder = save_candidate(
            model, out / name, {"method": method, "steps": steps}, reference, sparse=sparse
        )
        trained = params.distill_steps if method == "distill" else params.recovery_steps
        if trained and (method in TRAINABLE or method == "distill"):
            ensure_ray(settings)
            teacher = reference if method == "distill" else None
            distill = {"temperature": params.distill_temperature, "alpha": params.distill_alpha}
            train_candidate(
                folder,
                trained,
                data.train,
                settings,
                child.run_id,
                train,
                teacher=teacher,
                distill=distill,
            )
            name = name if method == "distill" else f"{name}+recovery"
            folder = folder.rename(folder.with_name(name))
        row = _row(name, method, load_candidate(folder), data, (folder,), params)
        child.log_params({"method": method, "candidate": name, "trained_steps": trained})
        child.log_metrics(row.model_dump(include=_METRICS))
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


def _with_answers(
    settings: Settings,
    source: Source,
    reference: Path,
    baseline: CandidateRow,
    rows: list[CandidateRow],
    params: CompressParams,
) -> tuple[CandidateRow, list[CandidateRow]]:
    folders = {baseline.name: reference, **{r.name: Path(r.folder) for r in rows}}
    means = answer_means(Clients(settings), source, folders, params.answer_gate)
    return (
        baseline.model_copy(update={"answers": means[baseline.name]}),
        [r.model_copy(update={"answers": means[r.name]}) for r in rows],
    )


def _measured(row: CandidateRow) -> Measured:
    return Measured(row.name, row.size_bytes, row.latency_ms_p50, row.perplexity, row.answers)


def _gate(params: CompressParams) -> Gate:
    drops = params.answer_gate.max_answer_drop if params.answer_gate.enabled else {}
    return Gate(**params.gate.model_dump(), max_answer_drop=drops)


def _log_comparison(run: TrackedRun, report: CompressReport, params: CompressParams) -> None:
    run.log_params({"methods": ",".join(params.methods), **params.gate.model_dump()})
    run.set_tags({**report.lineage, "chosen": report.chosen})
    rows = [report.baseline, *report.candidates]
    table = {key: [getattr(r, key) for r in rows] for key in ("name", "method", *_METRICS)}
    for metric in params.answer_gate.max_answer_drop if params.answer_gate.enabled else ():
        table[metric] = [r.answers.get(metric) for r in rows]
    run.log_table(table, "comparison.json")
    run.log_text(comparison_markdown(report), "comparison.md")
    run.log_artifacts(report.chosen_row.folder, artifact_path="model")
