"""What a Ray cluster can hold for GPU training: its live nodes plus the nodes its autoscaler
can still add, and the GPU memory a worker gets there.

A cluster that scales from zero (a KubeRay GPU group at minReplicas 0) shows no GPU until a
job asks for one, so counting only the live nodes refuses every GPU run before the
autoscaler had a chance. A GPU worker takes one GPU and `cpus_per_worker` CPUs of one node
(Ray Train's `ScalingConfig(use_gpu=True)`), so a node holds min(GPUs, CPUs // per worker).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tasks.core.capacity import GPU_MEMORY_GIB

# Ray's accelerator types ("H100", "A100": NVML's name cut at the model) and GPU feature
# discovery's product names, by model. Ray's "A100" does not say 40 or 80 GB: take the
# smaller, so a plan never counts memory the card may not have.
ACCELERATOR_MEMORY_GIB = {
    **{name: float(gib) for name, gib in GPU_MEMORY_GIB.items()},
    "H200": 141.0,
    "H100": 80.0,
    "A100": 40.0,
    "L40S": 48.0,
    "A10G": 24.0,
    "A10": 24.0,
    "L4": 24.0,
    "T4": 16.0,
    "V100": 16.0,
}
# CUDA's context, the caching allocator and NCCL's buffers take part of the card (as in
# `tasks.core.capacity.plan_capacity`).
USABLE_GPU_FRACTION = 0.9
_SIZE = re.compile(r"(\d+)\s*G(?:B|IB)?\b", re.IGNORECASE)  # "A100-SXM4-80GB", "A100-80G"


@dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can start (a KubeRay worker group, a Ray node group)."""

    name: str
    cpus: float
    gpus: float
    max_nodes: int | None  # None: no limit
    accelerator: str | None = None  # a GPU name: Ray's accelerator type or a product name
    accelerator_memory_gib: float | None = None  # overrides what `accelerator` maps to

    @property
    def gpu_memory_gib(self) -> float | None:
        return self.accelerator_memory_gib or accelerator_memory_gib(self.accelerator)


@dataclass(frozen=True)
class LiveNode:
    """A node the cluster has now (`ray.nodes()`)."""

    cpus: float
    gpus: float
    group: str | None = None  # Ray's `ray.io/node-group` label (KubeRay sets it)
    accelerator: str | None = None  # Ray's `ray.io/accelerator-type` label

    @property
    def gpu_memory_gib(self) -> float | None:
        return accelerator_memory_gib(self.accelerator)


@dataclass(frozen=True)
class ClusterDescription:
    nodes: tuple[LiveNode, ...] = ()
    node_types: tuple[NodeType, ...] = ()  # empty: nothing is known beyond the live nodes
    source: str = ""  # where the node types came from, for messages

    @property
    def origin(self) -> str:
        if not self.node_types:
            return "no node types known beyond the live nodes"
        return f"node types from {self.source or 'the cluster'}"


@dataclass(frozen=True)
class GpuCapacity:
    """GPU workers the cluster can hold: on live nodes, and what each node type still adds."""

    live: int
    added: tuple[tuple[NodeType, int | None], ...]  # (type, workers; None = no limit)

    @property
    def total(self) -> int | None:
        if any(n is None for _, n in self.added):
            return None
        return self.live + sum(n or 0 for _, n in self.added)

    def explain(self) -> str:
        parts = [f"{self.live} on its live nodes"]
        for node_type, workers in self.added:
            most = "no limit" if node_type.max_nodes is None else f"max {node_type.max_nodes}"
            parts.append(
                f"{workers} more in group {node_type.name!r} ({most} nodes of {node_type.gpus:g} "
                f"GPU, {node_type.cpus:g} CPU)"
            )
        return ", ".join(parts)


def accelerator_memory_gib(name: str | None) -> float | None:
    """A GPU's memory from its name: a size in the name ("A100-SXM4-80GB") or its model's."""
    if not name:
        return None
    if name in ACCELERATOR_MEMORY_GIB:
        return ACCELERATOR_MEMORY_GIB[name]
    if sizes := _SIZE.findall(name):  # the last: a MIG slice ("A100-SXM4-40GB-MIG-1g.5gb")
        return float(sizes[-1])
    tokens = re.split(r"[-_ ]", name.upper())
    return next((ACCELERATOR_MEMORY_GIB[t] for t in tokens if t in ACCELERATOR_MEMORY_GIB), None)


def gpu_workers_per_node(cpus: float, gpus: float, cpus_per_worker: float) -> int:
    if cpus_per_worker <= 0:
        raise ValueError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
    return max(0, min(int(gpus), math.floor(cpus / cpus_per_worker + 1e-9)))


def nodes_left(description: ClusterDescription) -> dict[str, int | None]:
    """Nodes each type can still add: its maximum less its live nodes (found by their group
    label, else by the same CPUs and GPUs, so a live node is never counted twice)."""
    left = {t.name: t.max_nodes for t in description.node_types}
    for node in description.nodes:
        kind = next((t for t in description.node_types if t.name == node.group), None)
        if kind is None and node.group is None:
            kind = next(
                (
                    t
                    for t in description.node_types
                    if (t.cpus, t.gpus) == (node.cpus, node.gpus) and left[t.name] != 0
                ),
                None,
            )
        most = left[kind.name] if kind is not None else None
        if kind is not None and most is not None:
            left[kind.name] = max(0, most - 1)
    return left


def gpu_capacity(description: ClusterDescription, cpus_per_worker: float) -> GpuCapacity:
    live = sum(gpu_workers_per_node(n.cpus, n.gpus, cpus_per_worker) for n in description.nodes)
    left = nodes_left(description)
    added = []
    for node_type in description.node_types:
        per_node = gpu_workers_per_node(node_type.cpus, node_type.gpus, cpus_per_worker)
        if per_node:  # a CPU-only group adds no GPU worker
            nodes = left[node_type.name]
            added.append((node_type, None if nodes is None else nodes * per_node))
    return GpuCapacity(live, tuple(added))


def check_gpu_workers(
    description: ClusterDescription, num_workers: int, cpus_per_worker: float
) -> GpuCapacity:
    """The capacity, or a refusal naming what limits it (each group and its maximum)."""
    capacity = gpu_capacity(description, cpus_per_worker)
    total = capacity.total
    if total is not None and num_workers > total:
        raise ValueError(
            f"{num_workers} GPU workers asked for (1 GPU and {cpus_per_worker:g} CPU each), but "
            f"the Ray cluster can hold at most {total}: {capacity.explain()} "
            f"({description.origin}); lower num_workers or cpus_per_worker, or raise a GPU "
            "group's maxReplicas"
        )
    return capacity


def gpu_memory_per_worker(
    description: ClusterDescription, cpus_per_worker: float
) -> tuple[float, str]:
    """(GiB a GPU worker may use, which GPU): the smallest GPU any worker may be placed on
    (Ray picks the node), times the usable fraction. Refuses when a GPU's memory is unknown."""
    kinds: list[tuple[str, float | None]] = [
        (f"live node ({n.accelerator or 'unknown GPU'})", n.gpu_memory_gib)
        for n in description.nodes
        if gpu_workers_per_node(n.cpus, n.gpus, cpus_per_worker)
    ]
    left = nodes_left(description)
    kinds += [
        (f"group {t.name!r} ({t.accelerator or 'unknown GPU'})", t.gpu_memory_gib)
        for t in description.node_types
        if gpu_workers_per_node(t.cpus, t.gpus, cpus_per_worker) and left[t.name] != 0
    ]
    if not kinds:
        raise ValueError(
            f"no node of the Ray cluster ({description.origin}) can hold a GPU worker with "
            f"{cpus_per_worker:g} CPU: add a GPU group, or lower cpus_per_worker"
        )
    unknown = [where for where, gib in kinds if gib is None]
    if unknown:
        raise ValueError(
            f"the GPU memory of {', '.join(dict.fromkeys(unknown))} is not known: set "
            "memory_budget_gib to the memory a worker may use on it, or name the GPU in the node "
            "type (KubeRay: the group's nodeSelector nvidia.com/gpu.product or "
            "nvidia.com/gpu.memory, or the label ray.io/accelerator-type); known: "
            f"{', '.join(sorted(ACCELERATOR_MEMORY_GIB))}"
        )
    where, gib = min(((w, g) for w, g in kinds if g is not None), key=lambda kind: kind[1])
    return gib * USABLE_GPU_FRACTION, f"{USABLE_GPU_FRACTION:g} of the {gib:g} GiB GPU of {where}"
