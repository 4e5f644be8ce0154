"""Cold start of a model replica, with and without the node cache.

A randomly initialised Llama (about 450 MB of float32 safetensors in 64 MB shards by default)
is registered in an MLflow tracking server that stores and serves the artifacts over HTTP,
as on a cluster. A replica's start is timed as the model server does it: a verified local copy
of the version (`ModelRegistry.download_verified`), then the model loaded from it
(`load_model_folder`). Three ways, in alternation, `--rounds` times each:

- before: the previous way, the whole version downloaded into a temporary folder by MLflow
  and copied, hashed, into the node's folder for that version;
- cold: the node cache empty: the files fetched in parallel into the cache, then verified;
- cached: a second replica on the same node: nothing is fetched (the count is checked).

Each figure is the median; other work on the machine only slows a run down.

    python benchmarks/bench_node_cache.py [--hidden 1024] [--layers 8] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MODEL = "bench-cache"


def build_model(settings: Any, hidden: int, layers: int) -> Path:
    """The scratch model at a larger shape, saved in 64 MB shards with its manifest."""
    from transformers import AutoModelForCausalLM

    from tasks.finetune.base_model import ScratchSpec, build_scratch_model
    from tasks.shared.manifest import write_manifest

    spec = ScratchSpec(
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
    )
    folder = build_scratch_model(
        settings.models_dir / "base" / MODEL, list(_common.PYDOC_TOPICS.values()), spec
    )
    model = AutoModelForCausalLM.from_pretrained(folder)
    for old in folder.glob("model*.safetensors"):
        old.unlink()
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="64MB")
    write_manifest(folder)
    return folder


def register(settings: Any, folder: Path) -> str:
    from tasks.clients.registry import DIGEST_TAG, model_registry
    from tasks.clients.tracking import start_run

    with start_run(settings, "bench-node-cache") as run:
        run.log_artifacts(folder, artifact_path="model")
    registry = model_registry(settings)
    digest = registry.run_manifest_digest(run.run_id)
    return registry.register(MODEL, run.run_id, {"origin": "benchmark", DIGEST_TAG: digest})


def start_before(settings: Any, version: str) -> float:
    """The previous way: MLflow downloads the whole version, then a hashed copy into place."""
    import mlflow

    from tasks.clients.registry import model_registry
    from tasks.shared.model_files import copy_verified
    from tasks.shared.models import load_model_folder

    registry = model_registry(settings)
    dest = settings.models_dir / "registry" / MODEL / version
    shutil.rmtree(dest, ignore_errors=True)
    started = time.perf_counter()
    uri = registry.client.get_model_version_download_uri(MODEL, version)
    with tempfile.TemporaryDirectory(dir=settings.models_dir) as tmp:
        fetched = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tmp, tracking_uri=settings.tracking_uri
        )
        copy_verified(Path(fetched), dest)
    load_model_folder(dest)
    return time.perf_counter() - started


def start_replica(settings: Any, version: str, empty_cache: bool) -> float:
    """What a replica does now: the version from the node cache, then the model loaded."""
    from tasks.clients.registry import model_registry
    from tasks.shared.models import load_model_folder

    if empty_cache:
        shutil.rmtree(settings.model_cache_dir, ignore_errors=True)
    cache_entries = set(settings.model_cache_dir.glob("*")) if not empty_cache else set()
    started = time.perf_counter()
    folder = model_registry(settings).download_verified(MODEL, version)
    load_model_folder(folder)
    took = time.perf_counter() - started
    if not empty_cache and set(settings.model_cache_dir.glob("*")) != cache_entries:
        raise AssertionError("the cached start fetched files")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    from services import mlflow_server

    info = _common.machine()
    with (
        _common.fresh_home("node-cache") as local,
        mlflow_server(local.home.parent / "mlflow") as server,
    ):
        settings = local.model_copy(update={"mlflow_tracking_uri": server.url})
        folder = build_model(settings, args.hidden, args.layers)
        size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
        files = sum(1 for p in folder.rglob("*") if p.is_file())
        version = register(settings, folder)
        start_replica(settings, version, empty_cache=True)  # imports and page cache warm
        runs: dict[str, list[float]] = {"before": [], "cold": [], "cached": []}
        for _ in range(args.rounds):
            runs["before"].append(start_before(settings, version))
            runs["cold"].append(start_replica(settings, version, empty_cache=True))
            runs["cached"].append(start_replica(settings, version, empty_cache=False))
    median = {k: statistics.median(v) for k, v in runs.items()}

    _common.print_machine(info)
    print(f"model: {size_mb:.0f} MB in {files} files, MLflow server on this machine (HTTP)\n")
    _common.print_table(
        ["replica start", "median s", "runs s", "vs cold"],
        [
            [
                name,
                median[name],
                " / ".join(f"{x:.2f}" for x in runs[name]),
                median[name] / median["cold"],
            ]
            for name in ("before", "cold", "cached")
        ],
    )
    print(
        f"\nA second replica on the node starts {median['cold'] / median['cached']:.1f}x "
        f"faster than the first (no download); the parallel fill takes "
        f"{median['cold'] / median['before']:.2f}x the time of the previous whole-folder download."
    )
    _common.write_json(
        args.json,
        {"machine": info, "size_mb": size_mb, "files": files, "runs": runs, "median": median},
    )


if __name__ == "__main__":
    main()
