"""The platform on one machine, for people: a Prefect server with its UI, every deployment of
`prefect.yaml` registered, and a worker per work pool; Ctrl-C stops all of it.

    .venv/bin/python infra/local/run_platform.py [--host 127.0.0.1] [--port 4200]

(`make ui` runs this.) The server's database and the logs live under `LLMOPS_HOME/platform/`
(default `.llmops/platform/`), so a person's own Prefect profile is neither read nor changed.
Flow runs started from the UI run in this checkout, with the same settings as `make nightly`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
READY = "Prefect UI ready:"  # the line tests (and people) wait for


@dataclass
class Platform:
    url: str  # the UI; the API is under /api
    env: dict[str, str]  # what a child process needs to talk to this server
    state: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)


def state_dir() -> Path:
    home = os.environ.get("LLMOPS_HOME")
    return (Path(home) if home else REPO / ".llmops") / "platform"


def platform_env(url: str, state: Path) -> dict[str, str]:
    """Children talk to this server only; PREFECT_HOME keeps its database out of ~/.prefect."""
    return {
        **os.environ,
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PWD": str(REPO),  # prefect.yaml's pull step resolves `{{ $PWD }}` when deploying
    }


def _child_signals() -> None:
    """Ctrl-C handling as in a terminal, even when this script was started in the background
    (which ignores SIGINT); and SIGTERM if this script dies without cleaning up (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A long-running child with its own log. In its own session, so Ctrl-C reaches only this
    script, which stops the children in order (worker before server)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_signals,
        )


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 120) -> float:
    """Seconds until `/api/health` answers (a first start migrates the database: ~15 s)."""
    started = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/health", timeout=2)
            return time.monotonic() - started
        except OSError:
            if server.poll() is not None or time.monotonic() - started > timeout_s:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the Prefect server did not come up; {log}:\n{tail}") from None
            time.sleep(0.5)


def work_pools(prefect_yaml: Path = REPO / "prefect.yaml") -> list[str]:
    """Every work pool a deployment uses (they are defined once, under `definitions:`)."""
    config = yaml.safe_load(prefect_yaml.read_text())
    names = {d["work_pool"]["name"] for d in config.get("deployments", []) if d.get("work_pool")}
    return sorted(names)


def prefect(
    args: list[str], env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if check and done.returncode:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def ensure_pool(name: str, env: dict[str, str]) -> bool:
    """Create a process work pool unless it exists; True when created."""
    if prefect(["work-pool", "inspect", name], env, check=False).returncode == 0:
        return False
    prefect(["work-pool", "create", name, "--type", "process"], env)
    return True


def stop(processes: dict[str, subprocess.Popen], timeout_s: float = 20) -> None:
    """Workers first, the server last: Ctrl-C, then SIGTERM, then kill, for what lingers."""
    for name, proc in reversed(list(processes.items())):
        for send in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            if send != signal.SIGINT:
                print(f"{name} still running: sending {send.name}", flush=True)
            proc.send_signal(send)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout_s)


@contextmanager
def running_platform(host: str, port: int, state: Path | None = None) -> Iterator[Platform]:
    """Server up, pools created, deployments registered, workers polling; all stopped after."""
    if not port_free(host, port):
        raise RuntimeError(f"port {port} on {host} is in use: pass --port (or stop what is there)")
    state = state or state_dir()
    url = f"http://{host}:{port}"
    env = platform_env(url, state)
    platform = Platform(url, env, state)
    try:
        server_log = state / "logs" / "server.log"
        platform.processes["server"] = spawn(
            [PREFECT, "server", "start", "--host", host, "--port", str(port)], env, server_log
        )
        took = wait_healthy(url, platform.processes["server"], server_log)
        print(f"server healthy after {took:.1f} s (log: {server_log})", flush=True)
        for pool in work_pools():
            created = ensure_pool(pool, env)
            print(f"work pool {pool}: {'created' if created else 'exists'}", flush=True)
        started = time.monotonic()
        prefect(["--no-prompt", "deploy", "--all"], env)
        print(f"deployments registered in {time.monotonic() - started:.1f} s", flush=True)
        if env.get("LLMOPS_ALERT_WEBHOOK_URL"):  # prefect.yaml's alerts, posting there
            alerts = [str(Path(sys.executable).with_name("llmops")), "alerts"]
            done = subprocess.run(alerts, cwd=REPO, env=env, capture_output=True, text=True)
            print((done.stdout + done.stderr).strip(), flush=True)
        for pool in work_pools():
            log = state / "logs" / f"worker-{pool}.log"
            platform.processes[f"worker {pool}"] = spawn(
                [PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env, log
            )
            print(f"worker polling {pool} (log: {log})", flush=True)
        yield platform
    finally:
        stop(platform.processes)


def serve_forever(platform: Platform) -> int:
    """Until Ctrl-C (or SIGTERM); 1 if a child dies on its own."""
    with suppress(KeyboardInterrupt):
        while True:
            for name, proc in platform.processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited ({proc.returncode}); see {platform.state / 'logs'}")
                    return 1
            time.sleep(1)
    print("\nstopping the worker and the server …", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the platform the way Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with `&`
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to reach it from elsewhere")
    parser.add_argument("--port", type=int, default=4200)
    args = parser.parse_args(argv)
    try:
        with running_platform(args.host, args.port) as platform:
            print(f"{READY} {platform.url}  (API {platform.url}/api)", flush=True)
            print(
                "Open Deployments, pick one, Run > Custom run to change its parameters. "
                f"In another shell: export PREFECT_API_URL={platform.url}/api. Ctrl-C stops.",
                flush=True,
            )
            code = serve_forever(platform)
    except (RuntimeError, KeyboardInterrupt) as e:
        print(f"run_platform: {e or 'interrupted'}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
