"""Serving: the router against calling the model deployment directly, batching, cold start.

The default model shape (the from-scratch Llama, tokenizer trained on the pydoc topics) is
registered as champion and served on local Ray Serve as two applications, `/batch8`
(`max_batch_size` 8, the default) and `/batch1`, timed in alternation, the order rotated each
round. Measured: p50/p95 and throughput at concurrency 1, 4, 16 and 32 of `POST
/v1/completions` through Serve's HTTP proxy and the router (client HTTP, proxy, FastAPI app,
routing, request log, metrics, two handle hops) versus a handle call from this process to the
`ModelServer` deployment (one hop), goal: router <= 1.1x direct at p50; `GET /healthz` (proxy
and router, no model); CPU time per request by process; batching 8 vs 1 through the router;
cold start (deploy to /readyz 200, each deployment's HEALTHY time) and weights load time,
safetensors versus the same tensors pickled (`torch.load(weights_only=True)`).

    python benchmarks/bench_serving.py [--quick] [--rounds N] [--max-tokens N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
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
LEVELS = (1, 4, 16, 32)
APPS = {"batch8": 8, "batch1": 1}  # application (and route prefix) -> max_batch_size
PATHS = {
    "router_b8": "batch8",
    "direct_b8": "batch8",
    "router_b1": "batch1",
    "direct_b1": "batch1",
    "healthz": "batch8",
}
GOAL = 1.10
Call = Callable[[], Awaitable[None]]


def register_default_model(settings: Any) -> tuple[str, Path]:
    """Build the default scratch model, log it to MLflow, register it, make it champion."""

    from tasks.clients.registry import DIGEST_TAG, model_registry
    from tasks.clients.tracking import start_run
    from tasks.core.promotion import CHAMPION
    from tasks.finetune.base_model import ScratchSpec, build_scratch_model

    texts = list(_common.PYDOC_TOPICS.values())
    folder = build_scratch_model(settings.models_dir / "base" / "bench", texts, ScratchSpec())
    with start_run(settings, "bench-serving") as run:
        run.log_artifacts(folder, artifact_path="model")
    registry = model_registry(settings)
    digest = registry.run_manifest_digest(run.run_id)  # servers refuse versions without
    version = registry.register(MODEL, run.run_id, {"origin": "benchmark", DIGEST_TAG: digest})
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


def deploy_app(settings: Any, url: str, version: str, name: str, batch: int) -> dict[str, Any]:
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
    deploy(
        settings, MODEL, {version: 100.0}, name=name, route_prefix=f"/{name}", max_batch_size=batch
    )
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
    return {"ready_s": ready, "model_init_s": init, "healthy_s": healthy}


def calls(client: httpx.AsyncClient, version: str, max_tokens: int) -> dict[str, Call]:
    """Every timed path, by name; all answer the same prompt with the same tokens."""
    from ray import serve

    from serving.api import CompletionRequest, Generation

    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": max_tokens}
    request = CompletionRequest(**body)

    def http(app: str) -> Call:
        async def call() -> None:
            (await client.post(f"/{app}/v1/completions", json=body)).raise_for_status()

        return call

    def handle(app: str) -> Call:
        model = serve.get_deployment_handle(f"model-v{version}", app_name=f"{app}-v{version}")

        async def call() -> None:
            if not isinstance(out := await model.complete.remote(request), Generation):
                raise RuntimeError(f"{app}: {out}")

        return call

    async def healthz() -> None:
        (await client.get("/batch8/healthz")).raise_for_status()

    made = {"router": http, "direct": handle}
    return {p: healthz if p == "healthz" else made[p[:-3]](app) for p, app in PATHS.items()}


def cpu_seconds() -> Counter[str]:
    """CPU seconds used so far by this process ("client") and its descendants (the local Ray
    it started), by role: "proxy", "<app>:<deployment>" for replicas, other Ray processes."""
    me, used = psutil.Process(), Counter()
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error, IndexError):
            title = proc.cmdline()[0].split(" ")[0]
            key = title.split("ServeReplica:")[-1].split(".")[0]  # e.g. "batch8:Router"
            if proc == me or "ProxyActor" in title or not title.startswith("ray::"):
                key = "client" if proc == me else "proxy" if "ProxyActor" in title else "other"
            used[key] += sum(proc.cpu_times()[:2])  # user + system
    return used


async def measure(call: Call, concurrency: int, total: int) -> dict[str, Any]:
    """Per-request latencies (ms) of `total` calls, `concurrency` at a time, wall time and
    CPU time by process."""
    gate = asyncio.Semaphore(concurrency)

    async def timed() -> float:
        async with gate:
            started = time.perf_counter()
            await call()
            return 1000 * (time.perf_counter() - started)

    await asyncio.gather(*(timed() for _ in range(concurrency)))  # warm-up: each slot once
    cpu, started = cpu_seconds(), time.perf_counter()
    latencies = await asyncio.gather(*(timed() for _ in range(total)))
    wall = time.perf_counter() - started
    return {
        "ms": latencies,
        "p50": statistics.median(latencies),
        "wall": wall,
        "cpu": cpu_seconds() - cpu,
    }


async def compare(url: str, version: str, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of every level x every path, the paths' order rotated each round."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        paths = calls(client, version, args.max_tokens)
        body = {"model": MODEL, "prompt": PROMPT, "max_tokens": args.max_tokens}
        tokens = (await client.post("/batch8/v1/completions", json=body)).json()["usage"]
        runs: dict[str, Any] = {p: {c: [] for c in LEVELS} for p in paths}
        spread: list[dict[int, float]] = []
        for r in range(args.rounds):
            for c in LEVELS:
                order = list(paths)[r % len(paths) :] + list(paths)[: r % len(paths)]
                for name in order:
                    runs[name][c].append(await measure(paths[name], c, max(args.requests, 4 * c)))
            spread.append(
                {
                    c: runs["router_b8"][c][-1]["p50"] / runs["direct_b8"][c][-1]["p50"]
                    for c in LEVELS
                }
            )
            line = ", ".join(f"c{c} {x:.2f}" for c, x in spread[-1].items())
            print(f"round {r + 1}/{args.rounds}: router/direct p50 {line}", flush=True)
    stats = {p: {c: summary(p, runs[p][c], version) for c in LEVELS} for p in paths}
    return {
        "completion_tokens": tokens["completion_tokens"],
        "stats": stats,
        "per_round_p50_ratio": spread,
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
    return {
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[int(0.95 * (n - 1))],
        "req_per_s": n / sum(run["wall"] for run in runs),
        "n": n,
        "cpu_ms_per_request": per_role,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    results: dict[str, Any] = {
        "benchmark": "serving",
        "quick": args.quick,
        "max_tokens": args.max_tokens,
    }
    with _common.fresh_home("serving") as settings:
        version, folder = register_default_model(settings)
        results["load_ms"] = load_times(folder, 5 if args.quick else 20)
        started = time.perf_counter()
        # As tasks.clients.ray_cluster.ensure_ray, without forwarding the replicas' logs (an
        # access-log line per request) to this process, which is also the load generator.
        ray.init(include_dashboard=False, log_to_driver=False)
        results["ray_init_s"] = time.perf_counter() - started
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
        try:
            started = time.perf_counter()
            serve.start(http_options={"host": "127.0.0.1", "port": int(url.split(":")[-1])})
            results["serve_start_s"] = time.perf_counter() - started
            cold = []
            for _ in range(args.cold_starts):  # alone on Ray: deployed, then deleted
                cold.append(deploy_app(settings, url, version, "cold", 8))
                serve.delete("cold")
                serve.delete(f"cold-v{version}")  # the version is an application of its own
            for name, batch in APPS.items():  # these two stay up for the load runs
                cold.append(deploy_app(settings, url, version, name, batch))
            results["cold_starts"] = cold
            results.update(asyncio.run(compare(url, version, args)))
        finally:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
    return results


def report(r: dict[str, Any]) -> None:
    s, cold, load = r["stats"], r["cold_starts"], r["load_ms"]
    print(f"\nRay start {r['ray_init_s']:.1f} s, Serve start {r['serve_start_s']:.1f} s")
    _common.print_table(
        ["cold start", "deploy to /readyz 200 s", "ModelServer.__init__ s", "HEALTHY at, s"],
        [
            [
                i + 1,
                c["ready_s"],
                c["model_init_s"],
                ", ".join(
                    f"{k} {v}" for k, v in sorted(c["healthy_s"].items(), key=lambda kv: kv[1])
                ),
            ]
            for i, c in enumerate(cold)
        ],
    )
    _common.print_table(
        ["weights load, median ms", "safetensors", "pickle (weights_only)", "safetensors/pickle"],
        [
            [
                what,
                load[f"{key}_safetensors"],
                load[f"{key}_pickle"],
                load[f"{key}_safetensors"] / load[f"{key}_pickle"],
            ]
            for what, key in (("tensors only", "tensors"), ("load_model_folder", "folder"))
        ],
    )
    print(f"\n{r['completion_tokens']} tokens per answer; router vs direct, max_batch_size 8 (ms):")
    rb8, db8, rb1, db1 = (s[p] for p in ("router_b8", "direct_b8", "router_b1", "direct_b1"))
    _common.print_table(
        [
            "concurrency",
            "router p50",
            "direct p50",
            "router/direct p50",
            "router p95",
            "direct p95",
            "router req/s",
            "direct req/s",
            "/healthz p50",
        ],
        [
            [
                c,
                rb8[c]["p50_ms"],
                db8[c]["p50_ms"],
                rb8[c]["p50_ms"] / db8[c]["p50_ms"],
                rb8[c]["p95_ms"],
                db8[c]["p95_ms"],
                rb8[c]["req_per_s"],
                db8[c]["req_per_s"],
                s["healthz"][c]["p50_ms"],
            ]
            for c in LEVELS
        ],
    )
    print("\nthrough the router, max_batch_size 8 vs 1 (and router/direct p50 without batching):")
    _common.print_table(
        [
            "concurrency",
            "b8 p50",
            "b1 p50",
            "b8 p95",
            "b1 p95",
            "b8 req/s",
            "b1 req/s",
            "b8/b1 req/s",
            "router/direct p50 at b1",
        ],
        [
            [
                c,
                rb8[c]["p50_ms"],
                rb1[c]["p50_ms"],
                rb8[c]["p95_ms"],
                rb1[c]["p95_ms"],
                rb8[c]["req_per_s"],
                rb1[c]["req_per_s"],
                rb8[c]["req_per_s"] / rb1[c]["req_per_s"],
                rb1[c]["p50_ms"] / db1[c]["p50_ms"],
            ]
            for c in LEVELS
        ],
    )
    print("\nCPU ms per request, by process:")
    roles = list(rb8[1]["cpu_ms_per_request"])
    _common.print_table(
        ["path", "concurrency", *roles, "total"],
        [
            [
                p,
                c,
                *s[p][c]["cpu_ms_per_request"].values(),
                sum(s[p][c]["cpu_ms_per_request"].values()),
            ]
            for p in s
            for c in (1, 32)
        ],
    )
    per_round = {c: [row[c] for row in r["per_round_p50_ratio"]] for c in LEVELS}
    line = ", ".join(f"c{c} {min(v):.2f}-{max(v):.2f}" for c, v in per_round.items())
    print(f"router/direct p50 per round, min-max: {line}")
    worst = max(rb8[c]["p50_ms"] / db8[c]["p50_ms"] for c in LEVELS)
    r["passed"] = bool(worst <= GOAL)
    print(
        f"router overhead at p50, worst level: x{worst:.2f} (goal <= {GOAL}) "
        f"{'PASS' if r['passed'] else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 16 requests a cell")
    parser.add_argument("--rounds", type=int, help="rounds over every level and path (5)")
    parser.add_argument("--requests", type=int, help="per path, level and round (64; >= 4 x c)")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer (16)")
    parser.add_argument("--cold-starts", type=int, default=2, help="deploy/delete cycles alone")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.requests = args.requests or (16 if args.quick else 64)
    args.cold_starts = 1 if args.quick else args.cold_starts
    info = _common.machine()
    results = run(args)
    print()
    _common.print_machine(info)
    report(results)
    _common.write_json(args.json, {"machine": info, **results})


if __name__ == "__main__":
    main()
