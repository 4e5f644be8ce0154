"""The training RayCluster (infra/ray/raycluster.yaml), checked without a cluster: its pod
templates by the Kubernetes schema, KubeRay's rules that can be read off the document, and
the platform's consistency (Ray version, image, settings, shared checkpoint storage)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import ray

from manifests import (
    INFRA,
    kubernetes_versions,
    load_documents,
    platform_image,
    unknown_settings,
    validate_pod_template,
)

pytestmark = pytest.mark.unit

MANIFEST = INFRA / "ray" / "raycluster.yaml"
GPU = "nvidia.com/gpu"
MAX_CLUSTER_NAME = 63 - len("-head-svc")  # KubeRay's head Service name must fit in 63


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    (document,) = load_documents(MANIFEST)
    return document


def groups(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = cluster["spec"]
    return {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]  # KubeRay: the first is Ray's


@pytest.mark.parametrize("kubernetes", kubernetes_versions())
def test_pod_templates_match_the_kubernetes_schema(
    cluster: dict[str, Any], kubernetes: str
) -> None:
    for name, group in groups(cluster).items():
        validate_pod_template(group["template"], name, kubernetes)


def test_cluster_follows_kuberays_rules(cluster: dict[str, Any]) -> None:
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    name = cluster["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= MAX_CLUSTER_NAME
    workers = cluster["spec"]["workerGroupSpecs"]
    names = [g["groupName"] for g in workers]
    assert len(set(names)) == len(names), "worker group names must be unique"
    for group in groups(cluster).values():  # the CRD types them map[string]string
        params = group.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values()), params
    for group in workers:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_autoscaling_is_bounded(cluster: dict[str, Any]) -> None:
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert all(g["maxReplicas"] > g["minReplicas"] for g in cluster["spec"]["workerGroupSpecs"])


def test_head_serves_ray_clients(cluster: dict[str, Any]) -> None:
    head = groups(cluster)["head"]
    ports = {p["containerPort"]: p["name"] for p in ray_container(head).get("ports", [])}
    assert ports.get(10001) == "client", "ray:// (LLMOPS_RAY_ADDRESS) needs the client port"
    assert head["rayStartParams"]["num-cpus"] == "0", "no training worker on the head"


def test_gpu_group_asks_for_and_announces_gpus(cluster: dict[str, Any]) -> None:
    by_gpu = {
        name: GPU in ray_container(g)["resources"].get("limits", {})
        for name, g in groups(cluster).items()
    }
    assert by_gpu == {"head": False, "cpu": False, "gpu": True}
    gpu = groups(cluster)["gpu"]
    resources = ray_container(gpu)["resources"]
    # Kubernetes needs requests == limits for extended resources; Ray must be told the count
    # (it does not look at the pod's limits) or Ray Train's use_gpu workers never place.
    assert resources["requests"][GPU] == resources["limits"][GPU]
    assert gpu["rayStartParams"]["num-gpus"] == str(resources["limits"][GPU])
    spec = gpu["template"]["spec"]
    assert any(t["key"] == GPU and t["effect"] == "NoSchedule" for t in spec["tolerations"])
    assert spec["nodeSelector"], "GPU pods go to GPU nodes"
    for name in ("head", "cpu"):  # a CPU group's pod must not sit on (or wait for) GPU nodes
        assert "tolerations" not in groups(cluster)[name]["template"]["spec"]


def test_cluster_runs_this_platform(cluster: dict[str, Any]) -> None:
    assert cluster["spec"]["rayVersion"] == ray.__version__
    images = {name: ray_container(g)["image"] for name, g in groups(cluster).items()}
    assert images == {
        "head": platform_image(),
        "cpu": platform_image(),
        "gpu": platform_image("-cuda"),
    }


def test_every_node_gets_the_same_settings_and_checkpoint_storage(
    cluster: dict[str, Any],
) -> None:
    containers = [ray_container(g) for g in groups(cluster).values()]
    first, *others = containers
    for key in ("env", "envFrom"):
        assert all(c[key] == first[key] for c in others), key
    env = {e["name"]: e.get("value") for e in first["env"]}
    assert not unknown_settings(env)
    # Ray Train writes checkpoints to LLMOPS_RAY_STORAGE from every worker, and the driver
    # reads them back: it must be a path every node mounts from one shared volume.
    storage = env["LLMOPS_RAY_STORAGE"]
    for group in groups(cluster).values():
        spec = group["template"]["spec"]
        (mount,) = [m for m in ray_container(group)["volumeMounts"] if m["mountPath"] == storage]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == "llmops-checkpoints"
