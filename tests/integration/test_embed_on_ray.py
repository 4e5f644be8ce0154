"""The embed stage's Ray path (actors holding the model) writes the same index as the local
path: same chunk ids in the same order, the same vectors, the same search answers."""

from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pyarrow.dataset as ds
import pytest

from tasks.clients.feature_store import ChunkIndex
from tasks.clients.retrieval import search
from tasks.embed.index import embed_snapshot
from tasks.embed.params import EmbedParams
from tasks.embed.ray_encoder import RayEncoder
from tasks.ingest.documents import ingest_folder
from tasks.ingest.params import IngestParams
from tasks.shared import lake
from tasks.shared.settings import Settings

pytestmark = pytest.mark.integration


def embed_into(home: Path, docs: Path, embedder, on_ray: bool):
    settings = Settings(home=home)
    ingest_folder(docs, IngestParams(), settings)
    # Small batches, so the Ray path hands out several batches to each actor.
    params = EmbedParams(chunk_tokens=96, encode_batch_size=8, documents_per_batch=2)
    with ChunkIndex(settings) as index:
        index.apply()
        if not on_ray:
            report = embed_snapshot(params, settings, index, embedder)
        else:
            with RayEncoder(settings, params.model, params.encode_batch_size, 2) as encoder:
                report = embed_snapshot(params, settings, index, embedder, encoder)
        hits = search("How do I handle exceptions?", top_k=3, settings=settings, index=index)
    chunks = ds.dataset(settings.chunks_dir, format="parquet").to_table().to_pandas()
    # The lake's part files have random names: put the chunks back in the order written.
    manifest = lake.read_manifest(settings.index_manifest)
    chunks = chunks.set_index("chunk_id").loc[manifest["chunk_id"]].reset_index()
    return report, lake.read_manifest(settings.index_manifest), chunks, hits


def test_ray_path_writes_the_same_chunks_and_vectors(tmp_path: Path, embedder, ray_local) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("try", "with", "for", "while", "if"):
        (docs / f"{name}.txt").write_text(topics[name])

    local, local_manifest, local_chunks, local_hits = embed_into(
        tmp_path / "local", docs, embedder, on_ray=False
    )
    spread, ray_manifest, ray_chunks, ray_hits = embed_into(
        tmp_path / "ray", docs, embedder, on_ray=True
    )

    assert not local.on_ray and spread.on_ray
    assert spread.chunks_embedded == local.chunks_embedded > 10
    assert spread.collection_rows == local.collection_rows == local.chunks_embedded
    assert ray_manifest["chunk_id"].tolist() == local_manifest["chunk_id"].tolist()
    assert ray_chunks["chunk_id"].tolist() == local_chunks["chunk_id"].tolist()
    assert ray_chunks["text"].tolist() == local_chunks["text"].tolist()
    a, b = np.stack(local_chunks["vector"]), np.stack(ray_chunks["vector"])
    assert a.shape == b.shape == (local.chunks_embedded, 384)
    np.testing.assert_allclose(b, a, atol=1e-5)
    assert [h.chunk_id for h in ray_hits] == [h.chunk_id for h in local_hits]
    assert ray_hits[0].source == "try.txt"

    # One local node here: it encoded every batch.
    [node] = spread.placement
    assert node["chunks"] == spread.chunks_embedded
    assert node["batches"] >= (spread.chunks_embedded + 7) // 8


def test_an_actor_count_the_cluster_cannot_hold_is_refused(settings: Settings, ray_local) -> None:
    encoder = RayEncoder(settings, EmbedParams().model, 8, actors=64)
    with pytest.raises(ValueError, match="embedding actors asked for"), encoder:
        pass
