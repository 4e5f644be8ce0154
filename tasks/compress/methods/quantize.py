"""Half precision and int8 quantization of a causal LM, in place; each returns the recipe step
that rebuilds the same module tree on load (`tasks.shared.layers`).

The int8 linears run PyTorch's core quantized CPU kernels (`torch.ops.quantized.linear*`,
fbgemm/x86 engine) on int8 weights kept as plain buffers, so the state dict holds ordinary
int8/float32 tensors and safetensors can store it. PyTorch 2.13 warns once per process that
the quantized-tensor creation functions these kernels need are deprecated (pytorch#184982).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from tasks.shared.layers import (
    HALF,
    DynamicInt8Linear,
    Int8Embedding,
    StaticInt8Linear,
    decoder_linears,
    quantize_rows,
)


def to_half(model: nn.Module, dtype: Literal["fp16", "bf16"]) -> dict[str, Any]:
    if dtype not in HALF:
        raise ValueError(f"half precision dtype must be one of {sorted(HALF)}, not {dtype!r}")
    model.to(HALF[dtype])
    return {"kind": "half", "dtype": dtype}


def _require_float32(model: nn.Module) -> None:
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(f"int8 quantization starts from a float32 model, this one has {dtypes}")


def _quantize_embeddings(model: nn.Module) -> dict[str, Any]:
    """Head -> DynamicInt8Linear; input embedding -> Int8Embedding, sharing the head's
    int8 rows and scales when the config ties them."""
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    head_name, embed_name = _name_of(model, head), _name_of(model, embed)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    int8_head = DynamicInt8Linear(head.in_features, head.out_features, head.bias is not None)
    int8_head.set_weights(head.weight, head.bias)
    if tied:
        int8_embed = Int8Embedding(int8_head.weight_int8, int8_head.weight_scale)
    else:
        int8_embed = Int8Embedding(*quantize_rows(embed.weight))
    model.set_submodule(head_name, int8_head)
    model.set_submodule(embed_name, int8_embed)
    return {"head": head_name, "embedding": embed_name, "tied": tied}


def _name_of(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is target)


def quantize_dynamic_int8(model: nn.Module) -> dict[str, Any]:
    """Int8 weights for every decoder-layer linear, the LM head and the input embedding;
    activations are quantized on the fly at each call. CPU only."""
    _require_float32(model)
    names = []
    for name, linear in decoder_linears(model).items():
        int8 = DynamicInt8Linear(linear.in_features, linear.out_features, linear.bias is not None)
        int8.set_weights(linear.weight, linear.bias)
        model.set_submodule(name, int8)
        names.append(name)
    return {"kind": "int8_dynamic", "linears": names, **_quantize_embeddings(model)}


def quantize_static_int8(
    model: nn.Module, calibration: torch.Tensor, batch_size: int = 8
) -> dict[str, Any]:
    """Static post-training int8 for the decoder-layer linears: activation ranges are the
    min/max seen on `calibration` (token-id rows [n, seq]) and then fixed. The LM head and
    input embedding get the weight-only/dynamic int8 treatment of `quantize_dynamic_int8`."""
    if calibration.ndim != 2 or calibration.shape[0] == 0:
        raise ValueError(
            f"calibration must be token ids of shape [n, seq], got {calibration.shape}"
        )
    _require_float32(model)
    linears = decoder_linears(model)
    ranges = _observe_ranges(model, linears, calibration, batch_size)
    for name, linear in linears.items():
        int8 = StaticInt8Linear(linear.in_features, linear.out_features, linear.bias is not None)
        int8.set_weights(linear.weight, linear.bias)
        int8.set_ranges(*ranges[name])
        model.set_submodule(name, int8)
    step = {"kind": "int8_static", "linears": list(linears), "calibration_rows": len(calibration)}
    return {**step, **_quantize_embeddings(model)}


Range = tuple[float, float]


def _observe_ranges(
    model: nn.Module, linears: dict[str, nn.Linear], calibration: torch.Tensor, batch_size: int
) -> dict[str, tuple[Range, Range]]:
    """Min/max of each linear's input and output over the calibration batches."""
    seen: dict[str, list[float]] = {name: [0.0, 0.0, 0.0, 0.0] for name in linears}

    def observe(name: str) -> Any:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            lo_in, hi_in, lo_out, hi_out = seen[name]
            seen[name] = [
                min(lo_in, args[0].min().item()),
                max(hi_in, args[0].max().item()),
                min(lo_out, out.min().item()),
                max(hi_out, out.max().item()),
            ]

        return hook

    handles = [linear.register_forward_hook(observe(name)) for name, linear in linears.items()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for batch in calibration.split(batch_size):
                model(input_ids=batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: ((v[0], v[1]), (v[2], v[3])) for name, v in seen.items()}
