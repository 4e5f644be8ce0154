"""The same measurements for every candidate: weights on disk, weights held, CPU latency per
generated token, tokens/s, held-out perplexity."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tasks.shared.models import perplexity


@dataclass(frozen=True)
class Measurement:
    size_bytes: int
    parameters: int
    latency_ms_p50: float
    tokens_per_s: float
    perplexity: float


def weights_size(*folders: Path) -> int:
    """Bytes of the weight files (tokenizer and config are the same for every candidate)."""
    return sum(p.stat().st_size for folder in folders for p in folder.glob("*.safetensors"))


def weights_held(model: torch.nn.Module) -> int:
    """Non-zero weights, each stored tensor counted once (tied ones share storage); int8
    weights count like float ones, scales and other quantization constants do not."""
    seen: set[int] = set()
    total = 0
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        is_weight = isinstance(tensor, torch.nn.Parameter) or name.endswith("weight_int8")
        ptr = tensor.untyped_storage().data_ptr()
        if is_weight and ptr not in seen:
            seen.add(ptr)
            total += int(torch.count_nonzero(tensor))
    return total


@torch.inference_mode()
def decode_latency(
    model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int = 32, repeats: int = 3
) -> tuple[float, float]:
    """Greedy decoding with the KV cache: median ms per generated token, and tokens/s.

    The first repeat warms up (allocations, kernel choice) and is not counted.
    """
    model.eval()
    steps: list[float] = []
    spent = 0.0
    for repeat in range(repeats + 1):
        out = model(input_ids=prompt, use_cache=True)
        for _ in range(new_tokens):
            next_id = out.logits[:, -1:].argmax(-1)
            started = time.perf_counter()
            out = model(input_ids=next_id, cache=out.cache, use_cache=True)
            took = time.perf_counter() - started
            if repeat:
                steps.append(took)
                spent += took
    return 1000 * statistics.median(steps), len(steps) / spent


def measure(
    model: torch.nn.Module,
    eval_rows: torch.Tensor,
    prompt: torch.Tensor,
    folders: tuple[Path, ...],
    new_tokens: int = 32,
) -> Measurement:
    latency, tokens_per_s = decode_latency(model, prompt, new_tokens)
    return Measurement(
        size_bytes=weights_size(*folders),
        parameters=weights_held(model),
        latency_ms_p50=latency,
        tokens_per_s=tokens_per_s,
        perplexity=perplexity(model, eval_rows),
    )
