"""Before fine-tuning: parameters, the data split and packing, and every check that refuses a
run that cannot work, before a worker starts."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.clients.ray_cluster import describe_cluster
from tasks.core.cluster import gpu_memory_per_worker
from tasks.core.memory import GIB, MemoryEstimate, ModelShape, check_fits
from tasks.core.sequences import pack
from tasks.finetune.base_model import ScratchSpec, resolve_base_model
from tasks.finetune.params import FinetuneParams
from tasks.shared.lake import split_snapshot
from tasks.shared.settings import REPO_ROOT, Settings


@dataclass
class TrainingData:
    """Training rows: packed text ([n, seq_len] ids) or instruction rows ([n, 3, max_tokens]:
    ids, labels, attention mask; `tasks.finetune.instructions`). Eval rows are always packed
    held-out text (perplexity)."""

    snapshot_id: str
    train: np.ndarray
    eval: np.ndarray
    train_docs: int
    eval_docs: int

    @property
    def train_row_tokens(self) -> int:
        """Tokens per training row (what activations are sized by)."""
        return int(self.train.shape[-1])


@dataclass
class Plan:
    """Everything checked before a worker starts."""

    base_path: Path
    data: TrainingData
    model: Any  # loaded once here: it gives the shape, and the driver evaluates with it
    shape: ModelShape
    memory: MemoryEstimate


def model_shape(model: Any) -> ModelShape:
    from tasks.finetune.loop import trainable_fraction

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

    from tasks.finetune.loop import load_model

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

    if params.data == "instructions":
        train = _instruction_rows(params, settings, train_docs, tokenizer, max_len)
    else:
        train = rows(train_docs)
    data = TrainingData(snapshot_id, train, rows(eval_docs), len(train_docs), len(eval_docs))
    if len(data.eval) == 0:
        raise ValueError(
            f"the held-out documents hold less than one sequence of {params.seq_len} tokens: "
            "raise eval_fraction, lower seq_len, or ingest more documents"
        )
    needed = params.batch_size * params.gradient_accumulation * params.num_workers
    if len(data.train) < needed:
        raise ValueError(
            f"{len(data.train)} training sequences of {data.train_row_tokens} tokens is less "
            "than one "
            f"step of {params.num_workers} worker(s) x batch {params.batch_size} x "
            f"{params.gradient_accumulation} micro-batches: lower "
            "batch_size or seq_len, or ingest more documents"
        )
    model = load_model(str(base_path), params.method, params.lora.model_dump())
    shape = model_shape(model)
    budget, source = memory_budget(params, settings)
    precision = "bf16" if params.use_gpu else "fp32"
    memory = check_fits(
        shape, precision, params.batch_size, data.train_row_tokens, int(budget * GIB), source
    )
    return Plan(base_path, data, model, shape, memory)


def _instruction_rows(
    params: FinetuneParams,
    settings: Settings,
    train_docs: pd.DataFrame,
    tokenizer: Any,
    window: int,
) -> np.ndarray:
    from tasks.finetune.instructions import training_rows

    options = params.instructions
    max_tokens = options.max_tokens or window
    if max_tokens > window:
        raise ValueError(
            f"instructions.max_tokens {max_tokens} exceeds the model's maximum of {window}"
        )
    return training_rows(
        settings,
        train_docs,
        tokenizer,
        max_tokens,
        questions_per_document=options.questions_per_document,
        passages_per_example=options.passages_per_example,
        variants=options.variants,
        unanswerable_fraction=options.unanswerable_fraction,
        missing_fraction=options.missing_fraction,
        seed=params.seed,
    )


def memory_budget(params: FinetuneParams, settings: Settings) -> tuple[float, str]:
    """GiB a worker may use, and where the figure comes from: memory_budget_gib when set; with
    use_gpu, the GPU each worker has to itself (the smallest the cluster may place it on);
    otherwise this machine's available memory, shared by the workers (local Ray)."""
    if params.memory_budget_gib:
        return params.memory_budget_gib, "memory_budget_gib"
    if params.use_gpu:
        return gpu_memory_per_worker(describe_cluster(settings), params.cpus_per_worker)
    workers = params.num_workers
    return _available_gib() / workers, f"this machine's available memory / {workers} worker(s)"


def _available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / GIB


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"
