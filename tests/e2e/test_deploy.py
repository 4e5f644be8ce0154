"""`prefect deploy --all` against a real `prefect server`, as a platform team would run it: every
deployment with its pool, schedules and concurrency, the drift trigger, which a drift event
turns into a run of the nightly pipeline, and the alerts, which reach a webhook on a local port.
One server for the module, in this order: the first test counts the automations deploy makes."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with services.prefect_server(tmp_path_factory.mktemp("deploy")) as server:
        yield server.env


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_deployment_in_prefect_yaml_deploys(prefect_server: dict[str, str]) -> None:
    env = prefect_server
    run([PREFECT, "work-pool", "create", "local-process", "--type", "process", "--overwrite"], env)
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
        "release_model/release",
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
    run([PREFECT, "work-pool", "create", "local-process", "--type", "process", "--overwrite"], env)
    run([PREFECT, "--no-prompt", "deploy", "--name", "nightly"], env)
    assert json.loads(run([sys.executable, "-c", READ_NIGHTLY_RUNS], env)) == []

    run([sys.executable, "-c", EMIT_DRIFT], env)
    deadline = time.monotonic() + 60  # the server's trigger service reacts within seconds
    while not (runs := json.loads(run([sys.executable, "-c", READ_NIGHTLY_RUNS], env))):
        assert time.monotonic() < deadline, "no run of the nightly after the drift event"
        time.sleep(1)
    assert runs == [["nightly", "Scheduled"]]  # due now, waiting for a worker


EMIT_ALERTS = """
from prefect import flow
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from tasks.canary.params import ROLLED_BACK_EVENT
from tasks.monitor.params import DRIFT_EVENT, model_resource

model = {"prefect.resource.id": model_resource("pydocs-lm"), "prefect.resource.name": "pydocs-lm"}
emit_event(ROLLED_BACK_EVENT, resource=model, payload={
    "challenger": "4", "champion": "3", "percent": 5.0, "reasons": ["errors 3/20 over 0.05"]})
emit_event(DRIFT_EVENT, resource=model, payload={
    "drifted": [{"column": "prompt_length"}], "current_rows": 120, "report": "drift.html"})
EventsWorker.drain_all()

@flow(name="nightly_pipeline")  # the name the alert matches: a real run that really fails
def nightly_pipeline():
    raise RuntimeError("no documents to ingest")

nightly_pipeline(return_state=True)
"""


@contextmanager
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A receiver on a free local port: every JSON body posted to it, in order."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def test_a_rollback_drift_and_a_failed_nightly_each_alert_the_webhook(
    prefect_server: dict[str, str],
) -> None:
    env = prefect_server
    llmops = str(Path(sys.executable).with_name("llmops"))
    with webhook() as (url, received):
        for _ in range(2):  # installing again replaces, never duplicates
            assert "alert-nightly-failed" in run([llmops, "alerts", "--webhook", url], env)
        run([sys.executable, "-c", EMIT_ALERTS], env)
        deadline = time.monotonic() + 90  # the server's trigger and action services
        while len(received) < 3:
            assert time.monotonic() < deadline, received
            time.sleep(1)
        time.sleep(3)  # a duplicate would arrive now
    texts = sorted(body["text"] for body in received)  # Slack's JSON: one `text`
    assert len(texts) == 3, texts
    canary, drift, nightly = texts
    assert canary.startswith("*Canary rolled back: pydocs-lm*")
    assert "v4 was rolled back at 5.0%; v3 serves" in canary and "errors 3/20" in canary
    assert drift.startswith("*Drift: llmops.model.pydocs-lm*") and "1 drifted column" in drift
    assert nightly.startswith("*Nightly failed: ") and "Failed" in nightly
