"""Serving on a two-host Ray cluster: one model replica against two replicas on two hosts.

The hosts are network namespaces on this machine (tests/multihost.py: a Ray head and a Ray
worker node with one CPU each, and a client host). The default model shape is registered as
champion and served as two Serve applications at once, deployed from the client host over
`ray://`: `/one` (1 replica) and `/two` (2 replicas, one on each host), each replica with half
a CPU so that both applications fit (3 replicas on 2 one-CPU nodes) and one torch thread; the
router and retriever of both sit on the head (`control_labels`). From the client host, `POST
/v1/completions` through the head's HTTP proxy at concurrency 16, the two applications timed in
alternation, the order swapped each round: p50/p95 latency and throughput, and the ratios.

All "hosts" share this machine's cores: two hosts on a 2-core machine cannot double the CPU,
so this measures what spreading replicas costs and gains here, not a real second machine.

    python benchmarks/bench_cluster_serving.py [--quick] [--rounds N] [--requests N] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _common
from bench_serving import MODEL, PROMPT, register_default_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from multihost import CONTROL_LABELS, DASHBOARD_PORT, HOSTS, Cluster, cluster, last_json

APPS = {"one": 1, "two": 2}  # application (and route prefix) -> model replicas
CONCURRENCY = 16
URL = f"http://{HOSTS['head']}:8000"

DEPLOY = """
from ray import serve
from serving.app import deploy
from tasks.clients.ray_cluster import ensure_ray
from tasks.shared.settings import get_settings
settings = get_settings()
ensure_ray(settings)
serve.start(http_options={{"host": "0.0.0.0", "port": 8000}})
for name, replicas in {apps!r}.items():
    deploy(settings, {model!r}, {{{version!r}: 100.0}}, name=name, route_prefix="/" + name,
           model_cpus=0.5, model_replicas=replicas, control_labels={labels!r})
"""

PLACEMENT = """
import json
from ray.util.state import list_actors, list_nodes
address = "http://{head}:{port}"
ips = {{n.node_id: n.node_ip for n in list_nodes(address=address, limit=1000)}}
print(json.dumps([[a.class_name, ips.get(a.node_id)]
                  for a in list_actors(address=address, detail=True, limit=10000)
                  if a.class_name.startswith("ServeReplica:") and a.state == "ALIVE"]))
"""

LOAD = """
import asyncio, json, time
import httpx
async def main():
    body = {{"model": {model!r}, "prompt": {prompt!r}, "max_tokens": {tokens}}}
    gate = asyncio.Semaphore({concurrency})
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url={url!r}, timeout=120, limits=limits) as client:
        async def timed():
            async with gate:
                started = time.perf_counter()
                (await client.post("/{app}/v1/completions", json=body)).raise_for_status()
                return 1000 * (time.perf_counter() - started)
        await asyncio.gather(*(timed() for _ in range({concurrency})))  # warm-up
        started = time.perf_counter()
        ms = await asyncio.gather(*(timed() for _ in range({requests})))
        print(json.dumps({{"ms": ms, "wall": time.perf_counter() - started}}))
asyncio.run(main())
"""


def deploy_apps(c: Cluster, env: dict[str, str], version: str) -> float:
    """Both applications, deployed from the client host; seconds until both answer."""
    started = time.perf_counter()
    code = DEPLOY.format(apps=APPS, model=MODEL, version=version, labels=CONTROL_LABELS)
    c.python("client", code, env, timeout=600)
    for app in APPS:
        check = f"import httpx; httpx.get('{URL}/{app}/readyz', timeout=30).raise_for_status()"
        c.wait_for("client", check, f"/{app} never got ready", 300, env)
    return time.perf_counter() - started


def placement(c: Cluster, env: dict[str, str]) -> dict[str, list[str]]:
    """Which host each application's model replicas run on."""
    code = PLACEMENT.format(head=HOSTS["head"], port=DASHBOARD_PORT)
    actors = last_json(c.python("head", code, env))
    names = {ip: host for host, ip in HOSTS.items()}
    return {
        app: sorted(names[ip] for cls, ip in actors if cls.startswith(f"ServeReplica:{app}:model"))
        for app in APPS
    }


def measure(c: Cluster, env: dict[str, str], app: str, args: argparse.Namespace) -> dict:
    code = LOAD.format(
        model=MODEL,
        prompt=PROMPT,
        tokens=args.max_tokens,
        url=URL,
        app=app,
        concurrency=CONCURRENCY,
        requests=args.requests,
    )
    return last_json(c.python("client", code, env, timeout=600))


def summary(runs: list[dict]) -> dict[str, float]:
    ordered = sorted(ms for run in runs for ms in run["ms"])
    n = len(ordered)
    return {
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[int(0.95 * (n - 1))],
        "req_per_s": n / sum(run["wall"] for run in runs),
        "n": n,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "benchmark": "cluster_serving",
        "quick": args.quick,
        "concurrency": CONCURRENCY,
        "max_tokens": args.max_tokens,
    }
    with _common.fresh_home("cluster-serving") as settings, cluster() as c:
        version, _ = register_default_model(settings)  # the hosts share this filesystem
        started = time.perf_counter()
        c.start_ray()
        c.wait_for_ray_client()
        results["cluster_start_s"] = time.perf_counter() - started
        env = c.env(LLMOPS_HOME=str(settings.home), LLMOPS_RAY_ADDRESS=c.ray_client_address)
        results["deploy_s"] = deploy_apps(c, env, version)
        results["placement"] = placement(c, env)
        if results["placement"] != {"one": ["head"], "two": ["head", "worker"]}:
            print(f"note: replicas placed as {results['placement']}", flush=True)
        runs: dict[str, list[dict]] = {app: [] for app in APPS}
        per_round = []
        for r in range(args.rounds):
            for app in list(APPS) if r % 2 == 0 else list(reversed(APPS)):
                runs[app].append(measure(c, env, app, args))
            p50 = {app: statistics.median(runs[app][-1]["ms"]) for app in APPS}
            per_round.append(p50["two"] / p50["one"])
            print(
                f"round {r + 1}/{args.rounds}: p50 one {p50['one']:.1f} ms, two "
                f"{p50['two']:.1f} ms, two/one {per_round[-1]:.2f}",
                flush=True,
            )
        results["stats"] = {app: summary(runs[app]) for app in APPS}
        results["per_round_p50_ratio"] = per_round
    return results


def report(r: dict[str, Any]) -> None:
    one, two = r["stats"]["one"], r["stats"]["two"]
    print(
        f"\ncluster up in {r['cluster_start_s']:.1f} s, both apps ready in {r['deploy_s']:.1f} s;"
        f" model replicas on: {r['placement']}"
    )
    _common.print_table(
        ["model replicas", "hosts", "p50 ms", "p95 ms", "req/s", "requests"],
        [
            [1, "head", one["p50_ms"], one["p95_ms"], one["req_per_s"], one["n"]],
            [2, "head + worker", two["p50_ms"], two["p95_ms"], two["req_per_s"], two["n"]],
        ],
    )
    ratios = r["per_round_p50_ratio"]
    p50, p95 = two["p50_ms"] / one["p50_ms"], two["p95_ms"] / one["p95_ms"]
    rate = two["req_per_s"] / one["req_per_s"]
    print(
        f"two/one: p50 x{p50:.2f}, p95 x{p95:.2f}, throughput x{rate:.2f} (per-round p50 ratio "
        f"{min(ratios):.2f}-{max(ratios):.2f}); concurrency {CONCURRENCY}, "
        f"{r['max_tokens']} tokens per answer"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 32 requests a cell")
    parser.add_argument("--rounds", type=int, help="rounds over both applications (4)")
    parser.add_argument("--requests", type=int, help="per application and round (128)")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer (16)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 4)
    args.requests = args.requests or (32 if args.quick else 128)
    info = _common.machine()
    results = run(args)
    print()
    _common.print_machine(info)
    report(results)
    _common.write_json(args.json, {"machine": info, **results})


if __name__ == "__main__":
    main()
