"""Rollback: time from the `rollback_model` flow's start to 100 % of traffic on the previous
version, warm (the previous champion still baking at weight 0: a weight change) against cold
(no bake: the version is loaded again first, from the node cache, `LLMOPS_HOME/models/cache`)
and cold without that copy (fetched from MLflow first), on one
local Ray Serve app that follows the registry. Goal: warm <= 5 s here.

The default model shape is registered twice (versions 1 and 2, the same files: a load is a load)
and served by an app that reads the aliases every `--follow-s`. Each round: promote 2 (wait
until it serves alone), then run the flow and poll `/v1/models` until version 1 has all the
traffic, then confirm with an answered request. The cold app is the same with `bake_s=0`.

    python benchmarks/bench_rollback.py [--rounds N] [--follow-s S] [--json PATH]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import time
from typing import Any

import _common
import httpx
from bench_serving import MODEL, register_default_model

# (name, bake_s, remove the node's copy before the rollback)
KINDS = (("warm", 3600.0, False), ("cold", 0.0, False), ("cold, no node copy", 0.0, True))


def register_second(settings: Any, folder: Any) -> str:
    """Version 2: the same files under another run (the registry refuses unverified files)."""
    from tasks.clients.registry import DIGEST_TAG, model_registry
    from tasks.clients.tracking import start_run

    with start_run(settings, "bench-rollback") as run:
        run.log_artifacts(folder, artifact_path="model")
    registry = model_registry(settings)
    digest = registry.run_manifest_digest(run.run_id)
    return registry.register(MODEL, run.run_id, {"origin": "benchmark", DIGEST_TAG: digest})


def weights(url: str) -> dict[str, float]:
    body = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]
    return {v["version"]: v["weight"] for v in body["versions"]}


def wait_for(url: str, version: str, timeout_s: float = 600) -> float:
    """Seconds until `version` has all the traffic and answers an unpinned request."""
    started = time.perf_counter()
    while weights(url).get(version) != 100.0:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"v{version} never took all traffic: {weights(url)}")
        time.sleep(0.05)
    answer = httpx.post(
        f"{url}/v1/completions", json={"prompt": "The with statement", "max_tokens": 2}, timeout=60
    ).json()
    if answer["version"] != version:
        raise RuntimeError(f"answered by v{answer['version']}, expected v{version}")
    return time.perf_counter() - started


def rollout_round(
    settings: Any, url: str, old: str, new: str, drop_cache: bool
) -> dict[str, float]:
    """Promote `new`, then time the rollback flow back to `old` (its node copy removed first
    when `drop_cache`)."""
    from ray import serve

    from flows.rollback import rollback_model
    from tasks.clients.registry import DIGEST_TAG, model_registry
    from tasks.core.promotion import CHAMPION
    from tasks.promote.params import RollbackParams

    registry = model_registry(settings)
    registry.set_alias(MODEL, CHAMPION, new, action="promote", reason="bench", actor="bench")
    promote_s = wait_for(url, new)
    # released (not baking): wait until its application is gone, so the rollback loads it again
    while old not in weights(url) and f"llmops-v{old}" in serve.status().applications:
        time.sleep(0.1)
    if drop_cache:
        shutil.rmtree(settings.model_cache_dir / registry.version_tags(MODEL, old)[DIGEST_TAG])
    started = time.perf_counter()
    rollback_model(RollbackParams(model_name=MODEL, reason="benchmark"))
    flow_s = time.perf_counter() - started
    traffic_s = flow_s + wait_for(url, old)
    return {"promote_s": promote_s, "flow_s": flow_s, "to_100_s": traffic_s}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from prefect.testing.utilities import prefect_test_harness
    from ray import serve

    from serving.app import deploy

    results: dict[str, Any] = {"benchmark": "rollback", "follow_s": args.follow_s}
    with (
        _common.fresh_home("rollback") as settings,
        prefect_test_harness(server_startup_timeout=150),
    ):
        first, folder = register_default_model(settings)  # champion
        second = register_second(settings, folder)
        ray.init(include_dashboard=False, log_to_driver=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            for kind, bake_s, drop in KINDS:
                deploy(settings, MODEL, {first: 100.0}, follow_s=args.follow_s, bake_s=bake_s)
                results[kind] = [
                    rollout_round(settings, url, first, second, drop) for _ in range(args.rounds)
                ]
                serve.delete("llmops")
                for version in (first, second):
                    serve.delete(f"llmops-v{version}")
        finally:
            serve.shutdown()
            ray.shutdown()
    return results


def report(results: dict[str, Any]) -> None:
    med = {
        kind: {k: statistics.median(r[k] for r in results[kind]) for k in results[kind][0]}
        for kind, _, _ in KINDS
    }
    print(
        f"\nrollback, median of {len(results['warm'])} rounds, aliases read every "
        f"{results['follow_s']} s"
    )
    print(f"{'':20}{'promote to 100 %':>18}{'flow':>8}{'flow start to 100 %':>22}")
    for kind, m in med.items():
        print(f"{kind:20}{m['promote_s']:>17.2f}s{m['flow_s']:>7.2f}s{m['to_100_s']:>21.2f}s")
    warm, cold = med["warm"]["to_100_s"], med["cold"]["to_100_s"]
    fetch = med["cold, no node copy"]["to_100_s"]
    goal = "met" if warm <= 5 else "NOT met"
    print(
        f"warm / cold: {warm / cold:.2f}x; cold with / without the node copy: "
        f"{cold / fetch:.2f}x; goal warm <= 5 s: {goal}"
    )
    results["median"], results["warm_over_cold"] = med, warm / cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="promote/rollback rounds (3)")
    parser.add_argument("--follow-s", type=float, default=1.0, help="alias reading period (1 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    info = _common.machine()
    results = run(args)
    _common.print_machine(info)
    report(results)
    _common.write_json(args.json, {"machine": info, **results})


if __name__ == "__main__":
    main()
