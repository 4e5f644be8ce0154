"""Helpers for the tests of infra/: the manifests as documents, Kubernetes schemas by a real
validator, and the platform's own conventions (one image, real settings)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tasks.shared.settings import REPO_ROOT, Settings

INFRA = REPO_ROOT / "infra"
IMAGE_REPOSITORY = "ghcr.io/llmops/platform"
OLDEST_KUBERNETES = "1.30"  # the oldest Kubernetes infra/README.md names


def kubernetes_validate() -> ModuleType:
    """The validator, or a failure that says what to install (a test never skips)."""
    try:
        import kubernetes_validate as kv
    except ImportError as err:  # pragma: no cover - the dev extra installs it
        raise AssertionError(
            "kubernetes-validate is missing: pip install 'kubernetes-validate>=1.37,<1.38' "
            "(or `make setup`, which installs the [dev] extra)"
        ) from err
    return kv


def kubernetes_versions() -> list[str]:
    """The oldest Kubernetes we support and the newest the validator knows."""
    from kubernetes_validate.utils import latest_version

    kubernetes_validate()
    return [OLDEST_KUBERNETES, latest_version()]


def validate(document: dict[str, Any], version: str) -> None:
    """Strictly: an unknown field is an error, as a misspelt one would be silently dropped."""
    kubernetes_validate().validate(document, version, strict=True)


def validate_pod_template(template: dict[str, Any], name: str, version: str) -> None:
    # A PodTemplate's `template` is a PodTemplateSpec, the type KubeRay's groups embed.
    wrapped = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name},
        "template": template,
    }
    validate(wrapped, version)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def project_version() -> str:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def platform_image(variant: str = "") -> str:
    """The platform's one image, tagged with the project's version (`-cuda`: the GPU build)."""
    return f"{IMAGE_REPOSITORY}:{project_version()}{variant}"


def unknown_settings(names: Iterable[str]) -> list[str]:
    """LLMOPS_* names that are no setting: pydantic-settings would ignore them silently."""
    return [
        n
        for n in names
        if n.startswith("LLMOPS_")
        and n.removeprefix("LLMOPS_").lower() not in Settings.model_fields
    ]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env", [])]
