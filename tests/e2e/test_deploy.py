"""`prefect deploy --all` against a real `prefect server`, as a platform team would run it: every
deployment with its pool, schedules and concurrency, and the drift trigger, which a drift event
turns into a run of the nightly pipeline."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import services

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))

READ_DEPLOYMENTS = """
import asyncio, json
from prefect.client.orchestration import get_client

async def main():
    async with get_client() as client:
        out = {}
        for d in await client.read_deployments():
            flow = await client.read_flow(d.flow_id)
            out[f"{flow.name}/{d.name}"] = {
                "pool": d.work_pool_name,
                "entrypoint": d.entrypoint,
                "schedules": [
                    {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "active": s.active}
                    for s in d.schedules
                ],
                "parameters": sorted(d.parameter_openapi_schema.get("properties", {})),
                "pull_steps": d.pull_steps,
                "limit": d.global_concurrency_limit and d.global_concurrency_limit.limit,
                "collisions": d.concurrency_options and d.concurrency_options.collision_strategy,
            }
        out["automations"] = [
            {"name": a.name, "expect": sorted(a.trigger.expect),
             "match": a.trigger.match.model_dump(),
             "actions": [[x.type, str(x.deployment_id)] for x in a.actions]}
            for a in await client.read_automations()
        ]
        out["ids"] = {str(d.id): d.name for d in await client.read_deployments()}
    print(json.dumps(out, default=str))

asyncio.run(main())
"""


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    with services.prefect_server(tmp_path) as server:
        yield server.env


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_deployment_in_prefect_yaml_deploys(prefect_server: dict[str, str]) -> None:
    env = prefect_server
    run([PREFECT, "work-pool", "create", "local-process", "--type", "process"], env)
    run([PREFECT, "--no-prompt", "deploy", "--all"], env)

    deployments = json.loads(run([sys.executable, "-c", READ_DEPLOYMENTS], env))
    automations, ids = deployments.pop("automations"), deployments.pop("ids")
    assert set(deployments) == {
        "nightly_pipeline/nightly",
        "ingest_documents/ingest",
        "embed_documents/embed",
        "finetune_model/finetune",
        "compress_model/compress",
        "evaluate_model/evaluate",
        "promote_model/promote",
        "rollback_model/rollback",
        "canary_rollout/canary",
        "monitor_drift/hourly",
    }
    assert all(d["pool"] == "local-process" for d in deployments.values())
    nightly = deployments["nightly_pipeline/nightly"]
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert nightly["parameters"] == ["params"]  # the pydantic model the UI renders as a form
    [step] = nightly["pull_steps"]  # workers run the flows from this checkout
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO)
    assert (nightly["limit"], nightly["collisions"]) == (1, "ENQUEUE")  # never two at once
    monitor = deployments["monitor_drift/hourly"]
    assert monitor["schedules"] == [{"cron": "30 * * * *", "timezone": "UTC", "active": True}]
    assert monitor["parameters"] == ["params"]

    [drift] = automations
    assert drift["name"] == "retrain-on-drift"
    assert drift["expect"] == ["llmops.drift.detected"]
    assert drift["match"] == {"prefect.resource.id": "llmops.model.*"}
    [[action, deployment_id]] = drift["actions"]
    assert action == "run-deployment" and ids[deployment_id] == "nightly"


EMIT_DRIFT = """
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from tasks.monitor.params import DRIFT_EVENT, model_resource
emit_event(DRIFT_EVENT, resource={"prefect.resource.id": model_resource("pydocs-lm")})
EventsWorker.drain_all()
"""

READ_NIGHTLY_RUNS = """
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    names = {d.id: d.name for d in client.read_deployments()}
    runs = [r for r in client.read_flow_runs() if not r.auto_scheduled]  # not the schedule's
print(json.dumps([[names.get(r.deployment_id), r.state_name] for r in runs]))
"""


def test_a_drift_event_starts_the_nightly_pipeline(prefect_server: dict[str, str]) -> None:
    env = prefect_server
    run([PREFECT, "work-pool", "create", "local-process", "--type", "process"], env)
    run([PREFECT, "--no-prompt", "deploy", "--name", "nightly"], env)
    assert json.loads(run([sys.executable, "-c", READ_NIGHTLY_RUNS], env)) == []

    run([sys.executable, "-c", EMIT_DRIFT], env)
    deadline = time.monotonic() + 60  # the server's trigger service reacts within seconds
    while not (runs := json.loads(run([sys.executable, "-c", READ_NIGHTLY_RUNS], env))):
        assert time.monotonic() < deadline, "no run of the nightly after the drift event"
        time.sleep(1)
    assert runs == [["nightly", "Scheduled"]]  # due now, waiting for a worker
