"""The Serve application on the two-host Ray cluster (network namespaces, see `multihost`):
deployed from the client host with `python -m serving` against `ray://`, as `make serve` runs it
with settings, two replicas of the model on the two hosts, the router and retriever pinned to
the head by its Ray label; it keeps answering through the head's HTTP proxy while the worker
host is stopped, and the worker host is brought back afterwards for the session's other tests."""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, replace

import psutil
import pytest

from tasks.clients import Clients
from tasks.clients.registry import model_registry
from tasks.core.promotion import CHAMPION
from tasks.promote.params import Candidate
from tasks.promote.registration import register_candidate

from multihost import CONTROL_LABELS, DASHBOARD_PORT, HOSTS, Cluster, last_json
from worlds import compressed, tiny_world

pytestmark = pytest.mark.e2e

MODEL, APP, PORT = "assistant", "llmops", 8000
URL = f"http://{HOSTS['head']}:{PORT}"  # the head's Serve proxy, reached from the client host
GRACE_S = 5.0  # every request started this long after the stop must succeed

PLACEMENT = """
import json
from ray.util.state import list_actors, list_nodes
address = "http://{head}:{port}"
ips = {{n.node_id: n.node_ip for n in list_nodes(address=address, limit=1000)}}
print(json.dumps([
    {{"class": a.class_name, "ip": ips.get(a.node_id)}}
    for a in list_actors(address=address, detail=True, limit=10000)
    if a.class_name.startswith(("ServeReplica:{app}:", "ServeReplica:{app}-v"))
    and a.state == "ALIVE"
]))
"""

# Threads sending completions through the proxy for `seconds`; one JSON line per request.
LOAD = """
import json, sys, threading, time
import httpx
url, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
body = {"model": "assistant", "prompt": "The for statement", "max_tokens": 4}
lock, end = threading.Lock(), time.time() + seconds
def send():
    with httpx.Client(base_url=url, timeout=90) as client:
        while time.time() < end:
            started, row = time.time(), {}
            try:
                r = client.post("/v1/completions", json=body)
                row = {"status": r.status_code, "version": r.json().get("version"),
                       "error": None if r.status_code == 200 else r.text[:300]}
            except Exception as exc:
                row = {"status": None, "version": None, "error": repr(exc)[:300]}
            row.update(t0=started, t1=time.time())
            with lock:
                print(json.dumps(row), flush=True)
            time.sleep(0.05)
workers = [threading.Thread(target=send) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
"""

READY = "import sys, httpx; httpx.get(sys.argv[1] + '/readyz', timeout=10).raise_for_status()"

SHUTDOWN = "import ray; from ray import serve; ray.init({address!r}); serve.shutdown()"


@dataclass
class Served:
    cluster: Cluster
    version: str
    deploy_s: float


@pytest.fixture(scope="module")
def served(ray_hosts: Cluster) -> Iterator[Served]:
    """A registered champion in a state folder every host sees, served from the client host."""
    c = ray_hosts
    (root := c.storage / "serving").mkdir()
    with tiny_world(root) as built:
        config = deepcopy(built.config)
        config.max_position_embeddings = 256
        world = replace(built, config=config)
        report = compressed(world, "v1", 3)
        version = register_candidate(
            Candidate.from_report(report), MODEL, Clients(world.settings), "test"
        ).version
        model_registry(world.settings).set_alias(
            MODEL, CHAMPION, version, action="promote", reason="test", actor="test"
        )
        env = c.env(LLMOPS_HOME=str(world.settings.home), LLMOPS_RAY_ADDRESS=c.ray_client_address)
        labels = ",".join(f"{k}={v}" for k, v in CONTROL_LABELS.items())
        args = [
            sys.executable,
            "-m",
            "serving",
            "--model",
            MODEL,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--model-replicas",
            "2",
            "--control-labels",
            labels,
        ]
        started = time.monotonic()
        process = _serve(c, args, env)
        try:
            yield Served(c, version, time.monotonic() - started)
        finally:
            process.send_signal(signal.SIGINT)  # what Ctrl-C does: the app stays on the cluster
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # the ray:// client's exit can wait on the head
                process.kill()  # for a minute: nothing is left to tidy, the app is shut down below
                process.wait()
            code = SHUTDOWN.format(address=c.ray_client_address)
            c.run("client", [sys.executable, "-c", code], c.env(), 120)


def _serve(c: Cluster, args: list[str], env: dict[str, str], tries: int = 3) -> subprocess.Popen:
    """`python -m serving` on the client host, once the app answers /readyz. Started again if
    it exits first: under load, the head's Ray Client server sometimes fails to start the
    session it makes for each new client (a ConnectionAbortedError in `ray.init`)."""
    for attempt in range(1, tries + 1):
        log = f"serving-{attempt}.log"
        process = c.popen("client", args, log, env)
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if c.run("client", [sys.executable, "-c", READY, URL], c.env(), 60).returncode == 0:
                return process
            time.sleep(2)
        text = (c.root / "logs" / log).read_text(errors="replace")[-3000:]
        if process.poll() is None or "ConnectionAbortedError" not in text or attempt == tries:
            process.kill()
            raise AssertionError(f"the app never got ready:\n{c.logs()}\n{text}")
    raise AssertionError("unreachable")


def replica_cpu_s(c: Cluster, host: str, version: str) -> float:
    """CPU seconds used so far by the model replica process(es) living on `host`."""
    pids = subprocess.run(["ip", "netns", "pids", c.ns(host)], capture_output=True, text=True)
    used = 0.0
    for pid in pids.stdout.split():
        try:
            proc = psutil.Process(int(pid))
            if f"ServeReplica:{APP}-v{version}:model-v{version}" in " ".join(proc.cmdline()):
                used += sum(proc.cpu_times()[:2])
        except psutil.Error:  # ended meanwhile
            continue
    return used


def placement(c: Cluster) -> list[dict]:
    code = PLACEMENT.format(head=HOSTS["head"], port=DASHBOARD_PORT, app=APP)
    return last_json(c.python("head", code, c.env()))


def test_replicas_on_both_hosts_and_answers_while_the_worker_host_is_stopped(served) -> None:
    c, version = served.cluster, served.version
    print(f"deployed and ready {served.deploy_s:.1f} s after `python -m serving` started")
    actors = placement(c)
    models = sorted(a["ip"] for a in actors if a["class"].endswith(f"model-v{version}"))
    assert models == sorted([HOSTS["head"], HOSTS["worker"]]), actors
    control = {a["ip"] for a in actors if a["class"].split(":")[-1] in ("Router", "Retriever")}
    assert control == {HOSTS["head"]}, actors

    seconds, stop_after = 25.0, 6.0
    cpu = {host: replica_cpu_s(c, host, version) for host in ("head", "worker")}
    load = c.popen(
        "client", [sys.executable, "-c", LOAD, URL, str(seconds), "4"], "load.log", c.env()
    )
    time.sleep(stop_after)
    cpu = {host: replica_cpu_s(c, host, version) - cpu[host] for host in cpu}
    stopped = time.time()
    c.stop_host("worker")
    load.wait(timeout=seconds + 120)
    rows = [
        json.loads(line)
        for line in (c.root / "logs" / "load.log").read_text().splitlines()
        if line.startswith("{")
    ]
    before = [r for r in rows if r["t1"] < stopped]
    after = [r for r in rows if r["t0"] >= stopped + GRACE_S]
    failed = [r for r in rows if r["status"] != 200]
    window = max((r["t1"] - stopped for r in rows if r["t0"] >= stopped and r in failed), default=0)
    slowest = max((r["t1"] - r["t0"] for r in rows if r["t0"] >= stopped - 1), default=0)
    print(
        f"{len(rows)} requests, {len(before)} before the stop, {len(after)} from {GRACE_S} s "
        f"after it; {len(failed)} failed (last failure {window:.1f} s after the stop); "
        f"slowest request around the stop {slowest:.1f} s; model CPU s before it "
        f"{cpu}"
    )
    assert min(cpu.values()) > 0.2, f"one replica took no traffic before the stop: {cpu}"
    assert before and all(r["status"] == 200 for r in before), before[:5]
    assert len(after) >= 20, f"too few requests after the stop: {rows[-5:]}\n{c.logs()}"
    assert [r for r in after if r["status"] != 200] == [], f"failed after the grace: {failed[:5]}"
    assert {r["version"] for r in rows if r["status"] == 200} == {version}
    assert len(failed) <= 8, f"more failures than requests in flight at the stop: {failed[:5]}"

    # The entry point never moved; the worker host comes back for the session's later tests.
    assert [a["ip"] for a in placement(c) if a["class"].endswith("Router")] == [HOSTS["head"]]
    _wait_worker_dead(c)
    dead = time.time() - stopped
    c.restart_host("worker")
    deadline = time.monotonic() + 120
    while len([a for a in placement(c) if a["class"].endswith(f"model-v{version}")]) < 2:
        assert time.monotonic() < deadline, f"no second replica after the restart:\n{c.logs()}"
        time.sleep(2)
    print(
        f"worker node marked dead {dead:.1f} s after the stop; back with a second replica "
        f"{time.time() - stopped:.1f} s after it"
    )


def _wait_worker_dead(c: Cluster, timeout: float = 90) -> None:
    """The old worker node is marked dead before a new one joins (the probe counts alive
    nodes)."""
    deadline = time.monotonic() + timeout
    while len([n for n in c.probe()["nodes"] if n["alive"]]) != 1:
        assert time.monotonic() < deadline, f"the stopped worker node is still alive:\n{c.logs()}"
        time.sleep(2)
