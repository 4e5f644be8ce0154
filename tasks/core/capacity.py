"""How many GPUs a fine-tuning run needs, in what parallelism, with which batch sizes.

Memory comes from the fine-tuning stage's own rules (`tasks.core.memory`): weights at their
precision, 16 bytes a trained parameter (gradient and Adam state), activations by tokens. A
model whose replica fits one GPU runs data-parallel (no idle time); one that does not is cut
into n pipeline stages, and a pipeline of n stages fed m micro-batches a step idles
1 − m/(m + n − 1) of the time (the "bubble": stages wait while it fills and drains).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tasks.core.memory import GIB, WEIGHT_BYTES, MemoryEstimate, ModelShape, estimate_memory

# GPU memory in GiB (the nominal size; CUDA's context and the allocator take part of it).
GPU_MEMORY_GIB = {
    "T4": 16,
    "L4": 24,
    "A10G": 24,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "H100": 80,
    "H200": 141,
}
LORA_MODULES_PER_LAYER = 2  # PEFT's default targets for Llama-like models: q_proj and v_proj
DEFAULT_VOCAB = 32000
MICRO_BATCHES_PER_STAGE = 4  # m >= 4n keeps the bubble under about 20%


@dataclass(frozen=True)
class CapacityPlan:
    gpu_type: str
    gpus: int
    parallelism: Literal["data-parallel", "pipeline"]
    data_parallel: int  # replicas of the model (each one GPU, or one pipeline)
    pipeline_stages: int  # n
    micro_batch: int  # sequences per GPU per forward pass
    micro_batches: int  # m: micro-batches per replica per optimizer step
    global_batch: int  # sequences per optimizer step, as planned (>= the target)
    idle_fraction: float
    memory: MemoryEstimate  # per GPU
    gpu_memory: int  # bytes
    shape: ModelShape

    @property
    def headroom(self) -> int:
        return self.gpu_memory - self.memory.total

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("GPU", f"{self.gpu_type} ({self.gpu_memory / GIB:.0f} GiB)"),
            ("GPUs", str(self.gpus)),
            (
                "parallelism",
                f"{self.parallelism}: {self.data_parallel} replica(s) x "
                f"{self.pipeline_stages} stage(s)",
            ),
            ("micro-batch per GPU", str(self.micro_batch)),
            ("micro-batches per step", str(self.micro_batches)),
            ("global batch", str(self.global_batch)),
            ("idle fraction", f"{self.idle_fraction:.3f}"),
            ("memory per GPU", f"{self.memory.total / GIB:.2f} GiB"),
            ("headroom", f"{self.headroom / GIB:.2f} GiB"),
            ("trainable parameters", f"{self.shape.trainable:,} of {self.shape.parameters:,}"),
        ]

    def as_dict(self) -> dict[str, object]:
        return {
            "gpu_type": self.gpu_type,
            "gpus": self.gpus,
            "parallelism": self.parallelism,
            "data_parallel": self.data_parallel,
            "pipeline_stages": self.pipeline_stages,
            "micro_batch": self.micro_batch,
            "micro_batches": self.micro_batches,
            "global_batch": self.global_batch,
            "idle_fraction": self.idle_fraction,
            "memory_per_gpu_gib": self.memory.total / GIB,
            "headroom_gib": self.headroom / GIB,
            "memory": self.memory.table(),
            "parameters": self.shape.parameters,
            "trainable": self.shape.trainable,
            "layers": self.shape.layers,
            "hidden": self.shape.hidden,
            "vocab": self.shape.vocab,
        }


def idle_fraction(micro_batches: int, stages: int) -> float:
    """The pipeline bubble: 1 − m/(m + n − 1); 0 for one stage."""
    if micro_batches < 1 or stages < 1:
        raise ValueError(f"need m >= 1 and n >= 1, got m={micro_batches}, n={stages}")
    return 1 - micro_batches / (micro_batches + stages - 1)


def decoder_shape(
    parameters: int | None = None,
    layers: int | None = None,
    hidden: int | None = None,
    vocab: int = DEFAULT_VOCAB,
) -> tuple[int, int, int, int]:
    """(parameters, layers, hidden, vocab) of a decoder-only transformer from what is known:
    about 12·hidden² parameters a layer plus input and output embeddings (2·vocab·hidden); from
    the parameter count alone, the usual proportion hidden = 128·layers (Llama 7B: 32 × 4096)."""
    if vocab < 1:
        raise ValueError(f"vocab must be >= 1, got {vocab}")
    if layers is not None and hidden is not None:
        if layers < 1 or hidden < 1:
            raise ValueError(f"layers and hidden must be >= 1, got {layers} and {hidden}")
        return parameters or 12 * layers * hidden**2 + 2 * vocab * hidden, layers, hidden, vocab
    if parameters is None or parameters < 1:
        raise ValueError("give the parameter count, or layers and hidden size (or all three)")
    if layers is not None or hidden is not None:
        raise ValueError("give layers and hidden together (or neither, to derive both)")
    lo, hi = 1, 1 << 20  # the hidden size whose model has `parameters`, by bisection
    while lo < hi:
        mid = (lo + hi) // 2
        if 12 * (mid / 128) * mid**2 + 2 * vocab * mid < parameters:
            lo = mid + 1
        else:
            hi = mid
    layers = max(1, round(lo / 128))
    return parameters, layers, lo, vocab


def trainable_parameters(
    method: str, parameters: int, layers: int, hidden: int, lora_rank: int
) -> int:
    """All of them for full fine-tuning; for LoRA, rank·(in + out) for each adapted square
    projection (PEFT's default q_proj and v_proj)."""
    if method == "full":
        return parameters
    if method == "lora":
        if lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {lora_rank}")
        return layers * LORA_MODULES_PER_LAYER * 2 * hidden * lora_rank
    raise ValueError(f"method must be 'lora' or 'full', got {method!r}")


def _stage_shape(shape: ModelShape, stages: int, logits: bool) -> ModelShape:
    """One pipeline stage's share: 1/n of the layers and parameters (rounded up); only the last
    stage computes the logits (vocab 0 elsewhere: vocab only enters the activations)."""
    return ModelShape(
        parameters=math.ceil(shape.parameters / stages),
        trainable=math.ceil(shape.trainable / stages),
        layers=math.ceil(shape.layers / stages),
        hidden=shape.hidden,
        vocab=shape.vocab if logits else 0,
    )


def stage_memory(
    shape: ModelShape, stages: int, precision: str, micro_batch: int, seq_len: int, in_flight: int
) -> MemoryEstimate:
    """The fullest stage's memory under 1F1B: the first keeps `in_flight` micro-batches'
    activations, the last one micro-batch's activations and its logits."""
    first = estimate_memory(
        _stage_shape(shape, stages, False), precision, micro_batch * in_flight, seq_len
    )
    last = estimate_memory(_stage_shape(shape, stages, True), precision, micro_batch, seq_len)
    return max(first, last, key=lambda m: m.total) if stages > 1 else last


def _largest_micro(
    shape: ModelShape, stages: int, precision: str, seq_len: int, budget: int, cap: int
) -> int:
    """The largest micro-batch (<= cap, 0 if none) whose fullest stage fits `budget`."""
    best, lo, hi = 0, 1, cap
    while lo <= hi:  # memory grows with the batch, so bisect
        mid = (lo + hi) // 2
        in_flight = min(stages, math.ceil(cap / mid))  # cap is the global batch
        if stage_memory(shape, stages, precision, mid, seq_len, in_flight).total <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _split(per_replica: int, largest: int) -> tuple[int, int]:
    """(micro-batch, accumulation steps) whose product is `per_replica`, micro <= largest."""
    steps = math.ceil(per_replica / largest)
    while per_replica % steps:
        steps += 1
    return per_replica // steps, steps


def plan_capacity(
    shape: ModelShape,
    gpu_type: str,
    seq_len: int,
    global_batch: int,
    precision: str = "bf16",
    max_gpus: int = 8,
    usable_fraction: float = 0.9,
) -> CapacityPlan:
    """GPUs, parallelism, batch sizes and idle fraction for fine-tuning `shape` on `gpu_type`.

    Data-parallel when a replica fits one GPU (as many replicas as the global batch fills, up
    to `max_gpus`, the rest by gradient accumulation); otherwise the fewest pipeline stages whose
    share fits, with micro-batches small enough that m >= 4n where the batch allows (1F1B
    schedule: a stage keeps at most n micro-batches' activations)."""
    if gpu_type not in GPU_MEMORY_GIB:
        raise ValueError(f"unknown GPU type {gpu_type!r}: one of {sorted(GPU_MEMORY_GIB)}")
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {sorted(WEIGHT_BYTES)}, got {precision!r}")
    if seq_len < 1 or global_batch < 1 or max_gpus < 1:
        raise ValueError("seq_len, global batch and max_gpus must all be >= 1")
    if not 0 < usable_fraction <= 1:
        raise ValueError(f"usable_fraction must be in (0, 1], got {usable_fraction}")
    gpu_memory = GPU_MEMORY_GIB[gpu_type] * GIB
    budget = int(gpu_memory * usable_fraction)

    micro = _largest_micro(shape, 1, precision, seq_len, budget, global_batch)
    if micro:  # a whole replica fits one GPU
        replicas = min(math.ceil(global_batch / micro), max_gpus)
        micro, steps = _split(math.ceil(global_batch / replicas), micro)
        return CapacityPlan(
            gpu_type,
            replicas,
            "data-parallel",
            replicas,
            1,
            micro,
            steps,
            replicas * micro * steps,
            0.0,
            estimate_memory(shape, precision, micro, seq_len),
            gpu_memory,
            shape,
        )

    for stages in range(2, shape.layers + 1):
        fits = _largest_micro(shape, stages, precision, seq_len, budget, global_batch)
        if fits:
            break
    else:
        n = shape.layers
        least = stage_memory(shape, n, precision, 1, seq_len, min(n, global_batch))
        raise ValueError(
            f"nothing fits a {gpu_type}: even one layer a GPU ({n} pipeline stages, micro-batch "
            f"1) needs {least.total / GIB:.1f} GiB ({least.activations / GIB:.1f} of them "
            f"activations) of the {budget / GIB:.1f} GiB usable; use LoRA, a shorter sequence, "
            "lower precision or a GPU with more memory"
        )
    if stages > max_gpus:
        raise ValueError(
            f"{stages} pipeline stages of a {gpu_type} are needed, more than max_gpus="
            f"{max_gpus}: allow more GPUs, or use LoRA or a GPU with more memory"
        )
    micro = min(fits, max(1, global_batch // (MICRO_BATCHES_PER_STAGE * stages)))
    m = math.ceil(global_batch / micro)
    return CapacityPlan(
        gpu_type,
        stages,
        "pipeline",
        1,
        stages,
        micro,
        m,
        m * micro,
        idle_fraction(m, stages),
        stage_memory(shape, stages, precision, micro, seq_len, min(m, stages)),
        gpu_memory,
        shape,
    )


def plan_for(
    gpu_type: str,
    seq_len: int,
    global_batch: int,
    method: str = "lora",
    lora_rank: int = 8,
    parameters: int | None = None,
    layers: int | None = None,
    hidden: int | None = None,
    vocab: int = DEFAULT_VOCAB,
    precision: str = "bf16",
    max_gpus: int = 8,
) -> CapacityPlan:
    """`plan_capacity` from a model size (parameter count, or layers/hidden/vocab) and method."""
    total, layers, hidden, vocab = decoder_shape(parameters, layers, hidden, vocab)
    trainable = trainable_parameters(method, total, layers, hidden, lora_rank)
    shape = ModelShape(total, trainable, layers, hidden, vocab)
    return plan_capacity(shape, gpu_type, seq_len, global_batch, precision, max_gpus)
