"""Will a serving replica fit its device? Estimated before the weights are moved there, so a
model that cannot fit is refused with the numbers instead of failing on its first long batch.

Bytes = weights at their precision + the KV cache of a full batch at full context + the
activations of that batch's prefill (one layer's at a time: inference keeps nothing for a
backward pass) + a fixed workspace. The serving engine prefills every admitted prompt in one
forward pass and keeps only the last position's logits (`tasks.shared.batching`), which is what
the activation and logits terms assume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.core.memory import GIB, WEIGHT_BYTES, ModelShape

# The CUDA context, cuBLAS/attention workspaces and allocator slack: about 0.5-1 GiB in practice.
WORKSPACE = GIB
# Values a token a hidden unit alive at once in a decoder layer's prefill: the residual, the
# norm's output, q/k/v and the attention output, then the MLP's gate, up and their product
# (about 2.7 hidden each in a gated MLP, 4 in GPT-2's). A generous rule of thumb, not a measure.
ACTIVATION_VALUES = 16
# Logits of the last position: the model's, their float32 copy, the scaled copy, the softmax.
LOGIT_COPIES = 4


@dataclass(frozen=True)
class ServingShape:
    """A model's shape (`ModelShape`) and the attention geometry that sizes its KV cache."""

    model: ModelShape
    kv_heads: int
    head_dim: int

    @property
    def kv_values_per_token(self) -> int:
        """Keys and values one token keeps in the cache, over all layers."""
        return 2 * self.model.layers * self.kv_heads * self.head_dim


@dataclass(frozen=True)
class ServingEstimate:
    weights: int
    kv_cache: int
    activations: int
    workspace: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.workspace

    def table(self) -> list[dict[str, object]]:
        parts = {
            "weights": self.weights,
            "KV cache (batch x context)": self.kv_cache,
            "activations (prefill)": self.activations,
            "workspace": self.workspace,
            "total per replica": self.total,
        }
        return [{"part": part, "GiB": round(size / GIB, 4)} for part, size in parts.items()]


class ServingMemoryError(ValueError):
    """The replica would not fit; `estimate` is what it needs, `budget` what it has."""

    def __init__(self, message: str, estimate: ServingEstimate, budget: int) -> None:
        super().__init__(message)
        self.estimate, self.budget = estimate, budget


def shape_from_config(config: Any, parameters: int) -> ServingShape:
    """The serving shape of a Hugging Face config (attribute names as transformers maps them,
    GPT-2's `n_layer` included) and a parameter count taken from the loaded model."""
    if hasattr(config, "get_text_config"):  # a multimodal config keeps the LM's in a sub-config
        config = config.get_text_config()
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads  # None: multi-head attention
    head_dim = getattr(config, "head_dim", None) or hidden // heads  # Gemma's differs from this
    model = ModelShape(
        parameters=parameters,
        trainable=0,  # nothing is trained while serving
        layers=int(config.num_hidden_layers),
        hidden=hidden,
        vocab=int(config.vocab_size),
    )
    return ServingShape(model=model, kv_heads=int(kv_heads), head_dim=int(head_dim))


def estimate_serving(
    shape: ServingShape, precision: str, max_batch: int, context: int
) -> ServingEstimate:
    """Bytes one replica needs to decode `max_batch` rows of up to `context` tokens each."""
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision must be one of {sorted(WEIGHT_BYTES)}, got {precision!r}")
    if max_batch < 0 or context < 0:
        raise ValueError(f"max_batch and context must be >= 0, got {max_batch} and {context}")
    width = WEIGHT_BYTES[precision]
    tokens = max_batch * context
    hidden = tokens * ACTIVATION_VALUES * shape.model.hidden * width
    # The padded batch's attention mask: boolean, then as an additive bias in the precision.
    mask = max_batch * context * context * (1 + width)
    logits = max_batch * shape.model.vocab * 4 * LOGIT_COPIES
    return ServingEstimate(
        weights=shape.model.parameters * width,
        kv_cache=shape.kv_values_per_token * width * tokens,
        activations=hidden + mask + logits,
        workspace=WORKSPACE,
    )


def _largest(fits: Any, upper: int) -> int:
    """The largest n in [0, upper] with fits(n) (monotone: fits(n) implies fits(n - 1))."""
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def largest_serving_batch(shape: ServingShape, precision: str, context: int, budget: int) -> int:
    """The largest max_batch (0 if none, at most 65536) that fits `budget` at `context`."""
    return _largest(
        lambda b: b > 0 and estimate_serving(shape, precision, b, context).total <= budget, 65536
    )


def largest_serving_context(
    shape: ServingShape, precision: str, max_batch: int, budget: int, upper: int
) -> int:
    """The largest context (0 if none, at most `upper`) that fits `budget` at `max_batch`."""
    return _largest(
        lambda c: c > 0 and estimate_serving(shape, precision, max_batch, c).total <= budget,
        upper,
    )


def check_serving_fits(
    shape: ServingShape, precision: str, max_batch: int, context: int, device_memory_bytes: int
) -> ServingEstimate:
    """The estimate, or a `ServingMemoryError` (a ValueError) with GiB needed and available and
    the largest batch (at this context) and context (at this batch) that would fit."""
    estimate = estimate_serving(shape, precision, max_batch, context)
    budget = device_memory_bytes
    if estimate.total <= budget:
        return estimate
    batch = largest_serving_batch(shape, precision, context, budget)
    longest = largest_serving_context(shape, precision, max_batch, budget, context)
    options = [f"max_batch={batch} at context {context}"] if batch else []
    options += [f"context={longest} at max_batch {max_batch}"] if longest else []
    advice = (
        " or ".join(options) + " would fit"
        if options
        else "no batch or context fits: a smaller model or precision, or a larger device"
    )
    raise ServingMemoryError(
        f"serving needs an estimated {estimate.total / GIB:.2f} GiB (weights "
        f"{estimate.weights / GIB:.2f} in {precision}, KV cache {estimate.kv_cache / GIB:.2f} "
        f"for {max_batch} x {context} tokens, activations {estimate.activations / GIB:.2f}, "
        f"workspace {estimate.workspace / GIB:.2f}) but the device has {budget / GIB:.2f} GiB; "
        f"{advice}",
        estimate,
        budget,
    )


def serving_budget(gpus_asked: float, total_bytes: int, free_bytes: int) -> int:
    """What one replica may use of its GPU: its share of the device when it asked for a
    fraction (replicas that share a GPU start together, so free memory alone overcounts), and
    never more than is free now."""
    if gpus_asked <= 0:
        raise ValueError(f"a GPU budget needs gpus_asked > 0, got {gpus_asked}")
    return min(free_bytes, int(total_bytes * min(gpus_asked, 1.0)))
