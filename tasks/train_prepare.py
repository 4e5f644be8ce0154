"""Before fine-tuning: parameters, the data split and packing, and every check that refuses a
run that cannot work, before a worker starts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from tasks import lake
from tasks.base_model import SCRATCH, ScratchSpec, resolve_base_model
from tasks.core.memory import GIB, MemoryEstimate, ModelShape, check_fits
from tasks.core.sequences import is_held_out, pack
from tasks.settings import REPO_ROOT, Settings


class LoraParams(BaseModel):
    """LoRA adapters (PEFT): rank, scaling, dropout and where they go."""

    r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling (alpha).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | None = Field(
        None, description="Modules that get adapters; empty = PEFT's default for the model type."
    )


class FinetuneParams(BaseModel):
    """What to train, how, and on which data snapshot."""

    base_model: str = Field(
        SCRATCH, description="Local path or hub id; 'scratch' builds a small Llama from config."
    )
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters or all weights.")
    lora: LoraParams = Field(default_factory=LoraParams, description="With method lora.")
    max_steps: int = Field(60, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Sequences per worker per micro-batch.")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(3e-3, gt=0, description="AdamW peak learning rate.")
    seq_len: int = Field(128, ge=2, description="Tokens per training sequence.")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel).")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs each worker reserves.")
    use_gpu: bool = Field(False, description="One GPU per worker, bf16 autocast.")
    checkpoint_every: int = Field(20, ge=1, description="Steps between checkpoints.")
    max_failures: int = Field(2, ge=0, description="Worker failures survived by resuming.")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Documents held out for eval.")
    snapshot_id: str | None = Field(None, description="Ingest snapshot; empty = the latest.")
    memory_budget_gib: float | None = Field(
        None, description="Memory per worker; empty = this machine's available memory."
    )
    seed: int = Field(0, description="Seed of initialisation, data order and the split.")


@dataclass
class TrainingData:
    snapshot_id: str
    train: np.ndarray
    eval: np.ndarray
    train_docs: int
    eval_docs: int


@dataclass
class Plan:
    """Everything checked before a worker starts."""

    base_path: Path
    data: TrainingData
    model: Any  # loaded once here: it gives the shape, and the driver evaluates with it
    shape: ModelShape
    memory: MemoryEstimate


def _snapshot_texts(settings: Settings, snapshot_id: str) -> pd.DataFrame:
    members = lake.read_snapshot(settings.snapshots_dir, snapshot_id)
    frames = list(lake.iter_documents(settings.documents_dir, set(members["doc_id"])))
    if not frames:
        raise ValueError(
            f"snapshot {snapshot_id} has no documents to train on: ingest some documents first"
        )
    docs = pd.concat(frames, ignore_index=True)[["doc_id", "text"]]
    return docs.sort_values("doc_id", ignore_index=True)  # the same split on every run


def split_snapshot(
    settings: Settings, snapshot_id: str | None, eval_fraction: float
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The snapshot's documents split into training and held-out, the same way on every run
    (so later stages evaluate on exactly the documents training never saw)."""
    snapshot_id = snapshot_id or lake.latest_snapshot(settings.snapshots_dir)
    docs = _snapshot_texts(settings, snapshot_id)
    held_out = docs["doc_id"].map(lambda d: is_held_out(d, eval_fraction))
    if held_out.all() or not held_out.any():  # too few documents for the hash split
        if len(docs) < 2:
            raise ValueError(
                f"snapshot {snapshot_id} has 1 document: at least 2 are needed, one of them "
                "held out for evaluation"
            )
        position = np.arange(len(docs))
        held_out = pd.Series((position % 10 == 9) | (position == len(docs) - 1))
    return snapshot_id, docs[~held_out], docs[held_out]


def model_shape(model: Any) -> ModelShape:
    from tasks.train_loop import trainable_fraction

    config = model.config
    trainable, total = trainable_fraction(model)
    return ModelShape(
        parameters=total,
        trainable=trainable,
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        vocab=config.vocab_size,
    )


def prepare(params: FinetuneParams, settings: Settings) -> Plan:
    """Refuse what cannot work, with what to change, before any training starts."""
    from transformers import AutoConfig, AutoTokenizer

    from tasks.train_loop import load_model

    snapshot_id, train_docs, eval_docs = split_snapshot(
        settings, params.snapshot_id, params.eval_fraction
    )
    base_path = resolve_base_model(
        params.base_model, settings.models_dir, snapshot_id, train_docs["text"], ScratchSpec()
    )
    max_len = AutoConfig.from_pretrained(base_path).max_position_embeddings
    if params.seq_len > max_len:
        raise ValueError(f"seq_len {params.seq_len} exceeds the model's maximum of {max_len}")
    tokenizer = AutoTokenizer.from_pretrained(base_path)

    def rows(frame: pd.DataFrame) -> np.ndarray:
        ids = tokenizer(frame["text"].tolist(), add_special_tokens=False)["input_ids"]
        return pack(ids, params.seq_len, tokenizer.eos_token_id)

    data = TrainingData(
        snapshot_id, rows(train_docs), rows(eval_docs), len(train_docs), len(eval_docs)
    )
    if len(data.eval) == 0:
        raise ValueError(
            f"the held-out documents hold less than one sequence of {params.seq_len} tokens: "
            "raise eval_fraction, lower seq_len, or ingest more documents"
        )
    needed = params.batch_size * params.gradient_accumulation * params.num_workers
    if len(data.train) < needed:
        raise ValueError(
            f"{len(data.train)} training sequences of {params.seq_len} tokens is less than one "
            f"step of {params.num_workers} worker(s) x batch {params.batch_size} x "
            f"{params.gradient_accumulation} micro-batches: lower "
            "batch_size or seq_len, or ingest more documents"
        )
    model = load_model(str(base_path), params.method, params.lora.model_dump())
    shape = model_shape(model)
    budget = (params.memory_budget_gib or _available_gib() / params.num_workers) * GIB
    precision = "bf16" if params.use_gpu else "fp32"
    memory = check_fits(shape, precision, params.batch_size, params.seq_len, int(budget))
    return Plan(base_path, data, model, shape, memory)


def _available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / GIB


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"
