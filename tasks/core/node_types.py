"""Where a cluster's node types come from: a KubeRay RayCluster manifest (its worker groups),
or the cluster config Ray's autoscaler reports. Both read as `tasks.core.cluster.NodeType`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.core.cluster import NodeType

GPU_RESOURCE = "nvidia.com/gpu"
# What NVIDIA's GPU feature discovery labels a node with, and Ray's own node label: a group
# that selects one of them names the GPU its pods get.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # e.g. NVIDIA-H100-80GB-HBM3
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, e.g. 81559
RAY_ACCELERATOR_LABEL = "ray.io/accelerator-type"  # e.g. H100
RAY_GROUP_LABEL = "ray.io/node-group"  # Ray's label of a node's group (KubeRay: groupName)
RAY_ACCELERATOR_RESOURCE = "accelerator_type:"  # Ray's resource prefix, e.g. accelerator_type:H100


def node_types_from_raycluster(document: Mapping[str, Any]) -> tuple[NodeType, ...]:
    """The worker groups of a RayCluster as node types, read the way KubeRay's autoscaler
    reads them: CPUs and GPUs from rayStartParams, else the Ray container's limits (then
    requests), rounded up; at most maxReplicas × numOfHosts nodes. The head trains nothing."""
    if document.get("kind") != "RayCluster":
        raise ValueError(f"not a RayCluster manifest (kind {document.get('kind')!r})")
    return tuple(_group_node_type(group) for group in document["spec"].get("workerGroupSpecs", []))


def _group_node_type(group: Mapping[str, Any]) -> NodeType:
    name = group["groupName"]
    params = group.get("rayStartParams") or {}
    pod = group["template"]["spec"]
    resources = pod["containers"][0].get("resources") or {}  # KubeRay: the first is Ray's
    limits = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
    cpus = params.get("num-cpus", limits.get("cpu"))
    gpus = params.get("num-gpus", limits.get(GPU_RESOURCE, 0))
    if cpus is None:
        raise ValueError(f"worker group {name!r} says no CPU count (num-cpus or a cpu limit)")
    selector = {**(pod.get("nodeSelector") or {}), **(group.get("labels") or {})}
    memory_mib = selector.get(GPU_MEMORY_LABEL)
    return NodeType(
        name=name,
        cpus=_quantity(cpus, name),
        gpus=_quantity(gpus, name),
        max_nodes=int(group["maxReplicas"]) * int(group.get("numOfHosts", 1)),
        accelerator=selector.get(RAY_ACCELERATOR_LABEL) or selector.get(GPU_PRODUCT_LABEL),
        accelerator_memory_gib=int(memory_mib) / 1024 if memory_mib else None,
    )


def _quantity(value: object, group: str) -> float:
    """A Kubernetes CPU/GPU quantity ("4", 4, "500m"), rounded up as Ray's autoscaler does."""
    text = str(value).strip()
    try:
        number = int(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError as err:
        raise ValueError(f"worker group {group!r}: {value!r} is not a CPU/GPU count") from err
    return float(math.ceil(number))


def node_types_from_autoscaler(groups: Iterable[Mapping[str, Any]]) -> tuple[NodeType, ...]:
    """Node types from the cluster config Ray's autoscaler reports (its node group configs:
    name, resources, max_count, -1 for no limit)."""
    types = []
    for group in groups:
        resources = group.get("resources") or {}
        most = int(group.get("max_count", 0))
        types.append(
            NodeType(
                name=str(group["name"]),
                cpus=float(resources.get("CPU", 0)),
                gpus=float(resources.get("GPU", 0)),
                max_nodes=None if most < 0 else most,
                accelerator=accelerator_in(resources),
            )
        )
    return tuple(types)


def accelerator_in(resources: Mapping[str, Any]) -> str | None:
    """The accelerator type Ray announces as a resource (`accelerator_type:H100`)."""
    prefix = RAY_ACCELERATOR_RESOURCE
    return next((k[len(prefix) :] for k in resources if k.startswith(prefix)), None)
