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

    r: int = Field(8, ge=1, title="LoRA rank", description="Rank of the adapter matrices.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling (alpha).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | None = Field(
        None, description="Modules that get adapters; empty = PEFT's default for the model type."
    )


class InstructionParams(BaseModel):
    """How instruction examples are built from the training documents (with data instructions):
    the serving prompt (numbered passages, then the question) and the answer it should get."""

    max_tokens: int | None = Field(
        None,
        ge=16,
        description="Tokens per instruction row (prompt, answer and EOS); empty = the model's "
        "window, which the serving app fits its prompts to.",
    )
    questions_per_document: int = Field(
        40, ge=1, description="Most questions taken from each training document's structure."
    )
    passages_per_example: int = Field(
        2,
        ge=1,
        description="Passages in a prompt: the source's chunk and distractors from other "
        "training documents (fewer when the row cannot hold them).",
    )
    variants: int = Field(
        2, ge=1, description="Prompts per question, each with other distractors and positions."
    )
    unanswerable_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Off-topic questions added, as a share of the answerable ones; their "
        "answer is the refusal.",
    )
    missing_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of answerable questions shown without their source passage; their "
        "answer is the refusal.",
    )


class FinetuneParams(BaseModel):
    """What to train, how, and on which data snapshot."""

    base_model: str = Field(
        SCRATCH, description="Local path or hub id; 'scratch' builds a small Llama from config."
    )
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters or all weights.")
    data: Literal["text", "instructions"] = Field(
        "text",
        description="What the model learns from. 'text': the training documents packed into "
        "rows of seq_len tokens, the loss on every token (language modelling). "
        "'instructions': questions generated from the training documents' structure, each in "
        "the serving prompt's format (numbered passages, the question) with its answer (the "
        "reference sentence citing its passage, or the refusal when no passage holds it); the "
        "loss on the answer and its EOS only, so the model learns to answer from its context "
        "and to stop. Held-out documents are never used; perplexity is measured on them as "
        "packed text of seq_len tokens either way.",
    )
    instructions: InstructionParams = Field(
        default_factory=InstructionParams, description="With data instructions."
    )
    lora: LoraParams = Field(default_factory=LoraParams, description="With method lora.")
    max_steps: int = Field(60, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Sequences per worker per micro-batch.")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(3e-3, gt=0, description="AdamW peak learning rate.")
    seq_len: int = Field(
        128,
        ge=2,
        title="Sequence length (tokens)",
        description="Tokens per text row: the training rows with data text, and the held-out "
        "rows perplexity is measured on.",
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel).")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs each worker reserves.")
    use_gpu: bool = Field(False, description="One GPU per worker, bf16 autocast.")
    checkpoint_every: int = Field(20, ge=1, description="Steps between checkpoints.")
    max_failures: int = Field(2, ge=0, description="Worker failures survived by resuming.")
    eval_fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Documents held out for evaluation (their perplexity and the questions the "
        "gates ask: about a quarter of the demo corpus gives a hundred).",
    )
    snapshot_id: str | None = Field(None, description="Ingest snapshot; empty = the latest.")
    memory_budget_gib: float | None = Field(
        None,
        title="Memory budget per worker (GiB)",
        description="Memory a worker may use; empty = with use_gpu, 0.9 of the smallest GPU "
        "the Ray cluster may place a worker on (its live nodes and the node types it can scale "
        "to), otherwise this machine's available memory shared by the workers.",
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
