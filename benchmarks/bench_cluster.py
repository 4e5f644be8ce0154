"""Cluster scaling: fine-tuning and embedding on 1 host vs 2 hosts of a real Ray cluster.

The cluster is the multi-host test's (tests/multihost.py): network namespaces on this machine,
a Ray head and a Ray worker node with 1 CPU each, and a client host that runs the stages as a
`ray://` client, by settings alone. In the same run:

- fine-tuning tokens/s, Ray Train with 1 worker (1 host) vs 2 workers (one per host), 1 CPU
  each. The GLOBAL batch is held equal (8 sequences a step: 1 x 8 vs 2 x 4) with the same
  steps, so both runs do the same work and follow the same optimisation; the figure is then
  the speed-up of one job, not of a job made bigger;
- embedding chunks/s, the embed stage's encoding on 1 actor (1 host) vs 2 actors (one per
  host), the same chunks; and, for reference, encoding in the client's own process.

Both "hosts" share this machine's cores, so two hosts cannot add CPU that is not there: what
the ratios show is the cost of distributing (Gloo all-reduce over the veth links, object
transfer, the driver's share of the cores), not what two real machines would give.

Each side runs `--rounds` times, in the order A B then B A; since other work on the machine
only ever slows a run down, each side's best run counts (every run is printed and kept in the
JSON).

    python benchmarks/bench_cluster.py [--steps N] [--topics N] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from pydoc_data.topics import topics as PYDOC_TOPICS
from typing import Any

import _common

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

GLOBAL_BATCH = 8


def on_client_finetune(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on the client host: one fine-tuning run through the cluster."""
    from tasks.clients.ray_cluster import ensure_ray
    from tasks.finetune.params import FinetuneParams
    from tasks.finetune.trainer import finetune
    from tasks.shared.settings import get_settings

    settings = get_settings()
    t0 = time.perf_counter()
    ensure_ray(settings)
    connect_s = time.perf_counter() - t0
    params = FinetuneParams(**spec)
    t0 = time.perf_counter()
    report = finetune(params, settings)
    return {
        "workers": report.world_size,
        "tokens_per_s": report.tokens_per_s * report.world_size,
        "tokens_per_s_per_worker": report.tokens_per_s,
        "wall_s": time.perf_counter() - t0,
        "connect_s": connect_s,
    }


def on_client_embed(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on the client host: the embed stage, its encoding on `actors` Ray actors (0 = in
    this process), into a fresh index."""
    from tasks.clients.embedder import load_embedder
    from tasks.clients.feature_store import ChunkIndex
    from tasks.embed.index import embed_snapshot
    from tasks.embed.params import EmbedParams
    from tasks.embed.ray_encoder import RayEncoder
    from tasks.shared.settings import get_settings

    settings = get_settings()
    params = EmbedParams(encode_batch_size=spec["batch_size"])
    embedder = load_embedder(params.model)
    embedder.encode(_common.WARMUP)
    with ChunkIndex(settings) as index:
        index.apply()
        if not spec["actors"]:
            report = embed_snapshot(params, settings, index, embedder)
            start_s = 0.0
        else:
            t0 = time.perf_counter()
            encoder = RayEncoder(settings, params.model, params.encode_batch_size, spec["actors"])
            with encoder:
                start_s = time.perf_counter() - t0
                report = embed_snapshot(params, settings, index, embedder, encoder)
    return {
        "actors": spec["actors"],
        "chunks": report.chunks_embedded,
        "encode_s": report.embed_seconds,
        "stage_s": report.seconds,
        "chunks_per_s": report.chunks_per_second,
        "stage_chunks_per_s": report.chunks_embedded / report.seconds,
        "actor_start_s": start_s,
        "nodes": len(report.placement),
        "placement": report.placement,
    }


def _on_client(c: Any, kind: str, home: Path, spec: dict[str, Any], timeout: float) -> dict:
    env = c.env(
        LLMOPS_HOME=str(home),
        LLMOPS_RAY_ADDRESS=c.ray_client_address,
        LLMOPS_RAY_STORAGE=str(c.storage / "ray"),
        TQDM_DISABLE="1",
    )
    args = [sys.executable, str(Path(__file__).resolve()), "--on-client", kind, json.dumps(spec)]
    done = c.run("client", args, env, timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} on the client failed:\n{done.stderr[-4000:]}\n{c.logs()}")
    from multihost import last_json

    result = last_json(done.stdout)
    result["load_avg_1m"] = os.getloadavg()[0]
    print(f"  {kind} {spec}: {result}", flush=True)
    return result


def _ingest(home: Path, docs: Path) -> str:
    from tasks.ingest.documents import ingest_folder
    from tasks.ingest.params import IngestParams
    from tasks.shared.settings import Settings

    return ingest_folder(docs, IngestParams(), Settings(home=home)).snapshot_id


def run(steps: int, n_topics: int, seq_len: int, rounds: int) -> dict[str, Any]:
    from multihost import cluster

    with cluster() as c:
        t0 = time.perf_counter()
        c.start_ray()
        c.wait_for_ray_client()
        print(f"cluster up in {time.perf_counter() - t0:.1f} s", flush=True)
        docs = c.root / "docs"
        docs.mkdir()
        for name in sorted(PYDOC_TOPICS)[:n_topics]:
            (docs / f"{name}.txt").write_text(PYDOC_TOPICS[name])

        train_home = c.storage / "train"
        snapshot = _ingest(train_home, docs)
        train: dict[int, list[dict]] = {1: [], 2: []}
        embed: dict[int, list[dict]] = {0: [], 1: [], 2: []}
        for round_ in range(rounds):  # A B, then B A: neither side always runs first
            order = (1, 2) if round_ % 2 == 0 else (2, 1)
            for workers in order:
                spec = {
                    "snapshot_id": snapshot,
                    "max_steps": steps,
                    "checkpoint_every": steps,
                    "seq_len": seq_len,
                    "num_workers": workers,
                    "cpus_per_worker": 1,
                    "batch_size": GLOBAL_BATCH // workers,
                }
                train[workers].append(_on_client(c, "finetune", train_home, spec, 600))
            for actors in (0, *order):
                home = c.storage / f"embed-{actors}-{round_}"
                _ingest(home, docs)
                spec = {"actors": actors, "batch_size": 32}
                embed[actors].append(_on_client(c, "embed", home, spec, 600))
    # Other work on the machine only ever slows a run down: each side's best run counts.
    best_t = {k: max(v, key=lambda m: m["tokens_per_s"]) for k, v in train.items()}
    best_e = {k: max(v, key=lambda m: m["chunks_per_s"]) for k, v in embed.items()}
    return {
        "benchmark": "cluster",
        "steps": steps,
        "seq_len": seq_len,
        "global_batch": GLOBAL_BATCH,
        "topics": n_topics,
        "rounds": rounds,
        "finetune_runs": train,
        "embed_runs": embed,
        "finetune": best_t,
        "embed": best_e,
        "finetune_2_hosts_vs_1": round(best_t[2]["tokens_per_s"] / best_t[1]["tokens_per_s"], 3),
        "embed_2_hosts_vs_1": round(best_e[2]["chunks_per_s"] / best_e[1]["chunks_per_s"], 3),
        "embed_stage_2_hosts_vs_1": round(
            best_e[2]["stage_chunks_per_s"] / best_e[1]["stage_chunks_per_s"], 3
        ),
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--on-client":
        step = on_client_finetune if sys.argv[2] == "finetune" else on_client_embed
        print(json.dumps(step(json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--topics", type=int, default=60, help="pydoc topics in the corpus")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each side (best kept)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()
    info = _common.machine()
    r = run(args.steps, args.topics, args.seq_len, args.rounds)
    print()
    _common.print_machine(info)
    t, e = r["finetune"], r["embed"]
    _common.print_table(
        ["fine-tuning (global batch 8)", "tokens/s", "per worker", "fit wall s"],
        [
            [
                f"{h} host(s) x 1 worker",
                round(t[n]["tokens_per_s"]),
                round(t[n]["tokens_per_s_per_worker"]),
                t[n]["wall_s"],
            ]
            for n, h in ((1, 1), (2, 2))
        ],
    )
    print()
    _common.print_table(
        ["embedding", "nodes used", "chunks", "encode chunks/s", "stage chunks/s", "actor start s"],
        [
            [
                name,
                e[n]["nodes"],
                e[n]["chunks"],
                e[n]["chunks_per_s"],
                e[n]["stage_chunks_per_s"],
                e[n]["actor_start_s"],
            ]
            for n, name in (
                (0, "client process (no Ray)"),
                (1, "1 host x 1 actor"),
                (2, "2 hosts x 1 actor"),
            )
        ],
    )
    print(
        f"2 hosts / 1 host: fine-tuning tokens/s {r['finetune_2_hosts_vs_1']}, embedding "
        f"chunks/s {r['embed_2_hosts_vs_1']} (whole stage {r['embed_stage_2_hosts_vs_1']})"
    )
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
