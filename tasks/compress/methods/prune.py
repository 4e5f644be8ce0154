"""Pruning of a Llama-style causal LM, in place: unstructured magnitude pruning of the decoder
linears (zeros that the store keeps sparse on disk) and structured pruning that really removes
MLP neurons or attention heads and shrinks the config to match.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune

from tasks.shared.layers import decoder_linears

_BINS = 4096  # histogram bins for the global threshold; one bin's values are sorted exactly


def _check_fraction(value: float, what: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{what} must be strictly between 0 and 1, got {value}")


def prune_magnitude(model: nn.Module, sparsity: float) -> tuple[dict[str, Any], set[str]]:
    """Zero the smallest-magnitude weights over all decoder-layer linears together (global
    L1 unstructured) until `sparsity` of them are zero. Embeddings and LM head are left dense.

    Returns the recipe step and the state-dict names to store sparse."""
    _check_fraction(sparsity, "sparsity")
    linears = decoder_linears(model)
    weights = [linear.weight for linear in linears.values()]
    total = sum(w.numel() for w in weights)
    threshold = _kth_smallest_magnitude(weights, max(1, round(sparsity * total)))
    with torch.no_grad():
        for weight in weights:
            # masked_fill writes +0.0, which the sparse store restores bit for bit
            weight.masked_fill_(weight.abs() <= threshold, 0.0)
    zeros = sum(int((w == 0).sum()) for w in weights)
    names = [f"{name}.weight" for name in linears]
    step = {
        "kind": "magnitude",
        "sparsity": sparsity,
        "reached": zeros / total,
        "weights": names,
    }
    return step, set(names)


def _kth_smallest_magnitude(weights: list[torch.Tensor], k: int) -> float:
    """The k-th smallest |w| over all tensors (1-based), holding one tensor's worth of extra
    memory at a time instead of a copy of every weight: count per histogram bin, then sort
    only the bin the k-th value falls in."""
    with torch.no_grad():
        top = max(float(w.detach().abs().max()) for w in weights)
        edges = torch.linspace(0.0, top, _BINS + 1)[1:-1]
        counts = torch.zeros(_BINS, dtype=torch.long)
        for w in weights:
            counts += torch.bincount(_bin_of(w, edges), minlength=_BINS)
        cumulative = counts.cumsum(0)
        target = int(torch.searchsorted(cumulative, k))
        before = int(cumulative[target - 1]) if target else 0
        inside = torch.cat(
            [w.detach().abs().flatten()[_bin_of(w, edges) == target].float() for w in weights]
        )
        return float(inside.kthvalue(k - before).values)


def _bin_of(weight: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    return torch.bucketize(weight.detach().abs().flatten().float(), edges)


def hold_zeros(model: nn.Module, names: set[str] | list[str]) -> None:
    """Keep the zeros of these weights at zero through later training (a fixed mask on
    `weight`); call `release_zeros` before saving, which makes them plain weights again."""
    for name in names:
        module_name, _, param = name.rpartition(".")
        module = model.get_submodule(module_name)
        prune.custom_from_mask(module, param, mask=getattr(module, param) != 0)


def release_zeros(model: nn.Module) -> None:
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)


def prune_structured(
    model: nn.Module, target: Literal["mlp", "heads"], fraction: float
) -> dict[str, Any]:
    """Remove the same number of MLP neurons, or of attention heads, from every decoder layer,
    lowest L2 norm of their weights first, and update `model.config` to the smaller shapes
    (so `from_config` builds the pruned model)."""
    _check_fraction(fraction, "fraction")
    layers = model.get_decoder().layers
    if target == "mlp":
        return _prune_neurons(model, layers, fraction)
    if target == "heads":
        return _prune_heads(model, layers, fraction)
    raise ValueError(f"structured pruning target must be 'mlp' or 'heads', not {target!r}")


def _count_to_remove(total: int, fraction: float, unit: str) -> int:
    remove = round(fraction * total)
    if remove == 0:
        raise ValueError(f"fraction {fraction} of {total} {unit} removes none of them")
    if remove >= total:
        raise ValueError(f"fraction {fraction} of {total} {unit} would remove all of them")
    return remove


def _prune_neurons(model: nn.Module, layers: nn.ModuleList, fraction: float) -> dict[str, Any]:
    size = model.config.intermediate_size
    remove = _count_to_remove(size, fraction, "MLP neurons per layer")
    for layer in layers:
        mlp = layer.mlp
        score = (
            mlp.gate_proj.weight.detach().float().pow(2).sum(1)
            + mlp.up_proj.weight.detach().float().pow(2).sum(1)
            + mlp.down_proj.weight.detach().float().pow(2).sum(0)
        )
        keep = _keep_highest(score, size - remove)
        mlp.gate_proj = _take(mlp.gate_proj, rows=keep)
        mlp.up_proj = _take(mlp.up_proj, rows=keep)
        mlp.down_proj = _take(mlp.down_proj, cols=keep)
        mlp.intermediate_size = size - remove
    model.config.intermediate_size = size - remove
    return {
        "kind": "structured",
        "target": "mlp",
        "fraction": fraction,
        "removed_per_layer": remove,
        "intermediate_size": size - remove,
    }


def _prune_heads(model: nn.Module, layers: nn.ModuleList, fraction: float) -> dict[str, Any]:
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    if kv_heads != heads:
        raise ValueError(
            f"head pruning needs one key/value head per query head; this model has grouped-query "
            f"attention ({heads} query heads, {kv_heads} key/value heads)"
        )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    remove = _count_to_remove(heads, fraction, "attention heads per layer")
    if config.hidden_size % (heads - remove):
        # transformers' Llama config refuses such a config at construction, even with head_dim
        allowed = [n for n in range(1, heads) if config.hidden_size % n == 0]
        raise ValueError(
            f"keeping {heads - remove} of {heads} heads gives a config transformers refuses "
            f"(hidden_size {config.hidden_size} must be a multiple of num_attention_heads); "
            f"head counts that can be kept: {allowed}"
        )
    for layer in layers:
        attn = layer.self_attn
        per_head = [
            attn.q_proj.weight.detach().float().view(heads, head_dim, -1).pow(2).sum((1, 2)),
            attn.k_proj.weight.detach().float().view(heads, head_dim, -1).pow(2).sum((1, 2)),
            attn.v_proj.weight.detach().float().view(heads, head_dim, -1).pow(2).sum((1, 2)),
            attn.o_proj.weight.detach().float().view(-1, heads, head_dim).pow(2).sum((0, 2)),
        ]
        kept_heads = _keep_highest(sum(per_head), heads - remove)
        # each kept head keeps its head_dim consecutive rows (q/k/v) or columns (o)
        keep = (kept_heads[:, None] * head_dim + torch.arange(head_dim)).flatten()
        attn.q_proj = _take(attn.q_proj, rows=keep)
        attn.k_proj = _take(attn.k_proj, rows=keep)
        attn.v_proj = _take(attn.v_proj, rows=keep)
        attn.o_proj = _take(attn.o_proj, cols=keep)
    # head_dim stays explicit: hidden_size // heads would no longer give it
    config.head_dim = head_dim
    config.num_attention_heads = config.num_key_value_heads = heads - remove
    return {
        "kind": "structured",
        "target": "heads",
        "fraction": fraction,
        "removed_per_layer": remove,
        "num_attention_heads": heads - remove,
        "head_dim": head_dim,
    }


def _keep_highest(score: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest scores, in their original order."""
    return score.topk(count).indices.sort().values


def _take(
    linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
) -> nn.Linear:
    """A new Linear holding the chosen output rows or input columns of `linear`."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    out_features, in_features = weight.shape
    smaller = nn.Linear(
        in_features, out_features, bias=bias is not None, dtype=weight.dtype, device=weight.device
    )
    with torch.no_grad():
        smaller.weight.copy_(weight)
        if bias is not None:
            smaller.bias.copy_(bias)
    return smaller
