"""Will a fine-tuning run fit its workers? Estimated before launch, from the parameter count."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# A trained parameter with Adam: fp32 master weight, gradient and two moments (4 + 4 + 4 + 4).
TRAINED_BYTES = 16


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    trainable: int
    layers: int
    hidden: int
    vocab: int


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    training_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.training_state + self.activations

    def table(self) -> list[dict[str, object]]:
        return [
            {"part": "weights", "GiB": round(self.weights / GIB, 4)},
            {"part": "gradients + Adam state", "GiB": round(self.training_state / GIB, 4)},
            {"part": "activations", "GiB": round(self.activations / GIB, 4)},
            {"part": "total per worker", "GiB": round(self.total / GIB, 4)},
        ]


def estimate_memory(
    shape: ModelShape, precision: str, batch_size: int, seq_len: int
) -> MemoryEstimate:
    """Per-worker bytes: weights at their precision, 16 bytes a trained parameter (Adam), and
    activations (about 34 values a hidden unit a token a layer in the precision, plus logits)."""
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {sorted(WEIGHT_BYTES)}, got {precision!r}")
    width = WEIGHT_BYTES[precision]
    tokens = batch_size * seq_len
    activations = tokens * (34 * shape.hidden * shape.layers + 2 * shape.vocab) * width
    return MemoryEstimate(
        weights=shape.parameters * width,
        training_state=shape.trainable * TRAINED_BYTES,
        activations=activations,
    )


def largest_batch_that_fits(shape: ModelShape, precision: str, seq_len: int, budget: int) -> int:
    """The largest batch size (0 if none) whose estimate stays within `budget` bytes."""
    batch = 0
    while estimate_memory(shape, precision, batch + 1, seq_len).total <= budget:
        batch += 1
        if batch >= 4096:
            break
    return batch


def check_fits(
    shape: ModelShape,
    precision: str,
    batch_size: int,
    seq_len: int,
    budget: int,
    budget_from: str = "",
) -> MemoryEstimate:
    """The estimate, or a refusal that says what would fit (and where `budget` came from)."""
    estimate = estimate_memory(shape, precision, batch_size, seq_len)
    if estimate.total > budget:
        fits = largest_batch_that_fits(shape, precision, seq_len, budget)
        advice = (
            f"batch_size={fits} fits"
            if fits
            else "no batch size fits: use LoRA, a smaller "
            "model or sequence length, or workers with more memory"
        )
        source = f" ({budget_from})" if budget_from else ""
        raise MemoryError(
            f"estimated {estimate.total / GIB:.2f} GiB per worker (weights "
            f"{estimate.weights / GIB:.2f}, training state {estimate.training_state / GIB:.2f}, "
            f"activations {estimate.activations / GIB:.2f}) exceeds the "
            f"{budget / GIB:.2f} GiB available{source}; {advice}"
        )
    return estimate
