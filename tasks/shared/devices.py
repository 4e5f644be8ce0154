"""Where a serving replica runs its model and in which dtype, chosen from what the replica
asked of Ray and what torch sees, and refused with a reason rather than silently degraded.

The choices are plain functions of their inputs (`choose_device`, `choose_dtype`) so they are
tested on a CPU machine; `replica_placement` and `check_replica_memory` read torch's CUDA
state for the replica. Order in a replica: load on CPU, choose, check memory, then `place`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import torch
from torch import nn
from torch.ao.nn import quantized as ao_quantized

from tasks.core.serving_memory import (
    ServingEstimate,
    ServingShape,
    check_serving_fits,
    serving_budget,
    shape_from_config,
)
from tasks.shared.layers import Int8Weights

Device = Literal["cuda", "cpu"]
Model = TypeVar("Model", bound=nn.Module)

PRECISION = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# Modules whose kernels exist for the CPU only: the project's int8 linears
# (`torch.ops.quantized.linear*`, fbgemm) and torch's own quantized linears (dynamic included).
CPU_ONLY = (Int8Weights, ao_quantized.Linear)


def cpu_only_layers(model: nn.Module) -> list[str]:
    """Names of the modules in `model` that can only run on the CPU (int8 linears)."""
    return [name for name, module in model.named_modules() if isinstance(module, CPU_ONLY)]


def _cpu_only_message(names: Sequence[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"this model has {len(names)} int8 layers ({shown}) whose kernels run on the CPU "
        "only; serve it with model_gpus=0, or serve an uncompressed or half-precision "
        "version on the GPU"
    )


def choose_device(gpus_asked: float, cuda_available: bool, cpu_only: Sequence[str] = ()) -> Device:
    """ "cuda" when the replica asked Ray for a GPU (a fraction, or one), "cpu" when it asked
    for none. `cpu_only`: the model's CPU-only layers (`cpu_only_layers`)."""
    if gpus_asked < 0 or gpus_asked > 1:
        # One replica places its model on one device; more GPUs would be reserved and idle.
        raise ValueError(
            f"a model replica uses at most one GPU, asked {gpus_asked}: ask for more replicas"
        )
    if gpus_asked == 0:
        return "cpu"  # a GPU this replica did not ask for may belong to another one
    if not cuda_available:
        raise RuntimeError(
            f"the replica asked for {gpus_asked} GPU but torch sees none: is torch a CUDA "
            f"build (torch.version.cuda is {torch.version.cuda}), does the node have a GPU "
            "and did Ray assign it (CUDA_VISIBLE_DEVICES)? Not falling back to the CPU"
        )
    if cpu_only:
        raise ValueError(_cpu_only_message(cpu_only))
    return "cuda"


def choose_dtype(device: str, model: nn.Module, bf16_supported: bool = True) -> torch.dtype:
    """bfloat16 on a GPU (float16 where the GPU has no bfloat16), float32 on the CPU. A model
    already in half precision (a compressed candidate) keeps the dtype it was evaluated in,
    except bfloat16 on a GPU without it, which goes up to float32 (exact; float16 could
    overflow). Int8 models compute in float32, on the CPU only."""
    if names := cpu_only_layers(model):
        if device != "cpu":
            raise ValueError(_cpu_only_message(names))
        return torch.float32
    current = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if current == torch.float16 or (current == torch.bfloat16 and device == "cpu"):
        return current
    if current == torch.bfloat16:
        return torch.bfloat16 if bf16_supported else torch.float32
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if bf16_supported else torch.float16


@torch.no_grad()
def place(model: Model, device: str, dtype: torch.dtype) -> Model:
    """`model` on `device`, its floating parameters in `dtype`; buffers keep their dtype
    (rotary frequencies stay float32) and tied weights stay tied. Each parameter is cast on
    its way, so the device never holds a float32 copy of a model served in half precision."""
    names = cpu_only_layers(model)
    if names and torch.device(device).type != "cpu":
        raise ValueError(_cpu_only_message(names))
    if names and dtype != torch.float32:
        raise ValueError(f"int8 layers compute in float32; cannot serve them in {dtype}")
    for param in model.parameters():  # each shared parameter once
        target = dtype if param.is_floating_point() else param.dtype
        param.data = param.data.to(device=device, dtype=target)
    return model.to(device)  # the buffers; parameters are there already


def precision_of(dtype: torch.dtype) -> str:
    """The memory estimate's name for a dtype ("fp32", "bf16", "fp16")."""
    if dtype not in PRECISION:
        raise ValueError(f"no serving precision for {dtype}; one of {list(PRECISION)}")
    return PRECISION[dtype]


def serving_shape_of(model: nn.Module) -> ServingShape:
    """The model's serving shape: its config's geometry, and its unique parameters plus the
    elements of int8 weight buffers (so an int8 model is not counted as nearly empty)."""
    # Both iterators yield a shared tensor once: a tied head and embedding count once.
    parameters = sum(p.numel() for p in model.parameters())
    parameters += sum(b.numel() for b in model.buffers() if b.dtype == torch.int8)
    return shape_from_config(model.config, parameters)


def replica_placement(model: nn.Module, gpus_asked: float) -> tuple[Device, torch.dtype]:
    """The device and dtype for this replica, from torch's view of its GPUs."""
    cuda = torch.cuda.is_available()
    device = choose_device(gpus_asked, cuda, cpu_only_layers(model))
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return device, choose_dtype(device, model, bf16_supported=bf16)


def check_replica_memory(
    model: nn.Module,
    device: str,
    dtype: torch.dtype,
    gpus_asked: float,
    max_batch: int,
    context: int,
) -> ServingEstimate | None:
    """Before `place`: refuse (`ServingMemoryError`, a ValueError) a model that would not fit
    its GPU share at `max_batch` rows of `context` tokens (prompt and answer). None on the CPU,
    whose memory is the node's and shared with everything else on it."""
    if torch.device(device).type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(torch.device(device))
    budget = serving_budget(gpus_asked, total, free)
    return check_serving_fits(
        serving_shape_of(model), precision_of(dtype), max_batch, context, budget
    )
