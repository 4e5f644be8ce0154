"""GPU fine-tuning on a cluster that scales from zero: the workers counted are those of the
live nodes plus what the autoscaler's node types can still add (infra/ray/raycluster.yaml's
GPU group starts at zero replicas), and a GPU run's memory budget is the GPU's."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ray.autoscaler._private.kuberay.autoscaling_config import (
    _generate_available_node_types_from_ray_cr_spec as kuberay_node_types,
)

from tasks.clients.ray_cluster import manifest_node_types, worker_capacity
from tasks.core.cluster import (
    ClusterDescription,
    LiveNode,
    NodeType,
    accelerator_memory_gib,
    check_gpu_workers,
    gpu_capacity,
    gpu_memory_per_worker,
)
from tasks.core.memory import GIB, ModelShape, check_fits, estimate_memory
from tasks.core.node_types import node_types_from_autoscaler, node_types_from_raycluster

from manifests import INFRA, load_documents

pytestmark = pytest.mark.unit

MANIFEST = INFRA / "ray" / "raycluster.yaml"
HEAD = LiveNode(cpus=0, gpus=0, group="headgroup")  # num-cpus 0: trains nothing
CPU_NODE = LiveNode(cpus=4, gpus=0, group="cpu")
# Llama-7B-like with LoRA rank 8 on q_proj/v_proj
SEVEN_B_LORA = ModelShape(6_738_415_616, 4_194_304, layers=32, hidden=4096, vocab=32000)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    (doc,) = load_documents(MANIFEST)
    return doc


def shipped(document: dict[str, Any], *live: LiveNode) -> ClusterDescription:
    """The shipped cluster as it starts: the head and two CPU workers, no GPU node."""
    nodes = live or (HEAD, CPU_NODE, CPU_NODE)
    return ClusterDescription(nodes, node_types_from_raycluster(document), str(MANIFEST))


def with_gpu_selector(document: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
    pinned = copy.deepcopy(document)
    (gpu,) = [g for g in pinned["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    gpu["template"]["spec"]["nodeSelector"].update(selector)
    return pinned


def test_the_manifests_groups_read_as_kuberays_autoscaler_reads_them(document) -> None:
    types = {t.name: t for t in manifest_node_types(MANIFEST)}
    assert types == {t.name: t for t in node_types_from_raycluster(document)}
    assert (types["gpu"].cpus, types["gpu"].gpus, types["gpu"].max_nodes) == (8, 1, 4)
    assert (types["cpu"].cpus, types["cpu"].gpus, types["cpu"].max_nodes) == (4, 0, 8)
    ray_view = kuberay_node_types(document["spec"])  # what the in-tree autoscaler computes
    for name, node_type in types.items():
        resources = ray_view[name]["resources"]
        assert node_type.cpus == resources["CPU"]
        assert node_type.gpus == resources.get("GPU", 0)
        assert node_type.max_nodes == ray_view[name]["max_workers"]


def test_a_gpu_run_is_accepted_up_to_what_the_gpu_group_scales_to(document) -> None:
    cluster = shipped(document)
    live = {"CPU": 8.0}  # what `ray.cluster_resources()` shows: no GPU until one is asked for
    assert worker_capacity(live, use_gpu=True, cpus_per_worker=1) == 0  # the old refusal
    for workers in (1, 4):
        assert check_gpu_workers(cluster, workers, cpus_per_worker=1).total == 4
    with pytest.raises(ValueError, match=r"at most 4: .*group 'gpu' \(max 4 nodes") as refused:
        check_gpu_workers(cluster, 5, cpus_per_worker=1)
    assert "5 GPU workers asked for" in str(refused.value)
    assert str(MANIFEST) in str(refused.value)


def test_a_worker_needs_its_cpus_on_the_gpu_node_too(document) -> None:
    assert gpu_capacity(shipped(document), cpus_per_worker=8).total == 4
    with pytest.raises(ValueError, match="can hold at most 0"):
        check_gpu_workers(shipped(document), 1, cpus_per_worker=9)  # the group has 8 CPUs


@pytest.mark.parametrize(
    ("gpu_node", "total"),
    [
        (LiveNode(cpus=8, gpus=1, group="gpu"), 4),  # one of the group's four, by its label
        (LiveNode(cpus=8, gpus=1), 4),  # no label: the same shape is the group's
        (LiveNode(cpus=16, gpus=2, group="other"), 6),  # a node no type describes adds its own
    ],
    ids=["labelled", "by-shape", "foreign"],
)
def test_a_live_gpu_node_is_counted_once(document, gpu_node: LiveNode, total: int) -> None:
    cluster = shipped(document, HEAD, CPU_NODE, gpu_node)
    assert gpu_capacity(cluster, cpus_per_worker=1).total == total


def test_the_autoscalers_cluster_config_and_an_unbounded_group() -> None:
    groups = [
        {"name": "headgroup", "resources": {"CPU": 0}, "max_count": 0},
        {
            "name": "h100",
            "resources": {"CPU": 8, "GPU": 1, "accelerator_type:H100": 1},
            "max_count": 2,
        },
        {"name": "any", "resources": {"CPU": 4, "GPU": 1}, "max_count": -1},
    ]
    h100, unbounded = node_types_from_autoscaler(groups)[1:]
    assert (h100.accelerator, h100.gpu_memory_gib, h100.max_nodes) == ("H100", 80.0, 2)
    assert unbounded.max_nodes is None
    cluster = ClusterDescription((HEAD,), (h100,), "the autoscaler's cluster config")
    assert gpu_capacity(cluster, 1).total == 2
    unlimited = ClusterDescription((HEAD,), (h100, unbounded))
    assert gpu_capacity(unlimited, 1).total is None
    assert check_gpu_workers(unlimited, 64, 1).total is None  # nothing to refuse on


@pytest.mark.parametrize(
    ("name", "gib"),
    [
        ("H100", 80),  # Ray's accelerator types
        ("H200", 141),
        ("A100", 40),  # Ray's name does not say 40 or 80 GB: the smaller
        ("L4", 24),
        ("T4", 16),
        ("A10G", 24),
        ("NVIDIA-A100-SXM4-80GB", 80),  # GPU feature discovery's product names
        ("NVIDIA-H100-80GB-HBM3", 80),
        ("Tesla-T4", 16),
        ("NVIDIA-L4", 24),
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", 5),  # a MIG slice: the slice's memory
        ("RTX-PRO-6000", None),  # unknown: never guessed
        (None, None),
    ],
)
def test_a_gpus_memory_from_its_name(name: str | None, gib: float | None) -> None:
    assert accelerator_memory_gib(name) == gib


def test_the_gpu_budget_comes_from_the_group_or_is_refused_when_unknown(document) -> None:
    with pytest.raises(ValueError, match=r"GPU memory of group 'gpu' \(unknown GPU\) is not known"):
        gpu_memory_per_worker(shipped(document), cpus_per_worker=1)
    product = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    h100 = ClusterDescription(
        (HEAD,), node_types_from_raycluster(with_gpu_selector(document, product))
    )
    gib, source = gpu_memory_per_worker(h100, cpus_per_worker=1)
    assert gib == pytest.approx(72.0)
    assert "80 GiB GPU of group 'gpu' (NVIDIA-H100-80GB-HBM3)" in source
    by_memory = with_gpu_selector(document, {"nvidia.com/gpu.memory": "81920"})  # MiB
    cluster = ClusterDescription((HEAD,), node_types_from_raycluster(by_memory))
    assert gpu_memory_per_worker(cluster, cpus_per_worker=1)[0] == pytest.approx(72.0)
    # Ray places a worker on any node that fits it: the smallest GPU bounds the plan.
    t4 = LiveNode(cpus=8, gpus=1, group="spare", accelerator="T4")
    mixed = ClusterDescription((HEAD, t4), h100.node_types)
    assert gpu_memory_per_worker(mixed, cpus_per_worker=1)[0] == pytest.approx(16 * 0.9)


def test_no_gpu_anywhere_is_refused() -> None:
    cluster = ClusterDescription((HEAD, CPU_NODE), (NodeType("cpu", 4, 0, 8),))
    with pytest.raises(ValueError, match="can hold a GPU worker"):
        gpu_memory_per_worker(cluster, cpus_per_worker=1)


def test_a_gpu_run_is_budgeted_against_the_gpu_not_the_hosts_memory(
    document, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from tasks.finetune import prepare
    from tasks.finetune.params import FinetuneParams
    from tasks.shared.settings import Settings

    product = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    cluster = shipped(with_gpu_selector(document, product))
    monkeypatch.setattr(prepare, "describe_cluster", lambda settings: cluster)
    monkeypatch.setattr(prepare, "_available_gib", lambda: 32.0)  # the flow host's free RAM
    settings = Settings(home=tmp_path)
    batch = 2  # 47 GiB a worker at 2048 tokens
    need = estimate_memory(SEVEN_B_LORA, "bf16", batch, 2048).total
    assert 32 * GIB / 2 < need < 72 * GIB

    host, host_source = prepare.memory_budget(FinetuneParams(num_workers=2), settings)
    assert (host, host_source) == (16.0, "this machine's available memory / 2 worker(s)")
    with pytest.raises(MemoryError):  # the old budget: host RAM over the workers
        check_fits(SEVEN_B_LORA, "bf16", batch, 2048, int(host * GIB), host_source)

    gpu = FinetuneParams(num_workers=2, use_gpu=True, batch_size=batch)
    budget, source = prepare.memory_budget(gpu, settings)
    assert budget == pytest.approx(72.0)
    assert check_fits(SEVEN_B_LORA, "bf16", batch, 2048, int(budget * GIB), source).total == need

    with pytest.raises(MemoryError) as refused:  # too big for the GPU: refused, with numbers
        check_fits(SEVEN_B_LORA, "bf16", 4, 2048, int(budget * GIB), source)  # 82 GiB
    message = str(refused.value)
    assert "exceeds the 72.00 GiB available (0.9 of the 80 GiB GPU of group 'gpu'" in message
    assert "estimated 81.59 GiB per worker" in message and "batch_size=3 fits" in message

    override = FinetuneParams(use_gpu=True, memory_budget_gib=20)
    assert prepare.memory_budget(override, settings) == (20, "memory_budget_gib")
