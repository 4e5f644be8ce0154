"""Serving: the router against calling the model deployment directly, batching, cold start.

The default model shape (the from-scratch Llama built from its config, tokenizer trained on the
pydoc topics) is registered as champion and served on local Ray Serve. Measured:
- latency p50/p95 and throughput at concurrency 1, 4, 16 and 32, through HTTP and the router
  versus a handle call to the model deployment (goal: the router adds <= 10% at p50);
- the same through the router with `max_batch_size` 8 versus 1 (no batching);
- cold start: deploy to /readyz, and the weights' load time from safetensors versus the same
  tensors from a pickle checkpoint (`torch.load(weights_only=True)`).

    python benchmarks/bench_serving.py [--requests N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import _common
import httpx
import torch

MODEL = "bench-assistant"
URL = "http://127.0.0.1:8000"
BODY = {"model": MODEL, "prompt": "The with statement", "max_tokens": 8, "temperature": 0.0}
GOAL = 1.10


def register_default_model(settings: Any) -> tuple[str, Path]:
    import mlflow

    from tasks.base_model import ScratchSpec, build_scratch_model
    from tasks.clients.registry import model_registry
    from tasks.clients.tracking import start_run

    folder = build_scratch_model(
        settings.models_dir / "base" / "bench", list(topics.values()), ScratchSpec()
    )
    with start_run(settings, "bench-serving") as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
    registry = model_registry(settings)
    version = registry.register(MODEL, run.info.run_id, {"origin": "benchmark"})
    registry.set_alias(MODEL, "champion", version, action="promote", reason="benchmark",
                       actor="bench_serving")  # fmt: skip
    return version, folder


def load_times(folder: Path, repeats: int = 20) -> dict[str, float]:
    """Median seconds to read the weights: safetensors vs the same tensors pickled."""
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    pickled = folder.parent / "bench-model.bin"
    torch.save(load_file(weights), pickled)

    def median_of(load: Any) -> float:
        took = []
        for _ in range(repeats):
            started = time.perf_counter()
            load()
            took.append(time.perf_counter() - started)
        return statistics.median(took)

    return {
        "safetensors_s": median_of(lambda: load_file(weights)),
        "pickle_s": median_of(lambda: torch.load(pickled, weights_only=True)),
    }


def deploy_and_wait(settings: Any, version: str, batch: int) -> float:
    from serving.app import deploy

    started = time.perf_counter()
    deploy(settings, MODEL, {version: 100.0}, max_batch_size=batch)
    while httpx.get(f"{URL}/readyz").status_code != 200:
        time.sleep(0.1)
    return time.perf_counter() - started


async def through_router(concurrency: int, total: int) -> list[float]:
    async with httpx.AsyncClient(base_url=URL, timeout=60) as client:

        async def one() -> float:
            started = time.perf_counter()
            response = await client.post("/v1/completions", json=BODY)
            response.raise_for_status()
            return time.perf_counter() - started

        return await _run(one, concurrency, total)


async def direct(version: str, concurrency: int, total: int) -> list[float]:
    from ray import serve

    from serving.api import CompletionRequest

    handle = serve.get_deployment_handle(f"model-v{version}", app_name="llmops")
    request = CompletionRequest(**BODY)

    async def one() -> float:
        started = time.perf_counter()
        await handle.complete.remote(request)
        return time.perf_counter() - started

    return await _run(one, concurrency, total)


async def _run(one: Any, concurrency: int, total: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)

    async def limited() -> float:
        async with gate:
            return await one()

    await asyncio.gather(*(limited() for _ in range(concurrency)))  # warm-up
    started = time.perf_counter()
    latencies = await asyncio.gather(*(limited() for _ in range(total)))
    latencies.append(time.perf_counter() - started)  # the last entry: wall time
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    wall, samples = latencies[-1], sorted(latencies[:-1])
    return {
        "p50_ms": 1000 * statistics.median(samples),
        "p95_ms": 1000 * samples[int(0.95 * (len(samples) - 1))],
        "req_per_s": len(samples) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=160, help="per concurrency level")
    parser.add_argument("--json")
    args = parser.parse_args()
    info = _common.machine()
    _common.print_machine(info)
    from ray import serve

    from tasks.clients.ray_cluster import ensure_ray

    results: dict[str, Any] = {"machine": info}
    with _common.fresh_home("serving") as settings:
        version, folder = register_default_model(settings)
        results["load"] = load_times(folder)
        ensure_ray(settings)
        results["cold_start_s"] = deploy_and_wait(settings, version, batch=8)
        rows = []
        for concurrency in (1, 4, 16, 32):
            routed = summary(asyncio.run(through_router(concurrency, args.requests)))
            handle = summary(asyncio.run(direct(version, concurrency, args.requests)))
            rows.append([concurrency, routed["p50_ms"], handle["p50_ms"],
                         routed["p50_ms"] / handle["p50_ms"], routed["p95_ms"],
                         routed["req_per_s"], handle["req_per_s"]])  # fmt: skip
        results["router_vs_direct"] = rows
        batched = summary(asyncio.run(through_router(16, args.requests)))
        deploy_and_wait(settings, version, batch=1)
        unbatched = summary(asyncio.run(through_router(16, args.requests)))
        results["batching_c16"] = {"batch_8": batched, "batch_1": unbatched}
        serve.shutdown()
    print(f"\ncold start (deploy to /readyz, Ray running): {results['cold_start_s']:.1f} s")
    load = results["load"]
    print(
        f"weights load: safetensors {1000 * load['safetensors_s']:.1f} ms, pickle "
        f"(weights_only) {1000 * load['pickle_s']:.1f} ms, "
        f"ratio {load['safetensors_s'] / load['pickle_s']:.2f}"
    )
    _common.print_table(
        ["concurrency", "router p50 ms", "direct p50 ms", "router/direct p50", "router p95 ms",
         "router req/s", "direct req/s"],
        rows,
    )  # fmt: skip
    gain = batched["req_per_s"] / unbatched["req_per_s"]
    print(
        f"batching at concurrency 16: {batched['req_per_s']:.1f} req/s with max_batch_size 8, "
        f"{unbatched['req_per_s']:.1f} without (x{gain:.2f})"
    )
    worst = max(row[3] for row in rows)
    print(f"router overhead at p50, worst level: x{worst:.2f} (goal <= {GOAL}) "
          f"{'PASS' if worst <= GOAL else 'FAIL'}")  # fmt: skip
    _common.write_json(args.json, results)


if __name__ == "__main__":
    main()
