"""The module types that compressed models are made of, and how a candidate's recipe steps
put empty shells of them back into a freshly built model before its tensors are loaded.

Shared by the compression methods that create these layers and by every loader (promotion,
the canary, serving, recovery training): a model file's format does not belong to one stage.
The int8 linears run PyTorch's core quantized CPU kernels (`torch.ops.quantized.linear*`,
fbgemm/x86 engine) on int8 weights kept as plain buffers, so the state dict holds ordinary
int8/float32 tensors and safetensors can store it. PyTorch 2.13 warns once per process that
the quantized-tensor creation functions these kernels need are deprecated (pytorch#184982).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Without VNNI, fbgemm multiplies u8 x s8 pairs into saturating int16 sums; 7-bit activations
# avoid the overflow there. With VNNI the full 8 bits are exact and halve the rounding error.
_REDUCE_RANGE = not getattr(torch.cpu, "_is_vnni_supported", lambda: False)()


def decoder_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear inside the decoder layers, by its name in `model`."""
    layers = model.get_decoder().layers
    prefix = next(name for name, module in model.named_modules() if module is layers)
    return {
        f"{prefix}.{name}": module
        for name, module in layers.named_modules()
        if isinstance(module, nn.Linear)
    }


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: weight ~= int8 * scale[:, None], int8 in [-127, 127]."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


class Int8Weights(nn.Module):
    """Int8 weight rows with float32 scales as buffers, and the packed kernel operand
    built lazily from them (dropped whenever the buffers may have changed)."""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8)
        )
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed: Any = None

    def set_weights(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight_int8, self.weight_scale = quantize_rows(weight)
        if bias is not None:
            self.bias = bias.detach().float().clone()
        self._packed = None

    def packed(self) -> Any:
        if self._packed is None:
            qweight = torch._make_per_channel_quantized_tensor(
                self.weight_int8,
                self.weight_scale.double(),
                torch.zeros(self.out_features, dtype=torch.long),
                0,
            )
            self._packed = torch.ops.quantized.linear_prepack(qweight, self.bias)
        return self._packed

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._packed = None
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        self._packed = None
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        # the packed operand is a TorchScript object that cannot be copied or pickled
        return {**self.__dict__, "_packed": None}

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


class DynamicInt8Linear(Int8Weights):
    """y = x W^T + b with int8 per-row weights; activations are quantized per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        out = torch.ops.quantized.linear_dynamic(flat, self.packed(), _REDUCE_RANGE)
        return out.view(*x.shape[:-1], self.out_features)


class StaticInt8Linear(Int8Weights):
    """y = x W^T + b with int8 weights and uint8 activations whose scales and zero points
    were fixed by calibration. Inputs use 7 bits, which fbgemm cannot overflow even without
    VNNI, so a saved file does not depend on the CPU it was calibrated on."""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__(in_features, out_features, bias)
        for name in ("input", "output"):
            self.register_buffer(f"{name}_scale", torch.ones(()))
            self.register_buffer(f"{name}_zero_point", torch.zeros((), dtype=torch.long))

    def set_ranges(self, seen_in: tuple[float, float], seen_out: tuple[float, float]) -> None:
        self.input_scale, self.input_zero_point = affine_qparams(*seen_in, levels=127)
        self.output_scale, self.output_zero_point = affine_qparams(*seen_out, levels=255)
        self._packed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        qx = torch.quantize_per_tensor(
            flat, self.input_scale.item(), int(self.input_zero_point), torch.quint8
        )
        out = torch.ops.quantized.linear(
            qx, self.packed(), self.output_scale.item(), int(self.output_zero_point)
        )
        return out.dequantize().view(*x.shape[:-1], self.out_features)


def affine_qparams(low: float, high: float, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point mapping [low, high] (widened to hold 0) onto [0, levels]."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / levels
    zero_point = min(max(round(-low / scale), 0), levels)
    return torch.tensor(scale, dtype=torch.float32), torch.tensor(zero_point, dtype=torch.long)


class Int8Embedding(nn.Module):
    """Embedding rows stored as int8 with one float32 scale per row."""

    def __init__(self, weight_int8: torch.Tensor, weight_scale: torch.Tensor) -> None:
        super().__init__()
        # the very tensors of a tied LM head when there is one, so they are stored once
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("weight_scale", weight_scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight_int8[ids].float() * self.weight_scale[ids, None]


class LowRankLinear(nn.Module):
    """y = second(first(x)): an [out x in] linear as [r x in] then [out x r]."""

    def __init__(
        self,
        in_features: int,
        rank: int,
        out_features: int,
        bias: bool,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.rank, self.out_features = in_features, rank, out_features
        self.first = nn.Linear(in_features, rank, bias=False, dtype=dtype)
        self.second = nn.Linear(rank, out_features, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def shaped_like(linear: nn.Linear, rank: int) -> LowRankLinear:
    """An untrained factorised layer with the shapes, bias and dtype of `linear`."""
    return LowRankLinear(
        linear.in_features,
        rank,
        linear.out_features,
        linear.bias is not None,
        dtype=linear.weight.dtype,
    )


def _rebuild_half(model: nn.Module, step: dict[str, Any]) -> None:
    model.to(HALF[step["dtype"]])


def _rebuild_dynamic(model: nn.Module, step: dict[str, Any]) -> None:
    _put_shells(model, step["linears"], DynamicInt8Linear)
    _put_embedding_shells(model, step)


def _rebuild_static(model: nn.Module, step: dict[str, Any]) -> None:
    _put_shells(model, step["linears"], StaticInt8Linear)
    _put_embedding_shells(model, step)


def _put_shells(model: nn.Module, names: list[str], kind: type[Int8Weights]) -> None:
    for name in names:
        linear = model.get_submodule(name)
        model.set_submodule(
            name, kind(linear.in_features, linear.out_features, linear.bias is not None)
        )


def _put_embedding_shells(model: nn.Module, step: dict[str, Any]) -> None:
    head = model.get_submodule(step["head"])
    shell = DynamicInt8Linear(head.in_features, head.out_features, head.bias is not None)
    model.set_submodule(step["head"], shell)
    if step["tied"]:
        # the file holds these tensors once; sharing them here lets loading fill both
        embed = Int8Embedding(shell.weight_int8, shell.weight_scale)
    else:
        rows, width = model.get_submodule(step["embedding"]).weight.shape
        embed = Int8Embedding(torch.zeros(rows, width, dtype=torch.int8), torch.ones(rows))
    model.set_submodule(step["embedding"], embed)


def _rebuild_lowrank(model: nn.Module, step: dict[str, Any]) -> None:
    for name, rank in step["ranks"].items():
        model.set_submodule(name, shaped_like(model.get_submodule(name), rank))


def _nothing_to_reshape(_model: nn.Module, _step: dict[str, Any]) -> None:
    """Magnitude pruning (the store turns sparse tensors back into dense ones) and structured
    pruning (the saved config already describes the smaller model)."""


Rebuild = Callable[[nn.Module, dict[str, Any]], None]
REBUILDERS: dict[str, Rebuild] = {
    "half": _rebuild_half,
    "int8_dynamic": _rebuild_dynamic,
    "int8_static": _rebuild_static,
    "lowrank": _rebuild_lowrank,
    "magnitude": _nothing_to_reshape,
    "structured": _nothing_to_reshape,
}
