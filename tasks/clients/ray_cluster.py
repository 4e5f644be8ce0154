"""Ray: a local instance started on demand, or the cluster named in settings."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tasks.core.cluster import ClusterDescription, LiveNode, NodeType
from tasks.core.node_types import (
    RAY_ACCELERATOR_LABEL,
    RAY_GROUP_LABEL,
    accelerator_in,
    node_types_from_autoscaler,
    node_types_from_raycluster,
)
from tasks.shared.settings import REPO_ROOT, Settings

# The repo's code travels to a remote cluster's workers; state and the venv stay here.
_EXCLUDES = [".venv/", ".llmops/", ".git/", "**/__pycache__/", "benchmarks/"]
# Ray Serve reads its flags once, as each of its processes starts, so a local Ray gets them in
# the environment it starts with (a cluster's come from its own, e.g. the RayService's env).
# gRPC between deployment handles, and from the proxy to the router, took a fifth to a quarter
# off the proxy's and the router's CPU per request on 2 cores (bench_serving.py, in pairs).
SERVE_ENV = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}


def ensure_ray(settings: Settings) -> dict[str, float]:
    """Connect (once per process) and return the cluster's resources."""
    import ray

    if not ray.is_initialized():
        with _sigterm_handler_kept():
            if settings.ray_address:
                runtime_env = {"working_dir": str(REPO_ROOT), "excludes": _EXCLUDES}
                ray.init(address=settings.ray_address, runtime_env=runtime_env)
            else:
                with started_with(SERVE_ENV):
                    ray.init(include_dashboard=False, log_to_driver=True)
    return dict(ray.cluster_resources())


@contextmanager
def started_with(env: Mapping[str, str]) -> Iterator[None]:
    """`env` in this process's environment while a local Ray starts (its processes inherit
    it), then taken out again; a variable set already is left as it is."""
    added = {key: value for key, value in env.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class _sigterm_handler_kept:
    """`ray.init` replaces the process's SIGTERM handler with `sys.exit`. Under Prefect that
    turned a cancelled flow run into a crashed one (Prefect's runner cancels with SIGTERM and
    its handler tells a cancel from a crash), so the handler in place before is put back.
    Ray's exit hook still disconnects the driver, and the cluster drops the job's actors."""

    def __enter__(self) -> None:
        main = threading.current_thread() is threading.main_thread()
        self.previous = signal.getsignal(signal.SIGTERM) if main else None

    def __exit__(self, *exc: object) -> None:
        if callable(self.previous):  # only a handler someone installed (SIG_DFL stays Ray's)
            signal.signal(signal.SIGTERM, self.previous)


def worker_capacity(resources: dict[str, Any], use_gpu: bool, cpus_per_worker: float) -> int:
    """How many training workers the cluster can place."""
    if use_gpu:
        return int(resources.get("GPU", 0))
    return int(resources.get("CPU", 0) // cpus_per_worker)


def describe_cluster(settings: Settings) -> ClusterDescription:
    """The live nodes, and the node types the autoscaler can add: from the RayCluster manifest
    the settings name, else from the cluster config Ray's autoscaler reports (absent on a
    cluster without one, such as local Ray: then only the live nodes count)."""
    import ray

    manifest = settings.ray_cluster_manifest
    ensure_ray(settings)
    # Read on the cluster: under Ray Client (ray://) the driver has no GCS connection.
    snapshot = ray.get(ray.remote(num_cpus=0)(_cluster_snapshot).remote())
    nodes = tuple(
        LiveNode(
            cpus=float(n["Resources"].get("CPU", 0)),
            gpus=float(n["Resources"].get("GPU", 0)),
            group=n["Labels"].get(RAY_GROUP_LABEL),
            accelerator=n["Labels"].get(RAY_ACCELERATOR_LABEL) or accelerator_in(n["Resources"]),
        )
        for n in snapshot["nodes"]
    )
    if manifest is not None:
        return ClusterDescription(nodes, manifest_node_types(Path(manifest)), str(manifest))
    if snapshot["node_groups"]:
        types = node_types_from_autoscaler(snapshot["node_groups"])
        return ClusterDescription(nodes, types, "the autoscaler's cluster config")
    return ClusterDescription(nodes)


def _cluster_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Runs on the cluster: its alive nodes, and the autoscaler's node groups if it reports
    them (`ray._private.state`, which Ray Train itself reads to refuse what never fits)."""
    import ray
    from ray._private.state import state

    config = state.get_cluster_config()
    groups = [
        {"name": g.name, "resources": dict(g.resources), "max_count": g.max_count}
        for g in (config.node_group_configs if config else [])
    ]
    nodes = [
        {"Resources": n["Resources"], "Labels": n.get("Labels") or {}}
        for n in ray.nodes()
        if n["Alive"]
    ]
    return {"nodes": nodes, "node_groups": groups}


def manifest_node_types(manifest: Path) -> tuple[NodeType, ...]:
    """The worker groups of the RayCluster in a KubeRay manifest file."""
    clusters = [
        d for d in yaml.safe_load_all(manifest.read_text()) if d and d.get("kind") == "RayCluster"
    ]
    if len(clusters) != 1:
        raise ValueError(f"{manifest} holds {len(clusters)} RayCluster documents, not one")
    return node_types_from_raycluster(clusters[0])
