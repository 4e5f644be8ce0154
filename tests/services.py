"""Real servers for the tests of the platform beyond one machine: each is started on a free
loopback port under a test's folder, waited for until healthy, and stopped afterwards.

- `milvus_server`: Milvus standalone 2.3 (the PyPI package `milvus`: the real server binary,
  embedded etcd and local storage), with authentication on: token `root:Milvus`.
- `mlflow_server`: `mlflow server` with a SQLite database and an artifact folder it serves
  (clients upload through it, never to a shared path).
- `prefect_server`: `prefect server start` (not the temporary test server).
- `s3_server`: an S3-compatible object store, moto's standalone server (PyPI `moto[server]`),
  with one bucket; `env` holds the `AWS_*` variables that point a client at it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from worlds import free_port

BIN = Path(sys.executable).parent
MILVUS_ROOT_TOKEN = "root:Milvus"  # Milvus's built-in superuser and its default password


def wait_until_healthy(url: str, alive: Callable[[], bool], log: Path, timeout_s: float) -> float:
    """Seconds until `url` answers 200; the server's log tail in the error if it never does."""
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        if not alive() or time.monotonic() - started > timeout_s:
            state = "exited" if not alive() else f"not healthy after {timeout_s:.0f} s"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise RuntimeError(f"{url}: server {state}; its log ends with:\n{tail}")
        time.sleep(0.3)


@contextmanager
def _process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator:
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Server:
    url: str
    folder: Path
    start_s: float  # seconds from launch until healthy
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)  # for clients of this server


@contextmanager
def milvus_server(root: Path) -> Iterator[Server]:
    """Milvus standalone with authentication, its data under `root`."""
    try:
        import milvus
    except ImportError:
        raise RuntimeError(
            "the Milvus server test needs the PyPI package `milvus` (Milvus standalone for "
            "Linux x86_64): pip install 'milvus>=2.3.5,<2.4'"
        ) from None
    # The package unpacks its ~380 MB of binaries into the server's folder; unpacked once into
    # a cache instead (it skips files whose checksum matches), each server links to them.
    cache = Path.home() / ".cache" / "llmops-tests" / f"milvus-{milvus.__version__}"
    milvus._initialize_data_files(str(cache))
    root.mkdir(parents=True, exist_ok=True)
    (root / "bin").symlink_to(cache / "bin", target_is_directory=True)
    server = milvus.MilvusServer(wait_for_started=False)
    server.set_base_dir(str(root))
    server.config.set("authorization_enabled", True)
    server.listen_port = free_port()
    started = time.monotonic()
    server.start()  # `milvus run standalone`, with embedded etcd and local storage
    try:
        wait_until_healthy(
            f"http://127.0.0.1:{server.webservice_port}/healthz",
            lambda: server.server_proc is not None and server.server_proc.poll() is None,
            root / "logs" / "milvus-stdout.log",
            timeout_s=120,
        )
        url = f"http://127.0.0.1:{server.listen_port}"
        yield Server(url, root, time.monotonic() - started, token=MILVUS_ROOT_TOKEN)
    finally:
        server.stop()


MLFLOW_ADMIN = ("admin", "admin-password-for-tests")


@contextmanager
def mlflow_server(root: Path, auth: bool = False) -> Iterator[Server]:
    """`mlflow server` with a SQLite database; it stores and serves artifacts under
    `root`/artifacts (runs' artifact URIs are `mlflow-artifacts:/...`). With `auth`, MLflow's
    basic-auth app: users and permissions, `MLFLOW_ADMIN` the admin, READ for everyone else
    unless granted more; `env` then holds the admin's credentials."""
    port = free_port()
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--workers",
        "1",
    ]
    env, client_env = None, {}
    if auth:
        config = root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{root / 'auth.db'}\n"
            f"admin_username = {MLFLOW_ADMIN[0]}\nadmin_password = {MLFLOW_ADMIN[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        args += ["--app-name", "basic-auth"]
        env = {
            **os.environ,
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),  # CSRF of its user forms
        }
        user, password = MLFLOW_ADMIN
        client_env = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    started = time.monotonic()
    with _process(args, root / "mlflow-server.log", env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(
            f"{url}/health", lambda: proc.poll() is None, root / "mlflow-server.log", 120
        )
        yield Server(url, artifacts, time.monotonic() - started, env=client_env)


@contextmanager
def prefect_server(root: Path) -> Iterator[Server]:
    """`prefect server start`; `env` points Prefect clients (CLI, workers) at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with _process(args, root / "prefect-server.log", env) as proc:
        wait_until_healthy(
            f"{url}/health", lambda: proc.poll() is None, root / "prefect-server.log", 120
        )
        yield Server(url, root, time.monotonic() - started, env=env)


@contextmanager
def s3_server(root: Path, bucket: str = "llmops") -> Iterator[Server]:
    """moto's S3 server; `url` is the bucket's `s3://` URL, `env` its client's variables."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "llmops-test",
        "AWS_SECRET_ACCESS_KEY": "llmops-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    with _process(args, root / "s3-server.log") as proc:
        log = root / "s3-server.log"
        wait_until_healthy(f"{endpoint}/moto-api/", lambda: proc.poll() is None, log, 60)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=bucket)
        yield Server(f"s3://{bucket}", root, time.monotonic() - started, env=env)
