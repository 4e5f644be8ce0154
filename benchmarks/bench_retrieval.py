"""Retrieval latency and recall: the Feast path against direct pymilvus on the same collection.

After ingest + embed of the demo corpus, every query is timed on each path, interleaved
(the order rotates per query so that load from elsewhere hits every path alike):

- embed: `encode(query, normalize_embeddings=True)` alone;
- Feast: `ChunkIndex.search(vector, 10)` (Feast's `retrieve_online_documents_v2`), vector given;
- pymilvus ids: `client.search(...)` on the same collection, same vector, metric and search
  params, `output_fields=["chunk_id"]`;
- pymilvus fields: the same, asking for the fields the Feast path returns;
- retrieval.search: `tasks.clients.retrieval.search(query, top_k=10, index=index)`, embed included.

Goal: the search function (text query in, ranked hits out) at p50 <= 1.5 x a direct pymilvus
search doing the same job (embed the query + `client.search` returning the same fields). The
Feast-only ratio with the vector given is printed too: there Feast also returns the 384-d
vectors (its Milvus store searches only a vector field that is among the requested features).
Recall@10 of retrieval.search against exact numpy search over the indexed chunks' vectors
(cosine = dot product of the normalized vectors): goal >= 0.99.

    python benchmarks/bench_retrieval.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import _common
import numpy as np

from tasks.clients import retrieval
from tasks.clients.embedder import load_embedder
from tasks.clients.feature_store import CHUNK_FEATURES
from tasks.shared import lake

TOP_K, GOAL_LATENCY, GOAL_RECALL = 10, 1.5, 0.99
QUESTIONS = [
    "How do I define a decorator?",
    "What does the with statement do?",
    "How are exceptions raised and caught?",
    "What is a generator expression?",
    "How does for loop iterate over a sequence?",
    "What is the difference between is and ==?",
    "How do I define a class with a constructor?",
    "What are keyword-only arguments?",
    "How does operator precedence work?",
    "What does the global statement do?",
    "How do I import a module from a package?",
    "What is a lambda expression?",
    "How are strings formatted with f-strings?",
    "What does yield do in a function?",
    "How do I write an async function?",
    "What are the truth values of objects?",
    "How does slicing work on lists?",
    "What is the assert statement for?",
    "How do I compare objects with rich comparison methods?",
    "What does the del statement do?",
    "How are integer literals written?",
    "What is name binding and scope?",
    "How does the match statement work?",
    "What are special method names?",
    "How do I handle a finally clause?",
]


def make_queries(chunk_texts: list[str], n: int) -> list[str]:
    """Half fixed Python questions, half first sentences of chunks picked with a fixed seed."""
    fixed = QUESTIONS[: min(len(QUESTIONS), n // 2)]
    sentences = [t.split(". ")[0].split("\n")[0].strip()[:120] for t in chunk_texts]
    sentences = sorted({s for s in sentences if len(s) >= 15})
    picked = random.Random(0).sample(sentences, min(len(sentences), n - len(fixed)))
    return (fixed + picked)[:n]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def run(quick: bool, n_queries: int) -> dict[str, Any]:
    with _common.fresh_home("bench-retrieval") as settings:
        root = _common.write_demo_corpus(settings, quick)
        _, report, index = _common.ingest_and_embed(settings, root)
        embedder = load_embedder()
        chunks = _common.read_chunks(settings)
        indexed = set(lake.read_manifest(settings.index_manifest)["chunk_id"])
        chunks = chunks[chunks["chunk_id"].isin(indexed)].reset_index(drop=True)
        matrix = np.stack(chunks["vector"].to_numpy()).astype(np.float32)
        text_of = dict(zip(chunks["chunk_id"], chunks["text"], strict=True))
        queries = make_queries(chunks["text"].tolist(), n_queries)

        client, collection = index._client, index.collection
        online = index.store.config.online_store
        params = {"metric_type": "COSINE", "params": dict(online.search_params or {})}

        def direct(vector: list[float], fields: list[str]) -> list[str]:
            res = client.search(
                collection,
                data=[vector],
                anns_field="vector",
                limit=TOP_K,
                search_params=params,
                output_fields=fields,
                consistency_level=online.consistency_level,
            )
            return [hit["entity"]["chunk_id"] for hit in res[0]]

        def paths(q: str, v: list[float]) -> dict[str, Callable[[], Any]]:
            return {
                "embed": lambda: embedder.encode(q, normalize_embeddings=True),
                "feast": lambda: index.search(v, TOP_K),
                "direct_ids": lambda: direct(v, ["chunk_id"]),
                "direct_fields": lambda: direct(v, ["chunk_id", *CHUNK_FEATURES]),
                "retrieval": lambda: retrieval.search(q, top_k=TOP_K, index=index),
            }

        for q in _common.WARMUP:  # warm every path once
            v = embedder.encode(q, normalize_embeddings=True).tolist()
            for fn in paths(q, v).values():
                fn()

        ids = chunks["chunk_id"].to_numpy()
        ms: dict[str, list[float]] = {k: [] for k in paths("", [])}
        recalls, agree, aligned, n_hits = [], 0, 0, 0
        for i, q in enumerate(queries):
            v = embedder.encode(q, normalize_embeddings=True).tolist()
            fns = list(paths(q, v).items())
            out = {}
            for name, fn in fns[i % len(fns) :] + fns[: i % len(fns)]:
                elapsed, out[name] = timed(fn)
                ms[name].append(elapsed)
            hits = out["retrieval"]
            exact = set(ids[np.argsort(-(matrix @ np.asarray(v, dtype=np.float32)))[:TOP_K]])
            recalls.append(len(exact & {h.chunk_id for h in hits}) / TOP_K)
            agree += set(out["direct_ids"]) == {h.chunk_id for h in hits}
            aligned += sum(text_of.get(h.chunk_id) == h.text for h in hits)
            n_hits += len(hits)

    def pct(name: str, p: float) -> float:
        return round(float(np.percentile(ms[name], p)), 3)

    ms["embed+direct_fields"] = [
        a + b for a, b in zip(ms["embed"], ms["direct_fields"], strict=True)
    ]
    stats = {k: {"p50_ms": pct(k, 50), "p95_ms": pct(k, 95)} for k in ms}
    ratio = stats["retrieval"]["p50_ms"] / stats["embed+direct_fields"]["p50_ms"]
    recall = float(np.mean(recalls))
    return {
        "benchmark": "retrieval",
        "quick": quick,
        "collection_rows": report.collection_rows,
        "queries": len(queries),
        "latency": stats,
        "ratio_search_to_direct_p50": round(ratio, 3),
        "ratio_search_to_direct_p95": round(
            stats["retrieval"]["p95_ms"] / stats["embed+direct_fields"]["p95_ms"], 3
        ),
        "ratio_feast_to_direct_fields_p50_vector_given": round(
            stats["feast"]["p50_ms"] / stats["direct_fields"]["p50_ms"], 3
        ),
        "recall_at_10": round(recall, 4),
        "queries_same_ids_feast_vs_direct": agree,
        "hits_text_matches_chunk_id": f"{aligned}/{n_hits}",
        "goal": f"search/direct p50 <= {GOAL_LATENCY}, recall@10 >= {GOAL_RECALL}",
        "passed": bool(ratio <= GOAL_LATENCY and recall >= GOAL_RECALL),
    }


LABELS = {
    "embed": "embed query only",
    "feast": "Feast ChunkIndex.search (vector given)",
    "direct_ids": "pymilvus search, chunk_id only (vector given)",
    "direct_fields": "pymilvus search, same fields as Feast (vector given)",
    "retrieval": "tasks.clients.retrieval.search (embed included)",
    "embed+direct_fields": "direct: embed + pymilvus same fields (sum per query)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 topics, no modules, 20 queries")
    parser.add_argument("--queries", type=int, help="number of queries (default 100, quick 20)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args()

    info = _common.machine()
    r = run(args.quick, args.queries or (20 if args.quick else 100))
    print()
    _common.print_machine(info)
    print(f"collection: {r['collection_rows']} chunks; {r['queries']} queries, top_k={TOP_K}")
    rows = [[LABELS[k], s["p50_ms"], s["p95_ms"]] for k, s in r["latency"].items()]
    _common.print_table(["timed", "p50 ms", "p95 ms"], rows)
    print(
        f"search function / direct pymilvus: p50 {r['ratio_search_to_direct_p50']} (goal <= "
        f"{GOAL_LATENCY}), p95 {r['ratio_search_to_direct_p95']}; Feast alone vs pymilvus, "
        f"vector given: p50 {r['ratio_feast_to_direct_fields_p50_vector_given']}"
    )
    print(
        f"recall@10 vs exact numpy: {r['recall_at_10']} (goal >= {GOAL_RECALL}); same ids as "
        f"pymilvus: {r['queries_same_ids_feast_vs_direct']}/{r['queries']} queries; "
        f"hit text matches its chunk_id: {r['hits_text_matches_chunk_id']}"
    )
    print("PASS" if r["passed"] else "FAIL")
    _common.write_json(args.json, {"machine": info, **r})


if __name__ == "__main__":
    main()
