"""Low-rank factorisation of the decoder linears by truncated SVD, in place."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasks.shared.layers import LowRankLinear, decoder_linears, shaped_like


def rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    """Smallest r with sum(S[:r]^2) / sum(S^2) >= energy."""
    share = singular.pow(2).cumsum(0) / singular.pow(2).sum()
    # a hair of slack so energy 1.0 is reached despite rounding in the cumulative sum
    return min(int(torch.searchsorted(share, energy - 1e-7)) + 1, singular.numel())


def factorize(linear: nn.Linear, energy: float) -> LowRankLinear | None:
    """The truncated SVD of `linear` keeping `energy`, sqrt(S) folded into each factor; None
    when that rank would not hold fewer parameters than the full matrix."""
    weight = linear.weight.detach().float()
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    rank = rank_for_energy(s, energy)
    if rank * (linear.in_features + linear.out_features) >= weight.numel():
        return None
    root = s[:rank].sqrt()
    low = shaped_like(linear, rank)
    with torch.no_grad():
        low.first.weight.copy_(root[:, None] * vh[:rank])
        low.second.weight.copy_(u[:, :rank] * root[None, :])
        if linear.bias is not None:
            low.second.bias.copy_(linear.bias.detach())
    return low


def factorize_lowrank(model: nn.Module, energy: float = 0.9) -> dict[str, Any]:
    """Replace each decoder-layer linear by its truncated SVD keeping `energy` of the squared
    singular values, wherever that rank has fewer parameters than the full matrix."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    ranks: dict[str, int] = {}
    for name, linear in decoder_linears(model).items():
        low = factorize(linear, energy)
        if low is not None:
            model.set_submodule(name, low)
            ranks[name] = low.rank
    return {"kind": "lowrank", "energy": energy, "ranks": ranks}
