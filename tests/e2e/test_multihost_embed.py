"""The embed stage on the two-host Ray cluster (see `multihost`): run from the client host with
the cluster's address in its settings alone, its encoding batches run on actors on both Ray
nodes, while the chunking and the Milvus writes stay on the client (Milvus Lite is its file)."""

import sys
from pathlib import Path
from pydoc_data.topics import topics

import pytest

from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared.settings import Settings

from multihost import HOSTS, Cluster, last_json

pytestmark = pytest.mark.e2e

EMBED = """
import json
from tasks.embed.params import EmbedParams
from tasks.embed.tasks import index_snapshot
params = EmbedParams(chunk_tokens=128, encode_batch_size=16)
print(json.dumps(index_snapshot.fn(params).model_dump()))
"""


def test_embedding_batches_run_on_both_hosts(ray_hosts: Cluster, tmp_path: Path) -> None:
    c = ray_hosts
    settings = Settings(home=c.storage / "embed-home")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("try", "with", "for", "while", "if", "import", "lambda", "class"):
        (docs / f"{name}.txt").write_text(topics[name])
    ingest_folder(docs, IngestParams(), settings)

    env = c.env(LLMOPS_HOME=str(settings.home), LLMOPS_RAY_ADDRESS=c.ray_client_address)
    out = c.python("client", EMBED, env, timeout=300)
    report = last_json(out)

    assert report["on_ray"], report
    ips = {n["id"]: n["ip"] for n in c.probe()["nodes"]}
    by_ip = {ips[p["node"]]: p for p in report["placement"]}
    assert set(by_ip) == {HOSTS["head"], HOSTS["worker"]}, report["placement"]
    assert all(p["chunks"] > 0 and p["batches"] > 0 for p in by_ip.values())
    assert sum(p["chunks"] for p in by_ip.values()) == report["chunks_embedded"] > 16

    with ChunkIndex(settings) as index:
        assert index.count() == report["collection_rows"] == report["chunks_embedded"]
        hits = search("How do I handle exceptions?", top_k=3, settings=settings, index=index)
    assert hits[0].source == "try.txt" and "except" in hits[0].text

    clean = c.probe("clean", timeout=60)  # the actors went with the stage
    assert clean["met"], f"left on the cluster after the stage: {clean}"
    print(f"placement {report['placement']}, {report['seconds']} s", file=sys.stderr)
