"""Several "hosts" on one machine: Linux network namespaces joined by a bridge, one Ray node in
each of two of them and the client code in a third.

Layout (all names carry the owning pytest pid, so a leftover from a killed run never collides
and is recognised as stale by the next run):

    llmt-<pid>-sw      bridge br0 (the switch), one veth end per host
    llmt-<pid>-head    eth0 10.77.0.2/24  Ray head: GCS, dashboard, Ray Client server
    llmt-<pid>-worker  eth0 10.77.0.3/24  Ray worker node
    llmt-<pid>-client  eth0 10.77.0.4/24  the flows, Prefect server and runner

Only namespaces are created; the host's own interfaces and routes are never touched. The hosts
share the filesystem, so a temporary folder serves as the storage every node can see (Ray
Train checkpoints, the MLflow SQLite file, model files). Each Ray node has its own
`--temp-dir`, so the two nodes never share session files.

Run as a script inside the head namespace, this module is also the probe that reports the
cluster's nodes, actors and free resources (see `Cluster.probe`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFIX = "llmt-"
SUBNET = "10.77.0"
HOSTS = {"head": f"{SUBNET}.2", "worker": f"{SUBNET}.3", "client": f"{SUBNET}.4"}
GCS_PORT, CLIENT_PORT, DASHBOARD_PORT = 6379, 10001, 8265
TRAIN_ACTORS = ("RayTrainWorker", "TrainController")
# The head's Ray node labels: the serving app keeps its router and retriever there
# (`control_labels`), so that stopping the worker host leaves the entry point up.
CONTROL_LABELS = {"llmops.io/role": "control"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def require_netns() -> None:
    """Fail (never skip) with what is missing: the `ip` tool or the right to make namespaces."""
    if shutil.which("ip") is None:
        raise RuntimeError("the multi-host test needs `ip` from iproute2: apt-get install iproute2")
    probe = f"{PREFIX}probe-{os.getpid()}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            "the multi-host test makes network namespaces and needs root (CAP_NET_ADMIN and "
            f"CAP_SYS_ADMIN): `ip netns add` said {done.stderr.strip()!r}"
        )
    _ip("netns", "del", probe, check=False)


def _kill_processes(ns: str) -> None:
    """Kill every process living in `ns` (and only those)."""
    for pid in _ip("netns", "pids", ns, check=False).stdout.split():
        with suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _kill_namespace(ns: str) -> None:
    """Kill every process living in `ns`, then delete it."""
    _kill_processes(ns)
    deadline = time.monotonic() + 10
    while _ip("netns", "pids", ns, check=False).stdout.split() and time.monotonic() < deadline:
        time.sleep(0.1)
    _ip("netns", "del", ns, check=False)


def clean_stale() -> list[str]:
    """Remove namespaces left by test runs whose pytest process is gone."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if not name.startswith(PREFIX) or len(parts) < 3 or not parts[1].isdigit():
            continue
        if not Path(f"/proc/{parts[1]}").exists():
            _kill_namespace(name)
            removed.append(name)
    return removed


def last_json(output: str) -> Any:
    """The last line of a child's output that holds JSON: Ray may print warnings after it (say,
    about lagging heartbeats on a loaded machine)."""
    lines = [line for line in output.splitlines() if line.startswith(("{", "["))]
    if not lines:
        raise AssertionError(f"no JSON line in the output:\n{output[-3000:]}")
    return json.loads(lines[-1])


@dataclass
class Cluster:
    """The namespaces, the Ray nodes in them, and helpers to run code on a host."""

    tag: str
    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def ns(self, host: str) -> str:
        return f"{PREFIX}{self.tag}-{host}"

    @property
    def head_ip(self) -> str:
        return HOSTS["head"]

    @property
    def ray_client_address(self) -> str:
        return f"ray://{self.head_ip}:{CLIENT_PORT}"

    @property
    def gcs_address(self) -> str:
        return f"{self.head_ip}:{GCS_PORT}"

    @property
    def storage(self) -> Path:
        """Shared by every node: the hosts share this machine's filesystem."""
        return self.root / "shared"

    def env(self, **extra: str) -> dict[str, str]:
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "RAY_", "PREFECT_"))
        }
        return {
            **base,
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
            # As the platform image sets it: without it the head's client server lost about one
            # `ray://` session in eight to a crash in the forked child (infra/image/Dockerfile).
            "GRPC_ENABLE_FORK_SUPPORT": "0",
            # The cluster requires a token (as a secured one would); every client carries it.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            # The hostname resolves to loopback in every namespace (/etc/hosts), and Gloo would
            # advertise that address to its peers: name the interface, as on multi-NIC hosts.
            "GLOO_SOCKET_IFNAME": "eth0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }

    def command(self, host: str, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *args]

    def popen(self, host: str, args: list[str], log: str, env: dict[str, str]) -> subprocess.Popen:
        """A long-running process on `host`, in its own process group, output to a log file."""
        out = (self.root / "logs" / log).open("w")
        return subprocess.Popen(
            self.command(host, args),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(
        self, host: str, args: list[str], env: dict[str, str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(host, args),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, host: str, code: str, env: dict[str, str], timeout: float = 120) -> str:
        """Run Python code on `host`; its stdout, or an error with its output and the logs."""
        done = self.run(host, [sys.executable, "-c", code], env, timeout)
        if done.returncode != 0:
            raise AssertionError(
                f"python on {host} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                f"{done.stderr[-5000:]}\n{self.logs()}"
            )
        return done.stdout

    def probe(self, until: str = "now", timeout: float = 0) -> dict:
        """The cluster as the head sees it: nodes, Train actors, total and free resources.

        `until` = "nodes2" waits for both nodes, "clean" for no live Train actor and every CPU
        free; "training" for Train workers alive on two nodes (at most `timeout` seconds).
        """
        args = [sys.executable, str(Path(__file__)), self.gcs_address, until, str(timeout)]
        done = self.run("head", args, self.env(), timeout=timeout + 90)
        if done.returncode != 0:
            raise AssertionError(f"probe failed:\n{done.stderr[-4000:]}\n{self.logs()}")
        return last_json(done.stdout)

    def start_ray(self) -> None:
        ray = str(BIN / "ray")
        common = ["--num-cpus", "1", "--object-store-memory", str(200 * 2**20), "--block"]
        head = [
            ray,
            "start",
            "--head",
            "--node-ip-address",
            HOSTS["head"],
            "--port",
            str(GCS_PORT),
            "--ray-client-server-port",
            str(CLIENT_PORT),
            "--dashboard-host",
            "0.0.0.0",
            "--dashboard-port",
            str(DASHBOARD_PORT),
            "--temp-dir",
            str(self.root / "ray-head"),
            "--labels",
            ",".join(f"{k}={v}" for k, v in CONTROL_LABELS.items()),
            *common,
        ]
        self.nodes["head"] = self.popen("head", head, "head.log", self.env())
        self._wait_for_gcs()
        self.start_worker()

    def start_worker(self, log: str = "worker.log") -> None:
        """The Ray worker node joins the head; returns once two nodes are alive."""
        worker = [
            str(BIN / "ray"),
            "start",
            "--address",
            self.gcs_address,
            "--node-ip-address",
            HOSTS["worker"],
            "--temp-dir",
            str(self.root / "ray-worker"),
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(200 * 2**20),
            "--block",
        ]
        self.nodes["worker"] = self.popen("worker", worker, log, self.env())
        state = self.probe("nodes2", timeout=120)
        if len([n for n in state["nodes"] if n["alive"]]) != 2:
            raise AssertionError(f"the worker node did not join: {state}\n{self.logs()}")

    def restart_host(self, host: str) -> None:
        """Bring a host stopped by `stop_host` back: its link up and, for the worker, its Ray
        node started again (a new node id; the old one stays listed as dead)."""
        if host not in ("worker", "client"):
            raise ValueError(f"only the worker or the client host can be restarted, not {host!r}")
        _ip("-n", self.ns(host), "link", "set", "eth0", "up")
        if host == "worker":
            self.start_worker(log="worker-restarted.log")

    def wait_for(
        self,
        host: str,
        code: str,
        what: str,
        timeout: float,
        env: dict[str, str] | None = None,
        interval: float = 1.0,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        """Run `python -c code` on the host until it exits 0; fail naming `what` after the
        timeout, or at once when `alive()` says the thing waited for is gone."""
        deadline = time.monotonic() + timeout
        args = [sys.executable, "-c", code]
        while (done := self.run(host, args, env or self.env())).returncode != 0:
            if time.monotonic() > deadline or not alive():
                raise AssertionError(f"{what}:\n{done.stderr[-3000:]}\n{self.logs()}")
            time.sleep(interval)

    def wait_for_ray_client(self, timeout: float = 120) -> None:
        """A `ray://` session from the client host works (the head's client server is up and
        starts a server for each client)."""
        code = f"import ray; ray.init({self.ray_client_address!r}); print(ray.cluster_resources())"
        self.wait_for("client", code, "no ray:// session", timeout, interval=2)

    def _wait_for_gcs(self) -> None:
        check = f"import socket; socket.create_connection(('{self.head_ip}', {GCS_PORT}), 2)"
        alive = lambda: self.nodes["head"].poll() is None  # noqa: E731
        self.wait_for("client", check, "the Ray head did not come up", 90, alive=alive)

    def stop_host(self, host: str) -> None:
        """The host goes away: every process in its namespace is killed, its link goes down."""
        _kill_processes(self.ns(host))
        _ip("-n", self.ns(host), "link", "set", "eth0", "down", check=False)

    def logs(self, lines: int = 40) -> str:
        """The tails of the nodes' and clients' logs, for a failure message."""
        parts = []
        files = sorted((self.root / "logs").glob("*.log"))
        for name in ("raylet.out", "gcs_server.out", "ray_client_server*.err"):
            files += sorted(self.root.glob(f"ray-*/session_latest/logs/{name}"))
        for path in files:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.relative_to(self.root)} ---\n" + "\n".join(text))
        return "\n".join(parts)


def _build(tag: str) -> None:
    switch = f"{PREFIX}{tag}-sw"
    _ip("netns", "add", switch)
    _ip("-n", switch, "link", "add", "br0", "type", "bridge")
    _ip("-n", switch, "link", "set", "br0", "up")
    for host, address in HOSTS.items():
        ns = f"{PREFIX}{tag}-{host}"
        _ip("netns", "add", ns)
        _ip("-n", switch, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", switch, "link", "set", host, "master", "br0")
        _ip("-n", switch, "link", "set", host, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")


@contextmanager
def cluster() -> Iterator[Cluster]:
    """The namespaces (Ray not started yet: `start_ray`); everything removed afterwards, also
    on failure: every process in them is killed, the namespaces and the folder deleted."""
    require_netns()
    clean_stale()
    tag = str(os.getpid())
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))  # short: Ray's socket paths
    (root / "logs").mkdir()
    (root / "shared").mkdir()
    made = Cluster(tag, root)
    try:
        _build(tag)
        yield made
    finally:
        for host in ("client", "worker", "head", "sw"):
            _kill_namespace(made.ns(host))
        shutil.rmtree(root, ignore_errors=True)


def _snapshot(ray) -> dict:
    from ray.util.state import list_actors

    found = list_actors(
        address=f"http://{HOSTS['head']}:{DASHBOARD_PORT}",
        detail=True,
        limit=10000,
    )
    actors = [
        {"class": a.class_name, "state": a.state, "node": a.node_id}
        for a in found
        if a.class_name in TRAIN_ACTORS
    ]
    return {
        "nodes": [
            {"id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"]}
            for n in ray.nodes()
        ],
        "actors": actors,
        "total": ray.cluster_resources(),
        "free": ray.available_resources(),
    }


def _done(state: dict, until: str) -> bool:
    alive = [a for a in state["actors"] if a["state"] != "DEAD"]
    if until == "nodes2":
        return len([n for n in state["nodes"] if n["alive"]]) == 2
    if until == "clean":
        return not alive and state["free"].get("CPU", 0) == state["total"].get("CPU", -1)
    if until == "training":
        workers = [a for a in alive if a["class"] == "RayTrainWorker" and a["state"] == "ALIVE"]
        return len({a["node"] for a in workers}) == 2
    return True


def _main(address: str, until: str, timeout: float) -> None:
    import ray

    ray.init(
        address=address, _node_ip_address=HOSTS["head"], log_to_driver=False, logging_level="ERROR"
    )
    deadline, start = time.monotonic() + timeout, time.monotonic()
    while True:
        state = _snapshot(ray)
        if _done(state, until) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    state.update(until=until, met=_done(state, until), waited_s=time.monotonic() - start)
    print(json.dumps(state))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
