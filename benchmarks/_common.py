"""Shared setup of the benchmarks: offline model, a throw-away state folder, machine facts.

Import this module before anything from `tasks`: it sets the environment those imports read.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the tables

from pydoc_data.topics import topics as PYDOC_TOPICS

import pandas as pd
import pyarrow.dataset as ds

from tasks.shared.settings import Settings

QUICK_TOPICS = sorted(PYDOC_TOPICS)[::8]  # 10 topics, spread over the alphabet
WARMUP = ["How do I open a file?", "What is a decorator?", "List comprehensions in Python."]


@contextmanager
def fresh_home(prefix: str) -> Iterator[Settings]:
    """Settings whose state folder (LLMOPS_HOME) is a new temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"llmops-{prefix}-") as tmp:
        home = Path(tmp) / "home"
        os.environ["LLMOPS_HOME"] = str(home)
        settings = Settings(home=home)
        try:
            yield settings
        finally:
            # Milvus Lite runs in-process and writes its files when closed (at exit at the
            # latest), which would re-create the folder after its removal: close it first.
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(settings.milvus_lite_path))


def write_demo_corpus(settings: Settings, quick: bool) -> Path:
    """The Python docs demo corpus: every topic and the default modules, or a small slice."""
    from tasks.ingest.demo_corpus import write_python_docs

    dest = settings.corpus_dir / "python-docs"
    return write_python_docs(dest, QUICK_TOPICS if quick else None, [] if quick else None)


def ingest_and_embed(settings: Settings, root: Path) -> tuple[Any, Any, Any]:
    """Run the ingest and embed stages as the flows do; return (ingest, embed report, index)."""
    from tasks.clients.embedder import load_embedder
    from tasks.clients.feature_store import ChunkIndex
    from tasks.embed.index import embed_snapshot
    from tasks.embed.params import EmbedParams
    from tasks.ingest.documents import ingest_folder
    from tasks.ingest.params import IngestParams

    ingest = ingest_folder(root, IngestParams(), settings)
    index = ChunkIndex(settings)
    index.apply()
    report = embed_snapshot(EmbedParams(), settings, index, load_embedder())
    return ingest, report, index


def read_chunks(settings: Settings) -> pd.DataFrame:
    """Every chunk the embed stage wrote to the lake (one row per chunk id), sorted by id."""
    frame = ds.dataset(settings.chunks_dir, format="parquet").to_table().to_pandas()
    return frame.drop_duplicates("chunk_id").sort_values("chunk_id", ignore_index=True)


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM and the versions that matter for the numbers."""
    import feast
    import pymilvus
    import sentence_transformers
    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "load_avg_1m_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "feast": feast.__version__,
        "pymilvus": pymilvus.__version__,
    }


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable, "
        f"torch threads {info['torch_threads']}), {info['ram_gb']} GB RAM, "
        f"load average {info['load_avg_1m_at_start']:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} now (other work on the machine skews timings)"
    )
    print(
        f"versions: python {info['python']}, torch {info['torch']}, "
        f"sentence-transformers {info['sentence_transformers']}, feast {info['feast']}, "
        f"pymilvus {info['pymilvus']}"
    )


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A markdown table, so the output pastes straight into RESULTS.md."""
    cells = [[_fmt(c) for c in row] for row in rows]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    for row in cells:
        print("| " + " | ".join(row) + " |")


def _fmt(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    digits = 3 if abs(value) < 1 else 2 if abs(value) < 100 else 1
    return f"{value:.{digits}f}"


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {path}")
