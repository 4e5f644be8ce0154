"""Serving: the continuous-batching engine against Serve's `@serve.batch`, the router against
calling the model deployment directly, and streamed answers' first token and token gaps.

The default model shape (the from-scratch Llama, tokenizer trained on the pydoc topics) is
registered as champion and served on local Ray Serve as two applications, `/cont` (engine
"continuous", the default) and `/static` (engine "static": `@serve.batch`, 10 ms window), both
`max_batch_size` 8, a model replica of 1 CPU each. Timed in alternation at concurrency 1, 4,
16 and 32, the paths' order rotated each round:

- router: `POST /cont/v1/completions` through Serve's HTTP proxy and the router (client HTTP,
  proxy, FastAPI app, routing, request log, metrics, two handle hops);
- direct: a handle call from this process to `/cont`'s `ModelServer` (one hop);
  goal: router <= 1.1x direct at p50, every level;
- static: as router, on `/static`; goal: continuous >= 1.6x its throughput at 16 and 32, and
  no worse p50 at 1;
- stream: as router with `"stream": true`; time to first token and the gaps between text
  events, timed here as the SSE events arrive. The version's release turns the output rail off
  (`--output-rail` keeps it): the rail holds back the last 96 characters, so a short answer
  would otherwise arrive in one piece at its end;
- healthz: `GET /cont/healthz` (proxy and router, no model);
- ingress (only when Serve's direct ingress is on, `--serve-env`): as router, but straight to
  the router replica's own HTTP port, no proxy.

Also: CPU time per request by process, deploy to /readyz 200 per application, weights load
(safetensors vs the same tensors pickled). Ray starts with `ensure_ray`'s Serve flags
(`SERVE_ENV`: gRPC between handles), in this process too, so the direct path's handle call
uses the same transport as the router's; `--serve-env` adds or overrides flags. The
machinery (deploy, calls, load, CPU accounting) is in `_serving_load.py`.

    python benchmarks/bench_serving.py [--quick] [--rounds N] [--requests N] [--max-tokens N]
        [--paths router,direct,...] [--levels 1,4,16,32] [--serve-env KEY=VALUE ...]
        [--output-rail] [--model-gpus G] [--json PATH]   (GPU machines: gpu_serving.sh)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import _common
import httpx
from _serving_load import (
    APPS,
    MODEL,
    PATHS,
    PROMPT,
    calls,
    deploy_app,
    ingress_url,
    load_times,
    measure,
    register_default_model,
    summary,
)

from tasks.clients.ray_cluster import SERVE_ENV

LEVELS = (1, 4, 16, 32)
ROUTER_GOAL, ENGINE_GOAL = 1.10, 1.6


async def compare(urls: dict[str, str], version: str, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of every level x every path, the paths' order rotated each round; Serve is shut
    down here, in the loop its handles were made in (they may run on it: see --serve-env)."""
    from ray import serve

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            made = calls(client, urls, version, args.max_tokens)
            paths = {p: made[p] for p in args.paths if p in made}
            body = {"model": MODEL, "prompt": PROMPT, "max_tokens": args.max_tokens}
            answer = await client.post(f"{urls['proxy']}/cont/v1/completions", json=body)
            tokens = answer.json()["usage"]["completion_tokens"]
            runs: dict[str, Any] = {p: {c: [] for c in args.levels} for p in paths}
            for r in range(args.rounds):
                for c in args.levels:
                    order = list(paths)[r % len(paths) :] + list(paths)[: r % len(paths)]
                    for name in order:
                        total = max(args.requests, 4 * c)
                        runs[name][c].append(await measure(paths[name], c, total))
                print(f"round {r + 1}/{args.rounds}: {round_line(runs)}", flush=True)
    finally:
        await serve.shutdown_async()
    stats = {p: {c: summary(p, runs[p][c], version) for c in args.levels} for p in paths}
    ratios = {
        pair: [
            {c: runs[a][c][r]["p50"] / runs[b][c][r]["p50"] for c in args.levels}
            for r in range(args.rounds)
        ]
        for pair, (a, b) in RATIOS.items()
        if a in paths and b in paths
    }
    return {"completion_tokens": tokens, "stats": stats, "per_round_p50_ratio": ratios}


RATIOS = {"router/direct": ("router", "direct"), "cont/static": ("router", "static")}


def round_line(runs: dict[str, Any]) -> str:
    parts = []
    for pair, (a, b) in RATIOS.items():
        if a in runs and b in runs:
            line = ", ".join(
                f"c{c} {v[-1]['p50'] / runs[b][c][-1]['p50']:.2f}" for c, v in runs[a].items()
            )
            parts.append(f"{pair} p50 {line}")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    from serving.options import ModelOptions

    results: dict[str, Any] = {
        "benchmark": "serving",
        "quick": args.quick,
        "max_tokens": args.max_tokens,
        "model_gpus": args.model_gpus,
        "serve_env": {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")},
        "output_rail": args.output_rail,
    }
    with _common.fresh_home("serving") as settings:
        version, folder = register_default_model(settings, args.output_rail)
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
            results["cold_starts"] = [
                deploy_app(
                    settings,
                    url,
                    version,
                    app,
                    ModelOptions(engine=engine, model_gpus=args.model_gpus),
                )
                for app, engine in APPS.items()
                if app in {PATHS[p] for p in args.paths} | {"cont"}  # only what is measured
            ]
            urls = {"proxy": url}
            if ingress := ingress_url("cont", url):
                urls["ingress"] = ingress
            results["urls"] = urls
            results.update(asyncio.run(compare(urls, version, args)))
        finally:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
    return results


Column = Callable[[int], Any]  # concurrency -> cell


def report(r: dict[str, Any], levels: list[int]) -> None:
    s, load = r["stats"], r["load_ms"]
    print(f"\nRay start {r['ray_init_s']:.1f} s, Serve start {r['serve_start_s']:.1f} s")
    flags = " ".join(f"{k}={v}" for k, v in r["serve_env"].items())
    print(f"Serve environment: {flags or 'defaults'}; addresses {r['urls']}")
    _common.print_table(
        ["application", "deploy to /readyz 200 s", "ModelServer.__init__ s", "HEALTHY at, s"],
        [[c["app"], c["ready_s"], c["model_init_s"], healthy(c)] for c in r["cold_starts"]],
    )
    _common.print_table(
        ["weights load, median ms", "safetensors", "pickle (weights_only)", "safetensors/pickle"],
        [
            [
                what,
                *(load[f"{k}_{f}"] for f in ("safetensors", "pickle")),
                load[f"{k}_safetensors"] / load[f"{k}_pickle"],
            ]
            for what, k in (("tensors only", "tensors"), ("load_model_folder", "folder"))
        ],
    )

    def v(path: str, key: str = "p50_ms") -> Column:
        return lambda c: s[path][c][key]

    def ratio(a: Column, b: Column) -> Column:
        return lambda c: a(c) / b(c)

    def table(title: str, columns: dict[str, Column]) -> None:
        print(f"\n{title}")
        _common.print_table(
            ["concurrency", *columns], [[c, *(f(c) for f in columns.values())] for c in levels]
        )

    verdicts: dict[str, bool] = {}
    print(f"\n{r['completion_tokens']} tokens per answer; ms unless named")
    if {"router", "direct"} <= s.keys():
        extra = {f"{p} p50": v(p) for p in ("ingress", "healthz") if p in s}
        if "ingress" in s:
            extra["ingress/direct p50"] = ratio(v("ingress"), v("direct"))
        table(
            "router (HTTP, proxy, router) vs direct (a handle call to the model), continuous:",
            {
                "router p50": v("router"),
                "direct p50": v("direct"),
                "router/direct p50": ratio(v("router"), v("direct")),
                "router p95": v("router", "p95_ms"),
                "direct p95": v("direct", "p95_ms"),
                "router req/s": v("router", "req_per_s"),
                "direct req/s": v("direct", "req_per_s"),
                **extra,
            },
        )
        worst = max(map(ratio(v("router"), v("direct")), levels))
        verdicts[f"router/direct p50 <= {ROUTER_GOAL}, worst level x{worst:.2f}"] = (
            worst <= ROUTER_GOAL
        )
    if {"router", "static"} <= s.keys():
        gain = ratio(v("router", "req_per_s"), v("static", "req_per_s"))
        table(
            "through the router, engine continuous vs static (@serve.batch):",
            {
                "cont p50": v("router"),
                "static p50": v("static"),
                "cont/static p50": ratio(v("router"), v("static")),
                "cont p95": v("router", "p95_ms"),
                "static p95": v("static", "p95_ms"),
                "cont req/s": v("router", "req_per_s"),
                "static req/s": v("static", "req_per_s"),
                "cont/static req/s": gain,
            },
        )
        for c in (c for c in (16, 32) if c in levels):
            verdicts[f"cont/static req/s >= {ENGINE_GOAL} at c{c}: x{gain(c):.2f}"] = (
                gain(c) >= ENGINE_GOAL
            )
        if 1 in levels:
            at1 = ratio(v("router"), v("static"))(1)
            verdicts[f"cont/static p50 <= 1 at c1: x{at1:.2f}"] = at1 <= 1.0
    if "stream" in s:
        table(
            "streamed through the router, continuous (client-side, per SSE event with text):",
            {
                "TTFT p50": v("stream", "ttft_p50_ms"),
                "TTFT p95": v("stream", "ttft_p95_ms"),
                "inter-token p50": v("stream", "itl_p50_ms"),
                "inter-token p95": v("stream", "itl_p95_ms"),
                "whole p50": v("stream"),
                "whole p95": v("stream", "p95_ms"),
                "req/s": v("stream", "req_per_s"),
            },
        )
    print("\nCPU ms per request, by process (the path's application):")
    roles = list(next(iter(s.values()))[levels[0]]["cpu_ms_per_request"])
    _common.print_table(
        ["path", "concurrency", *roles, "total"],
        [
            [p, c, *(cpu := s[p][c]["cpu_ms_per_request"]).values(), sum(cpu.values())]
            for p in s
            for c in sorted({levels[0], levels[-1]})
        ],
    )
    for pair, rounds in r["per_round_p50_ratio"].items():
        spread = [
            f"c{c} {min(x[c] for x in rounds):.2f}-{max(x[c] for x in rounds):.2f}" for c in levels
        ]
        print(f"{pair} p50 per round, min-max: {', '.join(spread)}")
    for what, ok in verdicts.items():
        print(f"{what}: {'PASS' if ok else 'FAIL'}")
    r["verdicts"] = verdicts
    r["passed"] = bool(verdicts) and all(verdicts.values())


def healthy(cold: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(cold["healthy_s"].items(), key=lambda kv: kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 16 requests a cell")
    parser.add_argument("--rounds", type=int, help="rounds over every level and path (5)")
    parser.add_argument("--requests", type=int, help="per path, level and round (64; >= 4 x c)")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer (16)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"some of {','.join(PATHS)}")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrencies")
    parser.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Serve flags before Ray starts (beyond ensure_ray's SERVE_ENV), e.g. "
        "RAY_SERVE_USE_GRPC_BY_DEFAULT=0 for Serve's defaults, RAY_SERVE_ENABLE_DIRECT_INGRESS=1",
    )
    parser.add_argument(
        "--output-rail", action="store_true", help="keep the output rail (holds streams back)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    parser.add_argument(
        "--model-gpus", type=float, default=0.0, help="GPUs per model replica (0: CPU)"
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.requests = args.requests or (16 if args.quick else 64)
    args.paths = [p for p in args.paths.split(",") if p]
    args.levels = [int(c) for c in args.levels.split(",")]
    if unknown := set(args.paths) - set(PATHS):
        parser.error(f"unknown paths {sorted(unknown)}")
    # Serve reads its flags at import, in every process: set before Ray starts, as ensure_ray
    # does, and for this process too (its handles are the direct path). --serve-env wins.
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    for pair in args.serve_env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    info = _common.machine()
    results = run(args)
    print()
    _common.print_machine(info)
    report(results, args.levels)
    _common.write_json(args.json, {"machine": info, **results})


if __name__ == "__main__":
    main()
