"""Low-rank factorisation of the decoder linears by truncated SVD, in place."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasks.compression.quantize import decoder_linears
from tasks.compression.store import rebuilder


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


def rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    """Smallest r with sum(S[:r]^2) / sum(S^2) >= energy."""
    share = singular.pow(2).cumsum(0) / singular.pow(2).sum()
    # a hair of slack so energy 1.0 is reached despite rounding in the cumulative sum
    return min(int(torch.searchsorted(share, energy - 1e-7)) + 1, singular.numel())


def _shaped_like(linear: nn.Linear, rank: int) -> LowRankLinear:
    """An untrained factorised layer with the shapes, bias and dtype of `linear`."""
    return LowRankLinear(
        linear.in_features,
        rank,
        linear.out_features,
        linear.bias is not None,
        dtype=linear.weight.dtype,
    )


def factorize(linear: nn.Linear, energy: float) -> LowRankLinear | None:
    """The truncated SVD of `linear` keeping `energy`, sqrt(S) folded into each factor; None
    when that rank would not hold fewer parameters than the full matrix."""
    weight = linear.weight.detach().float()
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    rank = rank_for_energy(s, energy)
    if rank * (linear.in_features + linear.out_features) >= weight.numel():
        return None
    root = s[:rank].sqrt()
    low = _shaped_like(linear, rank)
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


@rebuilder("lowrank")
def _rebuild_lowrank(model: nn.Module, step: dict[str, Any]) -> None:
    for name, rank in step["ranks"].items():
        model.set_submodule(name, _shaped_like(model.get_submodule(name), rank))
