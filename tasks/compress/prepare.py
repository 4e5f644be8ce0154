"""Before compressing: the fine-tuned model to start from, verified, and the data every
candidate is measured on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tasks.clients.tracking import (
    EXPERIMENT,
    connect,
    finetuned_model,
    latest_run_with,
    run_base_model,
)
from tasks.core.sequences import pack
from tasks.shared.lake import split_snapshot
from tasks.shared.manifest import verify_manifest
from tasks.shared.settings import Settings


@dataclass(frozen=True)
class Source:
    """A finished fine-tuning run and what it was trained from."""

    run_id: str
    snapshot_id: str
    folder: Path
    base_path: Path
    adapter: bool
    seq_len: int
    eval_fraction: float
    batch_size: int
    tags: dict[str, str]


@dataclass(frozen=True)
class MeasureData:
    train: np.ndarray
    evaluation: torch.Tensor
    calibration: torch.Tensor
    prompt: torch.Tensor


def resolve_source(settings: Settings, run_id: str | None) -> Source:
    """The fine-tuning run (the latest finished one if none is named), its model verified."""
    client = connect(settings)
    run_id = run_id or latest_run_with(client, EXPERIMENT, "data_snapshot")
    if run_id is None:
        raise ValueError("no finished fine-tuning run to compress: run finetune_model first")
    run = client.get_run(run_id)
    if "data_snapshot" not in run.data.tags:
        raise ValueError(f"MLflow run {run_id} is not a fine-tuning run (no data_snapshot tag)")
    folder = finetuned_model(settings, run_id)
    params = run.data.params
    return Source(
        run_id=run_id,
        snapshot_id=run.data.tags["data_snapshot"],
        folder=folder,
        base_path=run_base_model(run, settings),
        adapter=(folder / "adapter_config.json").exists(),
        seq_len=int(params["seq_len"]),
        eval_fraction=float(params["eval_fraction"]),
        batch_size=int(params["batch_size"]),
        tags=dict(run.data.tags),
    )


def load_finetuned(source: Source) -> torch.nn.Module:
    """The model as fine-tuned: base plus adapter (unmerged), or the full weights."""
    from transformers import AutoModelForCausalLM

    if not source.adapter:
        return AutoModelForCausalLM.from_pretrained(source.folder, use_safetensors=True).eval()
    from peft import PeftModel

    verify_manifest(source.base_path)
    base = AutoModelForCausalLM.from_pretrained(source.base_path, use_safetensors=True)
    return PeftModel.from_pretrained(base, source.folder).eval()


def measure_data(settings: Settings, source: Source, calibration_rows: int) -> MeasureData:
    """Training rows (for recovery and distillation), and the held-out rows of the run's own
    split: a quarter of them (at most `calibration_rows`) calibrate static quantization, the
    rest measure every candidate."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.folder)
    _, train_docs, eval_docs = split_snapshot(settings, source.snapshot_id, source.eval_fraction)

    def rows(texts: list[str]) -> np.ndarray:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return pack(ids, source.seq_len, tokenizer.eos_token_id)

    held_out = torch.from_numpy(rows(eval_docs["text"].tolist()))
    if len(held_out) < 2:
        raise ValueError(
            f"snapshot {source.snapshot_id} holds {len(held_out)} held-out sequence(s): "
            "too few to both calibrate and measure"
        )
    is_calibration = torch.zeros(len(held_out), dtype=torch.bool)
    is_calibration[::4] = True
    is_calibration[is_calibration.nonzero()[calibration_rows:]] = False
    return MeasureData(
        train=rows(train_docs["text"].tolist()),
        evaluation=held_out[~is_calibration],
        calibration=held_out[is_calibration],
        prompt=held_out[~is_calibration][:1, :32],
    )


def lineage(source: Source, feature_view: str) -> dict[str, str]:
    tags = source.tags
    return {
        "data_snapshot": source.snapshot_id,
        "feature_view": feature_view,
        "base_model": tags.get("base_model", "unknown"),
        "base_model_path": str(source.base_path),
        "base_model_sha256": tags.get("base_model_sha256", "unknown"),
        "training_run": source.run_id,
        "training_method": "lora" if source.adapter else "full",
    }
