"""Half precision and int8 quantization of a causal LM, in place, with the recipe steps that
rebuild the same module tree on load.

The int8 linears run PyTorch's core quantized CPU kernels (`torch.ops.quantized.linear*`,
fbgemm/x86 engine) on int8 weights kept as plain buffers, so the state dict holds ordinary
int8/float32 tensors and safetensors can store it. PyTorch 2.13 warns once per process that
the quantized-tensor creation functions these kernels need are deprecated (pytorch#184982).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from tasks.compression.store import rebuilder

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


def to_half(model: nn.Module, dtype: Literal["fp16", "bf16"]) -> dict[str, Any]:
    if dtype not in HALF:
        raise ValueError(f"half precision dtype must be one of {sorted(HALF)}, not {dtype!r}")
    model.to(HALF[dtype])
    return {"kind": "half", "dtype": dtype}


@rebuilder("half")
def _rebuild_half(model: nn.Module, step: dict[str, Any]) -> None:
    model.to(HALF[step["dtype"]])


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: weight ~= int8 * scale[:, None], int8 in [-127, 127]."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


class _Int8Weights(nn.Module):
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


class DynamicInt8Linear(_Int8Weights):
    """y = x W^T + b with int8 per-row weights; activations are quantized per call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        out = torch.ops.quantized.linear_dynamic(flat, self.packed(), _REDUCE_RANGE)
        return out.view(*x.shape[:-1], self.out_features)


class StaticInt8Linear(_Int8Weights):
    """y = x W^T + b with int8 weights and uint8 activations whose scales and zero points
    were fixed by calibration. Inputs use 7 bits, which fbgemm cannot overflow even without
    VNNI, so a saved file does not depend on the CPU it was calibrated on."""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__(in_features, out_features, bias)
        for name in ("input", "output"):
            self.register_buffer(f"{name}_scale", torch.ones(()))
            self.register_buffer(f"{name}_zero_point", torch.zeros((), dtype=torch.long))

    def set_ranges(self, seen_in: tuple[float, float], seen_out: tuple[float, float]) -> None:
        self.input_scale, self.input_zero_point = _affine_qparams(*seen_in, levels=127)
        self.output_scale, self.output_zero_point = _affine_qparams(*seen_out, levels=255)
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


def _affine_qparams(low: float, high: float, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
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


@rebuilder("int8_dynamic")
def _rebuild_dynamic(model: nn.Module, step: dict[str, Any]) -> None:
    _put_shells(model, step["linears"], DynamicInt8Linear)
    _put_embedding_shells(model, step)


@rebuilder("int8_static")
def _rebuild_static(model: nn.Module, step: dict[str, Any]) -> None:
    _put_shells(model, step["linears"], StaticInt8Linear)
    _put_embedding_shells(model, step)


def _put_shells(model: nn.Module, names: list[str], kind: type[_Int8Weights]) -> None:
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
