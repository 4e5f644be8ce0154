"""The MLflow tracking server (infra/mlflow/mlflow.yaml): the Kubernetes schema, the server's
arguments parsed by the installed MLflow's own `mlflow server` command, its Host-header check
run by MLflow's own function, and no secret value in the manifest."""

from __future__ import annotations

import re
from typing import Any

import click
import pytest
from mlflow.cli import server as mlflow_server
from mlflow.server.security_utils import is_allowed_host_header

from manifests import INFRA, kubernetes_versions, load_documents, platform_image, validate

pytestmark = pytest.mark.unit

MANIFEST = INFRA / "mlflow" / "mlflow.yaml"
NAMESPACE = "llmops"  # the README's example namespace
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN")


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in load_documents(MANIFEST)}


@pytest.fixture(scope="module")
def container(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


@pytest.mark.parametrize("kubernetes", kubernetes_versions())
def test_documents_match_the_kubernetes_schema(
    documents: dict[str, dict[str, Any]], kubernetes: str
) -> None:
    assert set(documents) == {"Deployment", "Service"}
    for document in documents.values():
        validate(document, kubernetes)


def test_mlflow_server_accepts_the_arguments(container: dict[str, Any]) -> None:
    assert container["command"] == ["mlflow", "server"]
    # click parses (and type-checks) every option without running the server.
    ctx = mlflow_server.make_context("server", list(container["args"]))
    params = ctx.params
    assert params["backend_store_uri"].startswith("postgresql://")
    assert params["artifacts_destination"].startswith("s3://")
    assert params["serve_artifacts"] is True  # clients need no bucket credentials
    assert params["port"] == 5000
    with pytest.raises(click.NoSuchOption):  # the check has teeth: a misspelt option fails
        mlflow_server.make_context("server", ["--backend-store-url=postgresql://x"])


def test_arguments_refer_only_to_defined_variables(container: dict[str, Any]) -> None:
    # An undefined $(VAR) is passed through literally by Kubernetes: a broken URI at runtime.
    defined = {e["name"] for e in container["env"]}
    used = {v for arg in container["args"] for v in re.findall(r"\$\((\w+)\)", arg)}
    assert used <= defined, used - defined


def test_no_secret_value_in_the_manifest(container: dict[str, Any]) -> None:
    for env in container["env"]:
        if SECRET_LIKE.search(env["name"]):
            assert "value" not in env and "secretKeyRef" in env["valueFrom"], env["name"]
    (uri,) = [a for a in container["args"] if "postgresql://" in a]
    assert "postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@" in uri  # from the Secret


def test_in_cluster_clients_pass_the_host_check(container: dict[str, Any]) -> None:
    (arg,) = [a for a in container["args"] if a.startswith("--allowed-hosts=")]
    allowed = expand(arg.split("=", 1)[1], {"POD_NAMESPACE": NAMESPACE}).split(",")
    for host in ("mlflow:5000", f"mlflow.{NAMESPACE}:5000", f"mlflow.{NAMESPACE}.svc:5000"):
        assert is_allowed_host_header(allowed, host), host  # MLflow's own check
    assert not is_allowed_host_header(allowed, "evil.example.com:5000")


def test_service_reaches_the_pods(documents: dict[str, dict[str, Any]]) -> None:
    deployment, service = documents["Deployment"], documents["Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == port["port"] == 5000
    assert service["metadata"]["name"] == "mlflow"  # LLMOPS_MLFLOW_TRACKING_URI's host


def test_runs_the_platform_image(container: dict[str, Any]) -> None:
    # The same MLflow as the clients (the image also carries psycopg2 and boto3).
    assert container["image"] == platform_image()
