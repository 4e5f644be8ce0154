"""A warm process behind `llmops search`: importing the stack and loading the embedding model
take most of a cold search (about 20 s here, against well under a second for the search), so
the first question starts this process and later ones ask it over a local port.

It listens on 127.0.0.1 only, writes its address to `<home>/run/search.json`, opens the index
for each question and closes it after (a Milvus Lite file is locked by the process that holds
it, and the nightly's embed stage writes to it), and exits after `idle_s` without a question.

    python -m llmops.search_service [--idle-s 600]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

IDLE_S = 600.0


def run_file(home: Path) -> Path:
    return home / "run" / "search.json"


class SearchUnavailable(RuntimeError):
    """The warm process could not be started or asked; the reason says why."""


# -- the client side: what `llmops search` calls ---------------------------------------------


def _post(port: int, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/search",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # a question it refused: its reason, as JSON
        return json.loads(error.read() or b"{}") or {"error": str(error)}


def _address(home: Path) -> int | None:
    """The port of a live warm process, or None (a stale file is removed)."""
    path = run_file(home)
    try:
        info = json.loads(path.read_text())
        os.kill(info["pid"], 0)  # raises when that process is gone
        return int(info["port"])
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)
        return None


def _start(home: Path, idle_s: float, wait_s: float) -> int:
    """Start the warm process, detached (it outlives this command), and wait for its port."""
    log = home / "logs" / "search.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmops.search_service", "--idle-s", str(idle_s)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if (port := _address(home)) is not None:
            return port
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SearchUnavailable(f"the search process exited ({process.returncode}):\n{tail}")
        time.sleep(0.2)
    raise SearchUnavailable(f"the search process was not ready after {wait_s:.0f} s; see {log}")


def ask(
    home: Path,
    query: str,
    top_k: int,
    model: str,
    idle_s: float = IDLE_S,
    wait_s: float = 180.0,
) -> list[dict[str, Any]]:
    """The hits for `query` from the warm process, starting it when none is running. A question
    it refuses (empty, nothing indexed) raises ValueError or LookupError with its reason."""
    port = _address(home) or _start(home, idle_s, wait_s)
    body = {"query": query, "top_k": top_k, "model": model}
    try:
        answer = _post(port, body, timeout_s=wait_s)
    except (OSError, ValueError) as error:  # it died between the check and the question
        raise SearchUnavailable(f"the search process did not answer: {error}") from None
    if "hits" in answer:
        return answer["hits"]
    kind = {"ValueError": ValueError, "LookupError": LookupError}.get(answer.get("type", ""))
    raise (kind or SearchUnavailable)(answer.get("error", "no answer"))


# -- the warm process ------------------------------------------------------------------------


def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One question: (HTTP status, JSON body). The index is opened and closed around it."""
    from tasks.clients.embedder import EMBEDDING_MODEL
    from tasks.clients.feature_store import ChunkIndex
    from tasks.clients.retrieval import search
    from tasks.shared.settings import get_settings

    settings = get_settings()
    try:
        with ChunkIndex(settings) as index:
            hits = search(
                str(body.get("query", "")),
                int(body.get("top_k", 5)),
                str(body.get("model") or EMBEDDING_MODEL),
                settings,
                index,
            )
    except (ValueError, LookupError) as error:
        return 400, {"error": str(error), "type": type(error).__name__}
    return 200, {"hits": [hit.model_dump() for hit in hits]}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/search":
            self.send_error(404)
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            status, out = answer(body if isinstance(body, dict) else {})
        except Exception as error:  # the process stays up for the next question
            status, out = 500, {"error": f"{type(error).__name__}: {error}"}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.last_used = time.monotonic()  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def serve(home: Path, idle_s: float) -> None:
    """Warm up, publish the port, answer until `idle_s` pass without a question."""
    from tasks.clients.embedder import EMBEDDING_MODEL, load_embedder

    load_embedder(EMBEDDING_MODEL).encode("warm up", normalize_embeddings=True)
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    server.timeout = 1.0
    server.last_used = time.monotonic()  # type: ignore[attr-defined]
    path = run_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": server.server_address[1]}))
    os.replace(tmp, path)
    print(f"search: ready on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        while time.monotonic() - server.last_used < idle_s:  # type: ignore[attr-defined]
            server.handle_request()
    finally:
        server.server_close()
        if _owner(path) == os.getpid():  # a newer process may have taken the file over
            path.unlink(missing_ok=True)
        print(f"search: idle for {idle_s:.0f} s, exiting", flush=True)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _owner(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> None:
    from tasks.shared.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-s", type=float, default=IDLE_S, help="exit after this long idle")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, _stop)  # `kill` tidies up like the idle exit
    serve(get_settings().home, args.idle_s)


if __name__ == "__main__":
    main()
