"""`prefect.yaml` against the code: every entrypoint imports and is a flow, every flow has a
deployment, pools and schedules are defined once, and the UI forms describe every field.
A broken or forgotten addition fails here, before anyone deploys it."""

import importlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@cache
def config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def deployments() -> list[dict[str, Any]]:
    return config()["deployments"]


@cache
def load(entrypoint: str) -> Flow:
    return load_flow_from_entrypoint(str(REPO / entrypoint))


def flows_in_package() -> set[str]:
    """`flows/<module>.py:<function>` of every flow defined in the flows package."""
    found = set()
    for path in sorted((REPO / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        for name, obj in vars(module).items():
            if isinstance(obj, Flow) and obj.fn.__module__ == module.__name__:
                found.add(f"flows/{path.name}:{name}")
    return found


def undescribed(flow: Flow) -> set[str]:
    """`Model.field` for every form field without a description, and `Model` for every model
    without one, across the flow's parameter schema (what the UI renders)."""
    schema = parameter_schema(flow).model_dump_for_openapi()
    missing = {f"<parameter {n}>" for n, p in schema["properties"].items() if not _described(p)}
    for model, spec in schema.get("definitions", {}).items():
        if not spec.get("description"):
            missing.add(model)
        fields = spec.get("properties", {})
        missing |= {f"{model}.{f}" for f, p in fields.items() if not p.get("description")}
    return missing


def _described(prop: dict[str, Any]) -> bool:
    """A parameter typed by a model is described by the model's docstring."""
    return bool(prop.get("description") or "$ref" in str(prop))


@pytest.mark.parametrize("entry", deployments(), ids=lambda d: d["entrypoint"])
def test_every_entrypoint_imports_and_is_a_flow(entry: dict[str, Any]) -> None:
    flow = load(entry["entrypoint"])
    assert isinstance(flow, Flow)
    assert flow.name == entry["entrypoint"].rsplit(":", 1)[1]  # verb_noun, as the function
    assert list(parameter_schema(flow).properties) == ["params"]  # one pydantic model: a form
    assert entry.get("description"), "the UI lists deployments by their description"


def test_every_flow_has_a_deployment() -> None:
    deployed = {d["entrypoint"] for d in deployments()}
    assert flows_in_package() <= deployed


def test_deployment_names_are_unique_per_flow() -> None:
    names = [(d["entrypoint"], d["name"]) for d in deployments()]
    assert len(names) == len(set(names))


def test_pools_and_schedules_are_defined_once_and_referenced() -> None:
    """YAML aliases load as the very object of their anchor: `is` tells a reference from a copy."""
    definitions = config()["definitions"]
    pools = [id(p) for p in definitions["work_pools"].values()]
    schedules = [id(s) for s in definitions["schedules"].values()]
    triggers = [id(t) for t in definitions["triggers"].values()]
    for d in deployments():
        assert id(d["work_pool"]) in pools, f"{d['entrypoint']}: use a *work_pool anchor"
        for schedule in d.get("schedules", []):
            assert id(schedule) in schedules, f"{d['entrypoint']}: use a *schedule anchor"
        for trigger in d.get("triggers", []):
            assert id(trigger) in triggers, f"{d['entrypoint']}: use a *trigger anchor"


def test_schedules_are_crons_with_an_explicit_timezone() -> None:
    for schedule in config()["definitions"]["schedules"].values():
        assert schedule["cron"] and schedule["timezone"], schedule
    [nightly] = [d for d in deployments() if d["entrypoint"].endswith(":nightly_pipeline")]
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"


def test_every_form_field_is_described() -> None:
    missing = set().union(*(undescribed(load(d["entrypoint"])) for d in deployments()))
    assert not missing, f"describe these (Field(description=...), model docstring): {missing}"
