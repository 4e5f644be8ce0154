"""Before fine-tuning: parameters, the data split and packing, and every check that refuses a
run that cannot work, before a worker starts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tasks.core.cost import Usage
from tasks.finetune.base_model import SCRATCH
from tasks.shared.usage import FLOW_PROCESS


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


class FinetuneReport(BaseModel):
    run_id: str
    snapshot_id: str
    base_model: str
    model_dir: str
    steps: int
    resumed_from: int
    world_size: int
    final_loss: float
    tokens_per_s: float
    perplexity_before: float
    perplexity_after: float
    trainable_parameters: int
    parameters: int
    memory_gib: float
    memory: list[dict[str, object]]
    usage: list[Usage] = []  # the driver process, then each Ray worker

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_parameters / self.parameters

    @property
    def worker_usage(self) -> list[Usage]:
        return [u for u in self.usage if u.part != FLOW_PROCESS]
