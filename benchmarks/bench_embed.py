"""Embed throughput: the whole embed stage against plain `SentenceTransformer.encode`.

Both sides embed exactly the same chunk texts with the same model object in the same run:

- plain: `encode(texts, batch_size=64, normalize_embeddings=True)`, one call, nothing else;
- flow: `tasks.embed.index.embed_snapshot(...)` on a fresh index, timed wall to wall (plan, read the
  lake, tokenize and chunk, encode, write through Feast to Milvus Lite, flush, manifest).

The chunk texts of the baseline are cut beforehand with the stage's own `chunk_documents`
(not timed) and checked afterwards against what the stage wrote to the lake.
Goal: flow chunks/s >= 0.85 x plain chunks/s.

    python benchmarks/bench_embed.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _common
import numpy as np
import pandas as pd
from sentence_transformers import SentenceTransformer

from tasks.clients.embedder import load_embedder
from tasks.clients.feature_store import ChunkIndex
from tasks.core.sync import chunker_key
from tasks.embed.index import chunk_documents, embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared import lake
from tasks.shared.settings import Settings

GOAL = 0.85


def cut_chunks(
    settings: Settings, embedder: SentenceTransformer, params: EmbedParams
) -> pd.DataFrame:
    """The chunks the stage will embed, in the order it embeds them (same code path, no I/O out)."""
    snapshot_id = lake.latest_snapshot(settings.snapshots_dir)
    snapshot = lake.read_snapshot(settings.snapshots_dir, snapshot_id)
    members = snapshot.set_index("doc_id")
    chunker = chunker_key(params.model, params.chunk_tokens, params.overlap_tokens)
    frames = []
    for docs in lake.iter_documents(
        settings.documents_dir, set(snapshot["doc_id"]), params.documents_per_batch
    ):
        docs = docs.drop(columns=["source", "source_root"]).join(members, on="doc_id")
        frames.append(chunk_documents(docs, embedder, params, chunker))
    return pd.concat(frames, ignore_index=True)


def run(quick: bool, documents_per_batch: int | None = None) -> dict[str, Any]:
    params = EmbedParams()
    if documents_per_batch:
        params = params.model_copy(update={"documents_per_batch": documents_per_batch})
    with _common.fresh_home("bench-embed") as settings:
        root = _common.write_demo_corpus(settings, quick)
        ingest = ingest_folder(root, IngestParams(), settings)
        embedder = load_embedder(params.model)
        embedder.encode(_common.WARMUP, batch_size=64, normalize_embeddings=True)  # warm-up

        chunks = cut_chunks(settings, embedder, params)
        texts = chunks["text"].tolist()
        t0 = time.perf_counter()
        plain = embedder.encode(texts, batch_size=64, normalize_embeddings=True)
        plain_s = time.perf_counter() - t0

        index = ChunkIndex(settings)
        index.apply()  # registry set-up is not part of the timed call
        t0 = time.perf_counter()
        report = embed_snapshot(params, settings, index, embedder)
        flow_s = time.perf_counter() - t0

        written = _common.read_chunks(settings)
        same_texts = sorted(written["text"]) == sorted(texts)
        by_id = dict(zip(written["chunk_id"], written["vector"], strict=True))
        flow_vecs = np.stack([by_id[c] for c in chunks["chunk_id"]])
        min_cos = float((flow_vecs * plain).sum(axis=1).min())

    n = len(texts)
    plain_rate, flow_rate = n / plain_s, report.chunks_embedded / flow_s
    ratio = flow_rate / plain_rate
    return {
        "benchmark": "embed",
        "quick": quick,
        "documents": ingest.accepted,
        "chunks": n,
        "chunks_embedded_by_flow": report.chunks_embedded,
        "same_chunk_texts": same_texts,
        "min_cosine_flow_vs_plain": round(min_cos, 6),
        "plain_seconds": round(plain_s, 3),
        "plain_chunks_per_s": round(plain_rate, 2),
        "flow_seconds": round(flow_s, 3),
        "flow_encode_seconds": report.embed_seconds,
        "flow_chunks_per_s": round(flow_rate, 2),
        "ratio_flow_to_plain": round(ratio, 3),
        "goal": f">= {GOAL}",
        "passed": bool(ratio >= GOAL and same_texts and n == report.chunks_embedded),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 topics, no modules")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    parser.add_argument(
        "--documents-per-batch", type=int, help="EmbedParams.documents_per_batch (default: its)"
    )
    args = parser.parse_args()

    info = _common.machine()
    r = run(args.quick, args.documents_per_batch)
    print()
    _common.print_machine(info)
    print(
        f"corpus: {r['documents']} documents, {r['chunks']} chunks "
        f"({'quick' if args.quick else 'full'}); same chunk texts: {r['same_chunk_texts']}; "
        f"min cosine flow vs plain: {r['min_cosine_flow_vs_plain']}"
    )
    _common.print_table(
        ["path", "chunks", "wall s", "chunks/s"],
        [
            ["plain encode (batch 64)", r["chunks"], r["plain_seconds"], r["plain_chunks_per_s"]],
            [
                "embed_snapshot (whole call)",
                r["chunks_embedded_by_flow"],
                r["flow_seconds"],
                r["flow_chunks_per_s"],
            ],
        ],
    )
    print(
        f"of the flow's {r['flow_seconds']} s, {r['flow_encode_seconds']} s were encode calls; "
        f"the rest is chunking, Feast/Milvus writes, flush and lake I/O"
    )
    verdict = "PASS" if r["passed"] else "FAIL"
    print(f"ratio flow/plain chunks/s: {r['ratio_flow_to_plain']} (goal >= {GOAL}) {verdict}")
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
