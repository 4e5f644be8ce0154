"""The fine-tuning flow on a real two-host Ray cluster: network namespaces on this machine (see
`multihost`), a Ray head and a Ray worker node, and a third host that runs a `prefect server`
and a runner serving `finetune_model`, which reaches the cluster as a client (`ray://`), by
settings alone."""

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

import mlflow
import pytest

from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.manifest import verify_manifest
from tasks.shared.settings import Settings

from multihost import HOSTS, Cluster, last_json

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).with_name("prefect"))
API = "http://127.0.0.1:4200/api"  # on the client host's own loopback
DEPLOYMENT = "finetune_model/multihost"

SERVE = "from flows.finetune import finetune_model; finetune_model.serve(name='multihost')"

START_RUN = """
import json, sys
from prefect.deployments import run_deployment
run = run_deployment({name!r}, parameters={{"params": json.loads(sys.argv[1])}}, timeout={wait})
print(json.dumps({{"id": str(run.id), "state": run.state.type.value}}))
"""

CANCEL = """
import asyncio, json, sys, time
from prefect.client.orchestration import get_client
from prefect.states import Cancelling

async def main(run_id):
    async with get_client() as client:
        await client.set_flow_run_state(run_id, Cancelling(), force=True)
        deadline = time.monotonic() + 120
        while True:
            run = await client.read_flow_run(run_id)
            if run.state.is_final() or time.monotonic() > deadline:
                print(json.dumps({"state": run.state.type.value, "message": run.state.message}))
                return
            await asyncio.sleep(0.5)

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def hosts(
    ray_hosts: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Settings]]:
    """The Ray head + Ray worker, and on the client host a Prefect server and a runner serving
    the fine-tuning flow with the cluster's address in its settings."""
    c = ray_hosts
    prefect_env = c.env(PREFECT_HOME=str(c.root / "prefect"), PREFECT_API_URL=API)
    server = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", "4200"]
    prefect = c.popen("client", server, "prefect-server.log", prefect_env)
    settings = Settings(home=c.storage / "home")
    docs = tmp_path_factory.mktemp("docs")
    for name in sorted(topics)[:40]:
        (docs / f"{name}.txt").write_text(topics[name])
    ingest_folder(docs, IngestParams(), settings)
    _wait_for_prefect(c, prefect_env)
    flow_env = {
        **prefect_env,
        "LLMOPS_HOME": str(settings.home),
        "LLMOPS_RAY_ADDRESS": c.ray_client_address,
        # A folder every node sees: the hosts share this machine's filesystem.
        "LLMOPS_RAY_STORAGE": str(c.storage / "ray"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    runner = c.popen("client", [sys.executable, "-c", SERVE], "runner.log", flow_env)
    yield c, settings
    for process in (runner, prefect):  # the cluster stays up for the session's other tests
        process.terminate()
        process.wait(timeout=60)


def _wait_for_prefect(c: Cluster, env: dict[str, str]) -> None:
    check = f"import urllib.request; urllib.request.urlopen('{API}/health', timeout=2)"
    c.wait_for("client", check, "the Prefect server did not come up", 120, env)


def _start(c: Cluster, params: dict, wait: int) -> dict:
    """A run of the deployment, made from the client host; `wait` seconds for it to finish."""
    code = START_RUN.format(name=DEPLOYMENT, wait=wait)
    env = c.env(PREFECT_API_URL=API)
    for _ in range(30):  # the runner registers its deployment a few seconds after it starts
        done = c.run("client", [sys.executable, "-c", code, json.dumps(params)], env, wait + 60)
        if done.returncode == 0:
            return last_json(done.stdout)
        if "ObjectNotFound" not in done.stderr:
            break
        time.sleep(2)
    raise AssertionError(f"starting {DEPLOYMENT} failed:\n{done.stderr[-3000:]}\n{c.logs()}")


def test_finetuning_runs_with_one_worker_on_each_host(hosts) -> None:
    c, settings = hosts
    params = {
        "num_workers": 2,
        "cpus_per_worker": 1,
        "max_steps": 6,
        "checkpoint_every": 3,
        "batch_size": 4,
        "gradient_accumulation": 2,
        "seq_len": 64,
    }
    run = _start(c, params, wait=400)
    assert run["state"] == "COMPLETED", f"{run}\n{c.logs()}"

    state = c.probe("clean", timeout=60)
    ips = {n["id"]: n["ip"] for n in state["nodes"]}
    workers = [a for a in state["actors"] if a["class"] == "RayTrainWorker"]
    assert len(workers) == 2, state
    assert {ips[w["node"]] for w in workers} == {HOSTS["head"], HOSTS["worker"]}
    assert state["met"], f"the cluster is not free after the run: {state}"

    client = mlflow.MlflowClient(settings.tracking_uri)
    [logged] = client.search_runs(client.get_experiment_by_name("finetune").experiment_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["num_workers"] == "2"
    assert logged.data.metrics["perplexity_after"] < logged.data.metrics["perplexity_before"]
    model_dir = settings.models_dir / "finetuned" / logged.info.run_id
    verify_manifest(model_dir)


def test_cancelling_the_flow_run_stops_the_training_on_the_cluster(hosts) -> None:
    c, _ = hosts
    params = {"num_workers": 2, "max_steps": 100_000, "checkpoint_every": 10_000, "seq_len": 64}
    run = _start(c, params, wait=0)
    training = c.probe("training", timeout=300)
    assert training["met"], f"training never ran on both hosts: {training}\n{c.logs()}"

    started = time.monotonic()
    args = [sys.executable, "-c", CANCEL, run["id"]]
    done = c.run("client", args, c.env(PREFECT_API_URL=API), timeout=180)
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{c.logs()}"
    cancel = last_json(done.stdout)
    assert cancel["state"] == "CANCELLED", f"{cancel}\n{c.logs()}"
    clean = c.probe("clean", timeout=90)
    print(f"cluster clean {time.monotonic() - started:.1f} s after the cancel request")
    alive = [a for a in clean["actors"] if a["state"] != "DEAD"]
    assert clean["met"], f"left running after the cancel: {alive}, free {clean['free']}"
