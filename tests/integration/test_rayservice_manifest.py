"""The KubeRay RayService manifest (infra/serving/rayservice.yaml), checked as far as a machine
without Kubernetes can:

- its serveConfigV2 by Ray's own schema, after the JSON round trip KubeRay puts it through;
- its application by Ray's own code path: import_path imported, args handed to the builder
  the way Serve does, the result built into deployments, the config's deployment options
  applied by Serve's override function (all without starting Ray);
- its pod templates against the Kubernetes PodTemplateSpec schema (kubernetes-validate);
- KubeRay rules and the platform's own consistency (Ray version, image, environment).

The RayService document as a whole is not checked against KubeRay's CRD schema: no package
on the registries this project uses ships it (see infra/serving/README.md).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import ray
import yaml
from pydantic import BaseModel, ValidationError
from ray._common.utils import import_attr
from ray.serve import Application

# Serve's controller path, step by step: private modules (pyproject pins ray to 2.60.x).
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.application_state import override_deployment_info
from ray.serve._private.build_app import build_app
from ray.serve._private.deploy_utils import deploy_args_to_deployment_info
from ray.serve._private.deployment_info import DeploymentInfo
from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

from tasks.shared.settings import REPO_ROOT, Settings, get_settings

from manifests import kubernetes_versions, load_documents, validate, validate_pod_template

pytestmark = pytest.mark.integration

MANIFEST = REPO_ROOT / "infra" / "serving" / "rayservice.yaml"
WEIGHTS = [{"version": 4, "weight": 10}, {"version": "3", "weight": 90}]  # challenger first
MAX_RAYSERVICE_NAME = 53 - 6  # KubeRay: "-serve-svc" fits in 63, plus the cluster's suffix


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def serve_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """serveConfigV2 as Serve receives it: KubeRay reads the YAML into a Go map and sends it
    as JSON, which sorts every mapping's keys."""
    raw = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    return json.loads(json.dumps(raw, sort_keys=True))


@pytest.fixture(scope="module")
def app_config(serve_config: dict[str, Any]) -> ServeApplicationSchema:
    (app,) = ServeDeploySchema.model_validate(serve_config).applications
    return app


def unknown_keys(raw: dict[str, Any], schema: type[BaseModel]) -> set[str]:
    known = set(schema.model_fields) | {f.alias for f in schema.model_fields.values() if f.alias}
    return set(raw) - known


def built_deployments(
    app_config: ServeApplicationSchema, args: dict[str, Any]
) -> dict[str, DeploymentInfo]:
    """What Serve's controller deploys: the builder called as Serve calls it, the app built and
    serialised, then the config's deployment options applied (a name the app lacks raises)."""
    builder = import_attr(app_config.import_path)
    app = call_user_app_builder_with_args_if_necessary(builder, args)
    assert isinstance(app, Application)
    built = build_app(app, name=app_config.name)
    built.validate_single_fastapi_ingress()
    infos = {
        d.name: deployment_info(d, app_config.name, d.name == built.ingress_deployment_name)
        for d in built.deployments
    }
    return override_deployment_info(infos, app_config)


def deployment_info(deployment: Any, app_name: str, ingress: bool) -> DeploymentInfo:
    # As `get_deploy_args` in the build task, less the job id (which would start Ray).
    return deploy_args_to_deployment_info(
        deployment_name=deployment.name,
        deployment_config_proto_bytes=deployment._deployment_config.to_proto_bytes(),
        replica_config_proto_bytes=deployment._replica_config.to_proto_bytes(),
        deployer_job_id="",
        app_name=app_name,
        ingress=ingress,
    )


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for t in pod_templates(manifest).values() for c in t["spec"]["containers"]]


def pod_templates(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterConfig"]
    workers = {g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]}
    return {"head": cluster["headGroupSpec"]["template"], **workers}


def test_serve_config_passes_rays_schema_with_no_ignored_keys(
    serve_config: dict[str, Any], app_config: ServeApplicationSchema
) -> None:
    # Ray's schemas ignore unknown keys (forward compatibility): a misspelt one would vanish.
    assert not unknown_keys(serve_config, ServeDeploySchema)
    (raw_app,) = serve_config["applications"]
    assert not unknown_keys(raw_app, ServeApplicationSchema)
    for raw in raw_app["deployments"]:
        assert not unknown_keys(raw, DeploymentSchema), raw["name"]
    assert (app_config.name, app_config.route_prefix) == ("llmops", "/")
    assert app_config.import_path == "serving.config_app:build"


def head_labels(manifest: dict[str, Any]) -> dict[str, str]:
    """The head's Ray node labels, as `ray start --labels k=v,...` reads them."""
    text = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["labels"]
    return dict(pair.split("=", 1) for pair in text.split(","))


def test_explicit_weights_build_the_app_without_services_or_ray(
    settings: Settings, app_config: ServeApplicationSchema, manifest: dict[str, Any]
) -> None:
    # The manifest's args through KubeRay's key-sorting JSON, plus weights in routing order.
    args = json.loads(json.dumps({**app_config.args, "weights": WEIGHTS}, sort_keys=True))
    ray_before = ray.is_initialized()  # other tests of the session may have started it
    infos = built_deployments(app_config, args)
    # the versions are applications of their own, which the router loads when it starts
    assert set(infos) == {"Router", "Retriever"}
    router = infos["Router"].deployment_config.user_config
    assert list(router["weights"].items()) == [("4", 10.0), ("3", 90.0)]  # order kept
    models = infos["Router"].replica_config.init_args[3]  # serving.versions.ModelOptions
    assert models.model_cpus == float(app_config.args["model_cpus"])
    scaling = app_config.args["autoscaling"]
    assert models.autoscaling.min_replicas == scaling["min_replicas"] >= 2  # a pod can go
    config = models.deployment()["autoscaling_config"]  # what each version's app is given
    assert config["target_ongoing_requests"] == scaling["target_ongoing_requests"]
    assert models.max_queue == app_config.args["max_queue"] and models.engine == "continuous"
    for options in app_config.deployments:
        assert infos[options.name].deployment_config.num_replicas == options.num_replicas
    # the entry point stays where the head's labels are: on the node KubeRay never scales away
    head = head_labels(manifest)
    for name in ("Router", "Retriever"):
        selector = infos[name].replica_config.ray_actor_options["label_selector"]
        assert selector == app_config.args["control_labels"] and selector.items() <= head.items()
    assert not settings.home.exists()  # no registry (nor anything else) was opened
    assert ray.is_initialized() == ray_before  # building started no Ray


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A real MLflow registry (SQLite) where version 2 is champion and 3 challenger."""
    from tasks.clients.registry import model_registry
    from tasks.core.promotion import CHALLENGER, CHAMPION, REGISTERED_MODEL

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_HOME", str(tmp_path_factory.mktemp("registry") / "state"))
        patch.delenv("LLMOPS_MLFLOW_TRACKING_URI", raising=False)
        settings = get_settings()
        registry = model_registry(settings)
        registry.client.create_registered_model(REGISTERED_MODEL)
        for _ in range(3):
            registry.client.create_model_version(REGISTERED_MODEL, (settings.home / "m").as_uri())
        for alias, version, action in ((CHAMPION, "2", "promote"), (CHALLENGER, "3", "register")):
            registry.set_alias(
                REGISTERED_MODEL, alias, version, action=action, reason="test", actor="test"
            )
        yield settings


def test_without_weights_the_registry_aliases_decide(
    promoted: Settings, app_config: ServeApplicationSchema
) -> None:
    assert "weights" not in app_config.args  # the manifest as checked in
    infos = built_deployments(app_config, app_config.args)
    assert set(infos) == {"Router", "Retriever"}
    weights = infos["Router"].deployment_config.user_config["weights"]
    assert list(weights.items()) == [("3", 0.0), ("2", 100.0)]  # challenger first, at 0


def test_a_model_without_champion_fails_the_build_clearly(
    promoted: Settings, app_config: ServeApplicationSchema
) -> None:
    with pytest.raises(ValueError, match="no champion"):
        built_deployments(app_config, {**app_config.args, "model_name": "never-promoted"})


@pytest.mark.parametrize(
    "args",
    [
        {"wieghts": WEIGHTS},  # misspelt: refused, not ignored
        {"weights": [*WEIGHTS, {"version": "4", "weight": 1}]},  # a version twice
        {"weights": []},
        {"weights": [{"version": "4", "weight": -1}]},
        {"model_cpus": 0},
        {"model_replicas": 0},
        {"autoscaling": {"min_replicas": 1, "max_replicas": 4, "target": 8}},  # misspelt
        {"engine": "vllm"},
        {"control_labels": ["llmops.io/role"]},  # labels are key: value
    ],
)
def test_bad_args_are_refused_by_the_args_model(
    settings: Settings, app_config: ServeApplicationSchema, args: dict[str, Any]
) -> None:
    builder = import_attr(app_config.import_path)
    with pytest.raises(ValidationError):  # Serve validated args into ServingArgs
        call_user_app_builder_with_args_if_necessary(builder, args)


@pytest.mark.parametrize("kubernetes", kubernetes_versions())
def test_pod_templates_match_the_kubernetes_schema(
    manifest: dict[str, Any], kubernetes: str
) -> None:
    for group, template in pod_templates(manifest).items():
        validate_pod_template(template, group, kubernetes)  # strict: unknown fields are errors


def test_cluster_follows_kuberays_rules(manifest: dict[str, Any]) -> None:
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    name = manifest["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    assert len(name) <= MAX_RAYSERVICE_NAME
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:  # the CRD types them map[string]string: `num-cpus: 0` is refused
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())
    for worker in cluster["workerGroupSpecs"]:
        assert worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]


def test_cluster_runs_this_platform(manifest: dict[str, Any]) -> None:
    assert manifest["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert {c["image"] for c in containers(manifest)} == {
        f"ghcr.io/llmops/platform:{project['version']}"
    }


def test_every_node_gets_the_same_settings(manifest: dict[str, Any]) -> None:
    # Serve builds the app (reads the registry) on any node, and places replicas on any.
    first, *others = containers(manifest)
    for key in ("env", "envFrom", "volumeMounts"):
        assert all(c[key] == first[key] for c in others), key
    volumes = [t["spec"]["volumes"] for t in pod_templates(manifest).values()]
    assert all(v == volumes[0] for v in volumes)
    ours = [e["name"] for e in first["env"] if e["name"].startswith("LLMOPS_")]
    assert ours, "the state folder at least is set"
    for env in ours:  # pydantic-settings ignores unknown variables: a typo would be silent
        assert env.removeprefix("LLMOPS_").lower() in Settings.model_fields, env


def test_the_state_outlives_a_pod(manifest: dict[str, Any]) -> None:
    """LLMOPS_HOME (request log, Feast registry) is the claim in state.yaml,
    shared by every pod, never an emptyDir that a pod takes with it."""
    (claim,) = load_documents(REPO_ROOT / "infra" / "serving" / "state.yaml")
    for version in kubernetes_versions():
        validate(claim, version)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every Ray pod mounts it
    for name, template in pod_templates(manifest).items():
        (state,) = [v for v in template["spec"]["volumes"] if v["name"] == "state"]
        assert state == {
            "name": "state",
            "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
        }, name


def test_replicas_load_from_a_cache_on_their_node(manifest: dict[str, Any]) -> None:
    """Registered versions are fetched once per node into LLMOPS_MODEL_CACHE, a folder on the
    node's own disk: a new pod on that node, or a second replica, fetches nothing."""
    for name, template in pod_templates(manifest).items():
        (cache,) = [v for v in template["spec"]["volumes"] if v["name"] == "model-cache"]
        path = cache["hostPath"]["path"]
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["LLMOPS_MODEL_CACHE"] == mounts["model-cache"] == path, name
        assert not path.startswith(env["LLMOPS_HOME"]), "not on the shared claim"
