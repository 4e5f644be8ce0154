"""The serving benchmark's machinery (`bench_serving.py`): the model registered and deployed,
weights load timed, every timed path as a call, the load run at a concurrency, CPU time by
process, and latencies summarised."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import statistics
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _common
import httpx
import psutil
import torch

MODEL, PROMPT = "bench-assistant", "The with statement"
APPS = {"cont": "continuous", "static": "static"}  # application (and route prefix) -> engine
PATHS = {"router": "cont", "direct": "cont", "static": "static", "stream": "cont"}
PATHS |= {"healthz": "cont", "ingress": "cont"}  # path -> the application it measures
Call = Callable[[], Awaitable[list[float] | None]]  # None, or a stream's text event times


def register_default_model(settings: Any, output_rail: bool) -> tuple[str, Path]:
    """Build the default scratch model, log it to MLflow, register it with the default
    release (output rail off unless asked), make it champion."""
    from tasks.clients.registry import DIGEST_TAG, model_registry
    from tasks.clients.releases import Releases
    from tasks.clients.tracking import start_run
    from tasks.core.promotion import CHAMPION
    from tasks.core.rails.config import RailsPolicy, ServingRails
    from tasks.finetune.base_model import ScratchSpec, build_scratch_model

    texts = list(_common.PYDOC_TOPICS.values())
    folder = build_scratch_model(settings.models_dir / "base" / "bench", texts, ScratchSpec())
    with start_run(settings, "bench-serving") as run:
        run.log_artifacts(folder, artifact_path="model")
    registry = model_registry(settings)
    release = Releases(settings, registry).default()
    release = release.model_copy(
        update={"rails": RailsPolicy(serving=ServingRails(output=output_rail))}
    )
    digest = registry.run_manifest_digest(run.run_id)  # servers refuse versions without
    tags = {"origin": "benchmark", DIGEST_TAG: digest, **release.tags()}
    version = registry.register(MODEL, run.run_id, tags)
    registry.set_alias(
        MODEL, CHAMPION, version, action="promote", reason="benchmark", actor="bench_serving"
    )
    return version, folder


def load_times(folder: Path, repeats: int) -> dict[str, float]:
    """Median ms to load, in alternation: the tensors alone, and the whole folder as the model
    server does (`load_model_folder`: manifest check, model built, weights in, tokenizer)."""
    from safetensors.torch import load_file

    from tasks.shared.manifest import MANIFEST, write_manifest
    from tasks.shared.models import load_model_folder

    pickled = folder.parent / "bench-pickle"
    shutil.copytree(folder, pickled, ignore=shutil.ignore_patterns("*.safetensors", MANIFEST))
    torch.save(load_file(folder / "model.safetensors"), pickled / "pytorch_model.bin")
    write_manifest(pickled)
    loads: dict[str, Callable[[], Any]] = {
        "tensors_safetensors": lambda: load_file(folder / "model.safetensors"),
        "tensors_pickle": lambda: torch.load(pickled / "pytorch_model.bin", weights_only=True),
        "folder_safetensors": lambda: load_model_folder(folder),
        "folder_pickle": lambda: load_model_folder(pickled, allow_pickle=True),
    }
    took: dict[str, list[float]] = {name: [] for name in loads}
    for i in range(repeats + 1):  # round 0 warms the page cache and the imports
        for name in loads if i % 2 else reversed(loads):
            started = time.perf_counter()
            loads[name]()
            if i:
                took[name].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(ms) for name, ms in took.items()}


def deploy_app(settings: Any, url: str, version: str, name: str, options: Any) -> dict[str, Any]:
    """Deploy one application, timed to /readyz 200 and, per deployment, to HEALTHY in
    `serve.status()`; `model_init_s` is ModelServer.__init__ (registry copy, load, warm-up)."""
    from ray import serve

    from serving.app import deploy

    healthy: dict[str, float] = {}
    started, stop = time.perf_counter(), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            apps = serve.status().applications  # the router's, then the version's own
            for app in (apps.get(name), apps.get(f"{name}-v{version}")):
                for deployment, state in (app.deployments if app else {}).items():
                    if state.status == "HEALTHY":
                        healthy.setdefault(deployment, round(time.perf_counter() - started, 2))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deploy(settings, MODEL, {version: 100.0}, name=name, route_prefix=f"/{name}", options=options)
    while True:
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"{url}/{name}/readyz", timeout=10)
            if answer.status_code == 200:
                break
        time.sleep(0.02)
    ready = time.perf_counter() - started
    stop.set()
    watcher.join()
    init = answer.json()["versions"][version]["load_s"]
    return {"app": name, "ready_s": ready, "model_init_s": init, "healthy_s": healthy}


def ingress_url(app: str, proxy: str) -> str | None:
    """The router replica's own HTTP address under Serve's direct ingress, else None."""
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    for group in ray.get(controller.get_target_groups.remote(app)):
        if str(group.protocol).endswith("HTTP") and group.targets:
            port = group.targets[0].port  # on the proxy's host (Serve's HTTP host)
            return (
                None
                if port == int(proxy.rsplit(":", 1)[1])
                else f"{proxy.rsplit(':', 1)[0]}:{port}"
            )
    return None


def calls(
    client: httpx.AsyncClient, urls: dict[str, str], version: str, max_tokens: int
) -> dict[str, Call]:
    """Every timed path, by name; all answer the same prompt with the same tokens."""
    from ray import serve

    from serving.api import CompletionRequest, Generation

    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": max_tokens}
    request = CompletionRequest(**body)

    def http(base: str, app: str) -> Call:
        async def call() -> None:
            (await client.post(f"{base}/{app}/v1/completions", json=body)).raise_for_status()

        return call

    def handle(app: str) -> Call:
        model = serve.get_deployment_handle(f"model-v{version}", app_name=f"{app}-v{version}")

        async def call() -> None:
            if not isinstance(out := await model.complete.remote(request), Generation):
                raise RuntimeError(f"{app}: {out}")

        return call

    async def stream() -> list[float]:
        marks: list[float] = []  # when each event with text arrived
        streamed = {**body, "stream": True}
        async with client.stream(
            "POST", f"{urls['proxy']}/cont/v1/completions", json=streamed
        ) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith('data: {"error"'):
                    raise RuntimeError(line)
                if line.startswith("data: {") and '"text":""' not in line:  # compact JSON
                    marks.append(time.perf_counter())
        if not marks:
            raise RuntimeError("the stream had no text")
        return marks

    async def healthz() -> None:
        (await client.get(f"{urls['proxy']}/cont/healthz")).raise_for_status()

    made: dict[str, Call] = {
        "router": http(urls["proxy"], "cont"),
        "direct": handle("cont"),
        "static": http(urls["proxy"], "static"),
        "stream": stream,
        "healthz": healthz,
    }
    if "ingress" in urls:
        made["ingress"] = http(urls["ingress"], "cont")
    return made


def cpu_seconds() -> Counter[str]:
    """CPU seconds used so far by this process ("client") and its descendants (the local Ray
    it started), by role: "proxy", "<app>:<deployment>" for replicas, other Ray processes."""
    me, used = psutil.Process(), Counter()
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error, IndexError):
            title = proc.cmdline()[0].split(" ")[0]
            key = title.split("ServeReplica:")[-1].split(".")[0]  # e.g. "cont:Router"
            if proc == me or "ProxyActor" in title or not title.startswith("ray::"):
                key = "client" if proc == me else "proxy" if "ProxyActor" in title else "other"
            used[key] += sum(proc.cpu_times()[:2])  # user + system
    return used


async def measure(call: Call, concurrency: int, total: int) -> dict[str, Any]:
    """Latencies (ms) of `total` calls, `concurrency` at a time, with wall and CPU time; for
    streams also the first text event's time and the gaps between text events (ms)."""
    gate = asyncio.Semaphore(concurrency)

    async def timed() -> tuple[float, list[float] | None]:
        async with gate:
            started = time.perf_counter()
            marks = await call()
            return 1000 * (time.perf_counter() - started), marks and [
                1000 * (m - started) for m in marks
            ]

    await asyncio.gather(*(timed() for _ in range(concurrency)))  # warm-up: each slot once
    cpu, started = cpu_seconds(), time.perf_counter()
    done = await asyncio.gather(*(timed() for _ in range(total)))
    wall = time.perf_counter() - started
    streams = [marks for _, marks in done if marks]
    return {
        "ms": [ms for ms, _ in done],
        "p50": statistics.median(ms for ms, _ in done),
        "wall": wall,
        "cpu": cpu_seconds() - cpu,
        "ttft": [marks[0] for marks in streams],
        "gaps": [b - a for marks in streams for a, b in itertools.pairwise(marks)],
    }


def summary(path: str, runs: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """Pooled over rounds; CPU ms per request by role for the path's application."""
    ordered = sorted(ms for run in runs for ms in run["ms"])
    app, n = PATHS[path], len(ordered)
    roles = {
        "client": "client",
        "proxy": "proxy",
        "router": f"{app}:Router",
        "model": f"{app}-v{version}:model-v{version}",
    }
    cpu = sum((run["cpu"] for run in runs), Counter())
    per_role = {role: 1000 * cpu.pop(key, 0.0) / n for role, key in roles.items()}
    per_role["rest of Ray"] = 1000 * sum(cpu.values()) / n
    out = {
        **pct("", ordered),
        "req_per_s": n / sum(run["wall"] for run in runs),
        "n": n,
        "cpu_ms_per_request": per_role,
    }
    if ttft := [ms for run in runs for ms in run["ttft"]]:
        out |= pct("ttft_", ttft) | pct("itl_", [ms for run in runs for ms in run["gaps"]])
    return out


def pct(prefix: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [float("nan")]
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return {f"{prefix}p50_ms": statistics.median(ordered), f"{prefix}p95_ms": p95}
