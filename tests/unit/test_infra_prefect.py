"""The Prefect Kubernetes work pool (infra/prefect/base-job-template.json) checked by the
Kubernetes worker's own code (prefect-kubernetes): its variables schema, its job
configuration rendered with the variables' defaults into the worker's configuration model and
prepared for a flow run as the worker does; the resulting Job by the Kubernetes schema. And the
worker chart's values (infra/prefect/values-worker.yaml) against the rest of infra/."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import jsonschema
import pytest
import yaml
from prefect.client.schemas.objects import FlowRun

from manifests import (
    IMAGE_REPOSITORY,
    INFRA,
    kubernetes_versions,
    load_documents,
    platform_image,
    project_version,
    unknown_settings,
    validate,
)

pytestmark = pytest.mark.unit

try:
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration
except ImportError as err:  # a test never skips: say what is missing
    raise AssertionError(
        "prefect-kubernetes is missing: pip install 'prefect-kubernetes>=0.6,<0.9'"
    ) from err

TEMPLATE = INFRA / "prefect" / "base-job-template.json"
WORKER_VALUES = INFRA / "prefect" / "values-worker.yaml"
RAY_CLUSTER = INFRA / "ray" / "raycluster.yaml"
# What Prefect's own Job validation insists on at the pod level (a quirk of its default
# template); Kubernetes drops these two unknown PodSpec fields. Removed before strict checks.
PREFECT_POD_QUIRKS = ("parallelism", "completions")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def render(template: dict[str, Any], values: dict[str, Any] | None = None) -> Any:
    """The worker's path: template + values -> configuration model -> prepared for a run."""
    # No block or variable references in the template: the client is never used.
    config = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            template, values or {}, client=object()
        )
    )
    config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="infra-test"))
    return config


@pytest.fixture(scope="module")
def job(template: dict[str, Any]) -> dict[str, Any]:
    return render(template).job_manifest


def test_template_has_the_shape_work_pool_create_takes(template: dict[str, Any]) -> None:
    default = KubernetesWorker.get_default_base_job_template()
    assert set(template) == {"job_configuration", "variables"}
    assert set(template["job_configuration"]) == set(default["job_configuration"])
    jsonschema.Draft202012Validator.check_schema(template["variables"])
    # Every variable the worker knows is still there, and each default fits its own schema.
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    resolver = template["variables"].get("definitions", {})
    for prop in template["variables"]["properties"].values():
        if "default" in prop:
            jsonschema.validate(prop["default"], {**prop, "definitions": resolver})


@pytest.mark.parametrize("kubernetes", kubernetes_versions())
def test_rendered_job_matches_the_kubernetes_schema(job: dict[str, Any], kubernetes: str) -> None:
    strict = copy.deepcopy(job)
    pod = strict["spec"]["template"]["spec"]
    for quirk in PREFECT_POD_QUIRKS:
        pod.pop(quirk)
    strict["metadata"]["name"] = strict["metadata"]["generateName"] + "x"  # as the API names it
    validate(strict, kubernetes)


def test_flow_runs_use_the_platform_image_and_settings(job: dict[str, Any]) -> None:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == platform_image()
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert not unknown_settings(env)
    assert {"configMapRef": {"name": "llmops-platform"}} in container["envFrom"]


def test_flow_runs_reach_the_training_cluster_and_its_checkpoints(job: dict[str, Any]) -> None:
    (cluster,) = load_documents(RAY_CLUSTER)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    head_service = f"{cluster['metadata']['name']}-head-svc"  # KubeRay's naming
    assert env["LLMOPS_RAY_ADDRESS"] == f"ray://{head_service}:10001"
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    ray_env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    # Ray Train's driver (this job) and workers must see one checkpoint folder.
    assert env["LLMOPS_RAY_STORAGE"] == ray_env["LLMOPS_RAY_STORAGE"]
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
        for v in job["spec"]["template"]["spec"]["volumes"]
    }
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["LLMOPS_RAY_STORAGE"]]
    assert claims[mount["name"]] == "llmops-checkpoints"


def test_deployment_overrides_still_apply(template: dict[str, Any]) -> None:
    job = render(
        template,
        {
            "image": f"{IMAGE_REPOSITORY}:{project_version()}-cuda",
            "env": {"LLMOPS_RAY_ADDRESS": "auto"},
        },
    ).job_manifest
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"].endswith("-cuda") and env["LLMOPS_RAY_ADDRESS"] == "auto"


def test_the_worker_refuses_a_broken_template(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    pod = broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["containers"][0]["name"] = "flows"  # the worker looks its container up by name
    with pytest.raises(ValueError, match="prefect-job"):
        render(broken)


def test_worker_values_point_at_this_pool_and_image() -> None:
    values = yaml.safe_load(WORKER_VALUES.read_text())["worker"]
    assert values["apiConfig"] == "selfHostedServer"
    assert values["selfHostedServerApiConfig"]["apiUrl"].endswith("/api")
    assert values["config"]["type"] == KubernetesWorker.type
    assert values["config"]["workPool"] == "kubernetes"
    image = values["image"]
    assert f"{image['repository']}:{image['prefectTag']}" == platform_image()
    # The chart's pod runs as the image's user (uid 1000, infra/image/Dockerfile).
    assert values["podSecurityContext"]["runAsUser"] == 1000
