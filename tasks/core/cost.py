"""What a stage held and used, and what that cost at the prices in settings.

A stage is made of parts: the flow's own process, and the Ray workers it started. Each part
*held* resources for its wall time (cores, GPUs, its peak memory), whether it used them or
not: that is what a cluster bills. The CPU time it actually *used* is kept beside it, so the
difference shows idle reservations.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field, model_validator

GIB = 1024**3

# Approximate on-demand list prices in USD: Google Cloud us-central1 (N2 vCPU and memory;
# GPUs attached per GPU: T4, L4, A100 40/80 GB, H100 80 GB of A3, H200 of A3 Ultra) and AWS
# us-east-1 for the A10G (g5), as listed in 2024. Set LLMOPS_PRICES to your own.
PRICE_SOURCE = (
    "approximate on-demand list prices, USD per hour, as listed in 2024: Google Cloud "
    "us-central1 (cloud.google.com/compute/vm-instance-pricing, /compute/gpus-pricing) for "
    "vCPU, memory, T4, L4, A100, H100, H200; AWS us-east-1 g5 for the A10G"
)
DEFAULT_GPU_HOUR = {
    "T4": 0.35,
    "L4": 0.56,
    "A10G": 1.01,
    "A100-40GB": 2.93,
    "A100-80GB": 3.93,
    "H100": 11.06,
    "H200": 10.85,
}


class Prices(BaseModel):
    """Per-hour prices of what a run holds, and which GPU type its GPUs are."""

    cpu_hour: float = Field(0.0316, ge=0, description="One vCPU (one Ray CPU) for an hour.")
    memory_gib_hour: float = Field(0.0042, ge=0, description="One GiB of memory for an hour.")
    gpu_hour: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_HOUR), description="One GPU for an hour, by type."
    )
    gpu_type: str | None = Field(
        None, description="The type GPU workers run on (a key of gpu_hour); empty = no GPUs."
    )
    currency: str = Field("USD", description="Currency of every price here.")
    source: str = Field(PRICE_SOURCE, description="Where these prices come from, and when.")

    @model_validator(mode="after")
    def _known_gpu_type(self) -> Prices:
        if self.gpu_type is not None and self.gpu_type not in self.gpu_hour:
            raise ValueError(
                f"gpu_type {self.gpu_type!r} has no price: gpu_hour lists {sorted(self.gpu_hour)}"
            )
        if any(price < 0 for price in self.gpu_hour.values()):
            raise ValueError("GPU prices must not be negative")
        return self


class Usage(BaseModel):
    """What one part of a stage (a process or a Ray worker) held and used."""

    part: str = Field(description="'flow process', 'ray worker 0', ...")
    node: str = Field("", description="Host name or Ray node id it ran on.")
    wall_s: float = Field(ge=0, description="Seconds the part held its resources.")
    cores: float = Field(ge=0, description="CPU cores held.")
    cpu_s: float = Field(ge=0, description="CPU seconds actually used (user + system).")
    gpus: float = Field(0, ge=0, description="GPUs held.")
    gpu_type: str | None = Field(None, description="Their type (a key of the price table).")
    peak_memory_bytes: int = Field(ge=0, description="Peak resident memory of the part.")

    @property
    def cpu_core_s(self) -> float:
        return self.cores * self.wall_s

    @property
    def gpu_s(self) -> float:
        return self.gpus * self.wall_s

    @property
    def memory_gib_s(self) -> float:
        """Memory held: its peak, for the whole wall time (a pod's request is held that way)."""
        return self.peak_memory_bytes / GIB * self.wall_s


class Cost(BaseModel):
    cpu: float
    memory: float
    gpu: float
    currency: str = "USD"

    @property
    def total(self) -> float:
        return self.cpu + self.memory + self.gpu


def estimate_cost(usage: Usage | Iterable[Usage], prices: Prices) -> Cost:
    """Price what the parts held: core-hours, GiB-hours of peak memory and GPU-hours."""
    parts = [usage] if isinstance(usage, Usage) else list(usage)
    cpu = memory = gpu = 0.0
    for part in parts:
        cpu += part.cpu_core_s / 3600 * prices.cpu_hour
        memory += part.memory_gib_s / 3600 * prices.memory_gib_hour
        if part.gpu_s > 0:
            gpu_type = part.gpu_type or prices.gpu_type
            if gpu_type is None:
                raise ValueError(
                    f"{part.part} held {part.gpu_s:.0f} GPU-seconds of no known type: set the "
                    'GPU type in the price table (LLMOPS_PRICES=\'{"gpu_type": "A100-80GB"}\')'
                )
            if gpu_type not in prices.gpu_hour:
                raise ValueError(
                    f"GPU type {gpu_type!r} has no price: the table lists {sorted(prices.gpu_hour)}"
                )
            gpu += part.gpu_s / 3600 * prices.gpu_hour[gpu_type]
    return Cost(cpu=cpu, memory=memory, gpu=gpu, currency=prices.currency)


class StageUsage(BaseModel):
    """One stage of a pipeline run: its parts and their priced cost."""

    stage: str
    wall_s: float = Field(ge=0, description="Seconds from the stage's start to its end.")
    parts: list[Usage]
    cost: Cost

    @property
    def cpu_core_s(self) -> float:
        return sum(p.cpu_core_s for p in self.parts)

    @property
    def cpu_s(self) -> float:
        return sum(p.cpu_s for p in self.parts)

    @property
    def gpu_s(self) -> float:
        return sum(p.gpu_s for p in self.parts)

    @property
    def peak_memory_bytes(self) -> int:
        """The largest part's peak (per worker, not summed: each is its own machine's share)."""
        return max((p.peak_memory_bytes for p in self.parts), default=0)


# The stages that made a model version: its data, training, compression, registration and
# rollout. The embedding stage builds the search index, which no model version needs.
MODEL_STAGES = ("ingest", "finetune", "compress", "promote", "canary")


def version_cost(stages: Iterable[StageUsage]) -> float:
    """What the model version a pipeline run registered cost: the stages that made it."""
    return sum(s.cost.total for s in stages if s.stage in MODEL_STAGES)


def stage_usage(stage: str, wall_s: float, parts: list[Usage], prices: Prices) -> StageUsage:
    return StageUsage(stage=stage, wall_s=wall_s, parts=parts, cost=estimate_cost(parts, prices))


def usage_metrics(parts: Iterable[Usage], prices: Prices) -> dict[str, float]:
    """Flat `usage.*` metrics for a tracking run (MLflow keys allow dots)."""
    parts = list(parts)
    cost = estimate_cost(parts, prices)
    metrics = {
        "usage.wall_s": max((p.wall_s for p in parts), default=0.0),
        "usage.cpu_core_s": sum(p.cpu_core_s for p in parts),
        "usage.cpu_s": sum(p.cpu_s for p in parts),
        "usage.gpu_s": sum(p.gpu_s for p in parts),
        "usage.cost": cost.total,
    }
    for i, part in enumerate(parts):
        metrics[f"usage.peak_memory_mib.{_key(part.part, i)}"] = part.peak_memory_bytes / 2**20
    return metrics


def _key(name: str, index: int) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    return cleaned or f"part_{index}"
